//! Mode Adopt: the evaluation (validation, quota, who approves) and every step of
//! writing the owner tag, with the exact status, Event and requeue.

use super::*;
use crate::api::application::{InstanceApplicationStatus, Mode};
use crate::rapi::{Job, JobStatus};
use std::time::Duration;

const P: &str = crate::tags::DEFAULT_PREFIX;
const VM: &str = "old.example.org";
const UUID: &str = "u-old";

/// alice asks to own VM.
fn adoption(name: &str) -> InstanceApplication {
    let mut a = app(name, Subject::user("alice"));
    a.spec.mode = Mode::Adopt;
    a.spec.instance = Some(VM.into());
    a.spec.hostname.clear();
    a.spec.vcpus = 0;
    a.spec.memory.clear();
    a.spec.disks.clear();
    a.spec.ssh_keys.clear();
    a
}

fn vm(name: &str, uuid: &str, tags: &[&str]) -> Instance {
    Instance {
        name: name.into(),
        uuid: uuid.into(),
        vcpus: 2,
        memory_mib: 2048,
        disk_mib: 10240,
        primary_node: "node1".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn world(instances: Vec<Instance>) -> World {
    let mut w = World::new();
    w.inventory = inventory(instances);
    w
}

/// Approved by an admin, as the evaluation stores it.
fn approved(name: &str) -> InstanceApplication {
    let mut a = approve(adoption(name));
    a.status = Some(world(vec![vm(VM, UUID, &[])]).evaluate(&a, &[], false).status);
    assert_eq!(phase(&a), Phase::Approved);
    a
}

fn stored(step: &Step) -> &InstanceApplicationStatus {
    step.status.as_ref().expect("a status to store")
}

fn done(next: Adopt) -> Step {
    match next {
        Adopt::Done(step) => step,
        other => panic!("expected a step, got {other:?}"),
    }
}

fn instance_created(s: &InstanceApplicationStatus) -> (&str, &str, &str) {
    let c = conditions::get(&s.conditions, INSTANCE_CREATED).expect("an InstanceCreated condition");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

/// A failure's reason and message, checked to store nothing more and to warn.
fn failure(step: &Step) -> (&str, &str) {
    let s = stored(step);
    assert_eq!(s.phase, Phase::Failed);
    let note = step.note.as_ref().expect("an Event");
    assert!(note.warning);
    let (st, reason, message) = instance_created(s);
    assert_eq!(
        (st, reason, message),
        ("False", note.reason, note.message.as_str())
    );
    (reason, message)
}

/// The VM as the application's own tag job leaves it.
fn tagged_by(a: &InstanceApplication, name: &str, uuid: &str) -> Instance {
    let owner = owner_tag(a, P).unwrap();
    let marker = marker_tag(a, P).unwrap();
    vm(name, uuid, &[&owner, &marker])
}

fn seen<'a>(marked: &'a [Instance], current: Option<Option<&'a Instance>>) -> Seen<'a> {
    Seen {
        marked: Some(marked),
        current,
        running: None,
    }
}

// Evaluation

#[test]
fn an_adoption_waits_for_an_admin_even_for_holders_of_create_vm() {
    let a = adoption("a");
    let e = world(vec![vm(VM, UUID, &[])]).evaluate(&a, &[], true);
    assert_eq!(e.status.phase, Phase::Pending);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AwaitingDecision");
    let v = condition(&e, VALIDATED);
    assert_eq!(
        (v.status.as_str(), v.message.as_str()),
        (
            "True",
            "instance old.example.org (UUID u-old) exists and has no owner"
        )
    );
    assert_eq!(e.status.instance_uuid, None, "resolved only with the approval");
}

#[test]
fn an_admin_approval_records_the_vm_by_its_uuid() {
    let a = approved("a");
    let s = a.status.as_ref().unwrap();
    assert_eq!(s.instance_name.as_deref(), Some(VM));
    assert_eq!(s.instance_uuid.as_deref(), Some(UUID));
    assert_eq!(s.approved_generation, Some(1));
    assert_eq!(
        conditions::get(&s.conditions, DECIDED).unwrap().message,
        "approved by admin"
    );
}

#[test]
fn a_vm_with_an_owner_in_any_form_is_not_adopted() {
    let operator = crate::tags::format_owner(P, &Subject::user("bob")).unwrap();
    for tags in [
        vec![operator.as_str()],
        vec!["ganetimgr:user:bob"],
        vec!["ganetimgr:group:ops"],
        // Malformed, but an owner all the same: never overwritten.
        vec!["GANETI_WEB_MANAGER:owner:X:bob"],
    ] {
        let why = format!(
            "instance old.example.org already has an owner ({}): adoption only gives a VM without an owner one, never takes it from someone",
            tags[0]
        );
        // Filed: says so, and waits for the admin's decision.
        let filed = world(vec![vm(VM, UUID, &tags)]).evaluate(&adoption("a"), &[], false);
        assert_eq!(filed.status.phase, Phase::Pending);
        let v = condition(&filed, VALIDATED);
        assert_eq!(
            (v.reason.as_str(), v.message.as_str()),
            ("AlreadyOwned", why.as_str()),
            "{tags:?}"
        );
        // Approved: the approval ends, never to be carried out later.
        let a = approve(adoption("a"));
        let e = world(vec![vm(VM, UUID, &tags)]).evaluate(&a, &[], false);
        assert!(!e.approved, "{tags:?}");
        assert_eq!(e.status.phase, Phase::Failed);
        assert_eq!(e.status.instance_uuid, None);
        assert_eq!(condition(&e, DECIDED).reason, "ApprovalRefused");
        let c = condition(&e, INSTANCE_CREATED);
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("AlreadyOwned", format!("not adopted: {why}").as_str())
        );
        assert_eq!(
            e.note.as_ref().map(|n| (n.warning, n.reason)),
            Some((true, "AlreadyOwned"))
        );
        assert_eq!(
            e.status.ganeti_error.as_ref().map(|g| g.message.as_str()),
            Some(why.as_str())
        );
    }
    // GWM grants and other tags are not owners.
    let a = approve(adoption("a"));
    let e = world(vec![vm(VM, UUID, &["GANETI_WEB_MANAGER:power:U:bob", "backup"])]).evaluate(&a, &[], false);
    assert!(e.approved);
}

#[test]
fn an_adoption_names_an_existing_vm_that_no_other_adoption_holds() {
    let a = approve(adoption("a"));
    let e = world(vec![vm("other.example.org", "u-2", &[])]).evaluate(&a, &[], false);
    assert_eq!(condition(&e, VALIDATED).reason, "InstanceNotFound");
    assert!(!e.approved);
    // Perhaps not read yet: the approval waits.
    assert_eq!(e.status.phase, Phase::Pending);
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalWaiting");
    // A prefix of the name is not the VM (Ganeti would expand it).
    let mut short = approve(adoption("a"));
    short.spec.instance = Some("old".into());
    let e = world(vec![vm(VM, UUID, &[])]).evaluate(&short, &[], false);
    assert_eq!(condition(&e, VALIDATED).reason, "InstanceNotFound");
    // bob's adoption of the same VM was approved first.
    let mut rival = approved("b");
    rival.metadata.uid = Some("uid-b".into());
    let e = world(vec![vm(VM, UUID, &[])]).evaluate(&a, &[rival], false);
    let v = condition(&e, VALIDATED);
    assert_eq!(
        (v.reason.as_str(), v.message.as_str()),
        (
            "AdoptionUnderWay",
            "application team/b was approved to adopt instance old.example.org and is under way: one VM gets one owner"
        )
    );
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Failed);
}

#[test]
fn an_adoption_counts_what_the_vm_holds_against_the_quota() {
    let mut w = world(vec![
        owned("mine.example.org", &Subject::user("alice")),
        vm(VM, UUID, &[]),
    ]);
    w.quotas = vec![quota(1)];
    let a = approve(adoption("a"));
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "True");
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalRefused");
    w.quotas = vec![quota(2)];
    assert!(w.evaluate(&a, &[], false).approved);
}

// Steps

#[test]
fn a_fresh_approval_reads_the_vm_then_sends_one_tag_job() {
    let a = approved("a");
    let renamed = vm("renamed.example.org", UUID, &["backup"]);
    assert_eq!(adopt_step(&a, &seen(&[], None), P, now()), Adopt::ReadInstance);
    let Adopt::Tag { intent, name, tags } = adopt_step(&a, &seen(&[], Some(Some(&renamed))), P, now()) else {
        panic!("expected the tag job")
    };
    // The VM under its current name; the owner tag and the marker, in one job.
    assert_eq!(name, "renamed.example.org");
    assert_eq!(
        tags,
        [
            "GANETI_WEB_MANAGER:owner:U:alice".to_string(),
            "GANETI_WEB_MANAGER:app:uid-a".to_string()
        ]
    );
    // The intent is stored first: phase Creating without a job id.
    assert_eq!((intent.phase, intent.job_id), (Phase::Creating, None));
    assert_eq!(
        instance_created(&intent),
        (
            "False",
            ADOPTING,
            "sending the job that writes the owner tag on renamed.example.org"
        )
    );
    assert_eq!(intent.instance_uuid.as_deref(), Some(UUID));
}

#[test]
fn an_earlier_approval_looks_for_its_marker_first() {
    let a = approved("a");
    assert_eq!(adopt_step(&a, &Seen::default(), P, now()), Adopt::ReadMarked);
    // Its tag job did its work before a restart: adopted, nothing sent again.
    let mine = tagged_by(&a, "renamed.example.org", UUID);
    let step = done(adopt_step(&a, &seen(std::slice::from_ref(&mine), None), P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.instance_name.as_deref(), Some("renamed.example.org"));
    assert_eq!(
        instance_created(s),
        (
            "True",
            ADOPTED,
            "instance renamed.example.org (UUID u-old) belongs to user alice now: its owner tag was written"
        )
    );
    assert_eq!(
        step.note.as_ref().map(|n| (n.warning, n.reason)),
        Some((false, ADOPTED))
    );
}

#[test]
fn a_vm_gone_replaced_or_owned_since_the_approval_fails_without_a_tag() {
    let a = approved("a");
    let step = done(adopt_step(&a, &seen(&[], Some(None)), P, now()));
    assert_eq!(failure(&step).0, "InstanceGone");
    let stranger = vm(VM, "u-new", &[]);
    let step = done(adopt_step(&a, &seen(&[], Some(Some(&stranger))), P, now()));
    assert_eq!(
        failure(&step),
        (
            "InstanceReplaced",
            "not adopted: instance old.example.org is another VM now (UUID u-new, approved: u-old): nothing was adopted"
        )
    );
    let owned_since = vm(VM, UUID, &["ganetimgr:user:bob"]);
    let step = done(adopt_step(&a, &seen(&[], Some(Some(&owned_since))), P, now()));
    assert_eq!(
        failure(&step),
        (
            "AlreadyOwned",
            "not adopted: instance old.example.org got an owner after the approval (ganetimgr:user:bob): nothing was adopted, no one's VM is taken"
        )
    );
    // Its tags on another VM (the name reused between the read and the job): reported.
    let astray = tagged_by(&a, VM, "u-new");
    let step = done(adopt_step(
        &a,
        &seen(std::slice::from_ref(&astray), None),
        P,
        now(),
    ));
    let (reason, message) = failure(&step);
    assert_eq!(reason, "InstanceReplaced");
    assert!(
        message.contains("old.example.org (UUID u-new)")
            && message.contains("GANETI_WEB_MANAGER:owner:U:alice, GANETI_WEB_MANAGER:app:uid-a"),
        "{message}"
    );
}

#[test]
fn a_spec_changed_after_the_approval_is_not_adopted() {
    let mut a = approved("a");
    a.metadata.generation = Some(2);
    let step = done(adopt_step(&a, &seen(&[], None), P, now()));
    assert_eq!(stored(&step).phase, Phase::Pending);
    assert_eq!(step.note.as_ref().unwrap().reason, "ChangedAfterApproval");
}

#[test]
fn an_interrupted_send_waits_for_a_running_job_and_never_sends_again() {
    let a = approved("a");
    let Adopt::Tag { intent, .. } = adopt_step(&a, &seen(&[], Some(Some(&vm(VM, UUID, &[])))), P, now())
    else {
        panic!("expected the tag job")
    };
    let mut a = a;
    a.status = Some(intent);
    assert_eq!(adopt_step(&a, &seen(&[], None), P, now()), Adopt::ReadJobs);
    let running = Seen {
        running: Some(Some(12)),
        ..seen(&[], None)
    };
    let step = done(adopt_step(&a, &running, P, now()));
    assert_eq!(
        (step.status, step.note, step.requeue),
        (None, None, Some(JOB_POLL))
    );
    let ended = Seen {
        running: Some(None),
        ..seen(&[], None)
    };
    let step = done(adopt_step(&a, &ended, P, now()));
    let (reason, message) = failure(&step);
    assert_eq!(reason, "AdoptionInterrupted");
    assert!(message.contains("an admin decides again"), "{message}");
    // Nothing is asked of Ganeti's VM: no tag job can come out of this phase.
    let free = vm(VM, UUID, &[]);
    let with_vm = Seen {
        running: Some(None),
        ..seen(&[], Some(Some(&free)))
    };
    assert!(matches!(adopt_step(&a, &with_vm, P, now()), Adopt::Done(_)));
    // Its job had done its work: adopted.
    let mine = tagged_by(&a, VM, UUID);
    let step = done(adopt_step(&a, &seen(std::slice::from_ref(&mine), None), P, now()));
    assert_eq!(stored(&step).phase, Phase::Created);
}

#[test]
fn any_running_tag_job_may_be_the_interrupted_one() {
    assert!(is_tag_job("TAGS_SET", VM), "Ganeti 3.0 names no object");
    assert!(is_tag_job("TAGS_SET(old.example.org)", VM));
    assert!(!is_tag_job("TAGS_SET(other.example.org)", VM));
    assert!(!is_tag_job("TAGS_DEL", VM));
    assert!(!is_tag_job("INSTANCE_CREATE(old.example.org)", VM));
}

#[test]
fn the_tag_job_is_recorded_then_followed_to_its_end() {
    let a = approved("a");
    let step = after_tag(&a, Submission::Submitted(12), now());
    let s = stored(&step);
    assert_eq!((s.phase, s.job_id), (Phase::Creating, Some(12)));
    let message = "Ganeti job 12 writes the owner tag of user alice on old.example.org (UUID u-old)";
    assert_eq!(instance_created(s), ("False", ADOPTING, message));
    assert_eq!(step.note.as_ref().map(|n| n.message.as_str()), Some(message));
    assert_eq!(step.requeue, Some(JOB_POLL));
    let refused = after_tag(&a, Submission::Refused("bad tag".into()), now());
    assert_eq!(failure(&refused), ("BadRequest", "not adopted: bad tag"));

    let mut a = a;
    a.status = step.status.clone();
    let running = JobOutcome::Running {
        received_ts: Some(now().as_duration().as_secs_f64()),
    };
    assert_eq!(
        adopt_after_job(&a, 12, &running, None, P, now()),
        Follow::Done(Step {
            status: None,
            note: None,
            requeue: Some(Duration::from_secs(1))
        })
    );
    assert_eq!(
        adopt_after_job(&a, 12, &JobOutcome::Succeeded, None, P, now()),
        Follow::ReadMarked
    );
    let mine = tagged_by(&a, VM, UUID);
    let Follow::Done(step) = adopt_after_job(&a, 12, &JobOutcome::Succeeded, Some(&[mine]), P, now()) else {
        panic!("expected a step")
    };
    let s = stored(&step);
    assert_eq!((s.phase, s.job_id), (Phase::Created, Some(12)));
    assert_eq!(s.instance_uuid.as_deref(), Some(UUID));
    assert!(
        instance_created(s)
            .2
            .ends_with("its owner tag was written by Ganeti job 12")
    );
    let Follow::Done(step) = adopt_after_job(&a, 12, &JobOutcome::Archived, Some(&[]), P, now()) else {
        panic!("expected a step")
    };
    assert_eq!(failure(&step).0, "TagMissing");
}

#[test]
fn a_failed_tag_job_fails_the_adoption_with_ganetis_message() {
    let mut a = approved("a");
    a.status = after_tag(&a, Submission::Submitted(12), now()).status;
    let job = Job {
        id: 12,
        status: JobStatus::Error,
        summary: vec!["TAGS_SET".into()],
        opstatus: vec![JobStatus::Error],
        opresult: vec![serde_json::json!([
            "OpPrereqError",
            ["Tag too long", "wrong_input"]
        ])],
        received_ts: None,
        start_ts: None,
        end_ts: None,
        ops: vec![],
    };
    let Follow::Done(step) = adopt_after_job(&a, 12, &JobOutcome::of(&job), None, P, now()) else {
        panic!("expected a step")
    };
    let (reason, message) = failure(&step);
    assert_eq!(reason, "TagJobFailed");
    assert!(message.contains("Tag too long"), "{message}");
    let s = stored(&step);
    assert_eq!(
        s.ganeti_error.as_ref().and_then(|e| e.code.as_deref()),
        Some("wrong_input")
    );
    assert_eq!(s.job_id, Some(12), "the job stays on record");
}

#[test]
fn an_observed_cluster_holds_an_adoption_with_its_own_words() {
    let a = approved("a");
    let step = held_on_observed(&a, "lab", now());
    assert_eq!(
        step.note.unwrap().message,
        "cluster lab is observed only (managementPolicy: Observe): the operator makes no changes to it in Ganeti: the approved instance is not adopted"
    );
    assert!(
        instance_created(stored_opt(&step.status))
            .2
            .contains("no owner tag is written")
    );
}

fn stored_opt(s: &Option<InstanceApplicationStatus>) -> &InstanceApplicationStatus {
    s.as_ref().expect("a status")
}

#[test]
fn the_applicant_is_told_of_the_adoption_in_its_words() {
    let mut a = approved("a");
    let (subject, body) = mail_text(&a, MailKind::Approved);
    assert_eq!(subject, "VM old.example.org: adoption approved");
    assert!(body.contains("own the existing VM old.example.org"), "{body}");
    let mine = tagged_by(&a, VM, UUID);
    a.status = done(adopt_step(&a, &seen(&[mine], None), P, now())).status;
    let (subject, body) = mail_text(&a, MailKind::Created);
    assert_eq!(subject, "VM old.example.org is yours");
    assert!(body.contains("now belongs to user alice"), "{body}");
}
