//! `after_lookup`, `after_create` and `after_job`: every branch, with the exact status,
//! Event and requeue the controller carries out.

use super::*;
use crate::api::application::InstanceApplicationStatus;
use crate::rapi::{Job, JobStatus};
use std::time::Duration;

const P: &str = crate::tags::DEFAULT_PREFIX;

/// Approved by an admin, as the evaluation stores it.
fn approved(name: &str) -> InstanceApplication {
    let mut a = approve(app(name, Subject::user("alice")));
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(phase(&a), Phase::Approved);
    a
}

/// Creating, following job 9.
fn following(name: &str) -> InstanceApplication {
    let mut a = approved(name);
    a.status = Some(submitted(&a, 9, false, now()));
    a
}

fn done(next: Submit) -> Step {
    match next {
        Submit::Done(step) => step,
        other => panic!("expected a step, got {other:?}"),
    }
}

fn followed(next: Follow) -> Step {
    match next {
        Follow::Done(step) => step,
        other => panic!("expected a step, got {other:?}"),
    }
}

fn stored(step: &Step) -> &InstanceApplicationStatus {
    step.status.as_ref().expect("a status to store")
}

fn instance_created(s: &InstanceApplicationStatus) -> (&str, &str, &str) {
    let c = conditions::get(&s.conditions, INSTANCE_CREATED).expect("an InstanceCreated condition");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn note(warning: bool, reason: &'static str, message: &str) -> Option<Note> {
    Some(Note {
        warning,
        reason,
        message: message.to_string(),
    })
}

/// The application's own instance, as its job made it, on node1.
fn ours(a: &InstanceApplication, name: &str, uuid: &str) -> Instance {
    let mut i = made_by(a, name, uuid);
    i.primary_node = "node1".into();
    i
}

fn memory_failure() -> GanetiFailure {
    GanetiFailure::from_opresult(&serde_json::json!([
        "OpPrereqError",
        ["Not enough memory on node1", "insufficient_resources"]
    ]))
    .unwrap()
}

// after_lookup

#[test]
fn a_fresh_approval_submits_without_searching_ganeti() {
    let a = approved("a");
    assert_eq!(after_lookup(&a, &Found::FreshApproval, P, now()), Submit::Create);
}

#[test]
fn an_earlier_approval_looks_for_the_marker_first() {
    let a = approved("a");
    assert_eq!(
        after_lookup(&a, &Found::NotSearched, P, now()),
        Submit::ReadMarked
    );
}

#[test]
fn an_instance_carrying_the_marker_is_adopted_whatever_its_name() {
    let a = approved("a");
    let moved = ours(&a, "moved.example.org", "u-7");
    let step = done(after_lookup(&a, &Found::Marked(vec![moved]), P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.instance_name.as_deref(), Some("moved.example.org"));
    assert_eq!(s.instance_uuid.as_deref(), Some("u-7"));
    assert_eq!(s.primary_node.as_deref(), Some("node1"));
    assert_eq!(
        instance_created(s),
        ("True", "Created", "instance moved.example.org runs on node1")
    );
    // Recorded quietly: the applicant's mail tells of it; the next change wakes it.
    assert_eq!((&step.note, step.requeue), (&None, None));
}

#[test]
fn marked_instances_that_are_not_its_own_lead_to_the_job_list() {
    let a = approved("a");
    assert_eq!(
        after_lookup(&a, &Found::Marked(vec![]), P, now()),
        Submit::ReadJobs
    );
    // Another VM of alice's (the owner tag alone), or the marker without the owner tag.
    let alices_other = owned("a.example.org", &Subject::user("alice"));
    let mut marker_only = ours(&a, "a.example.org", "u-1");
    marker_only.tags.retain(|t| t.contains(":app:"));
    let next = after_lookup(&a, &Found::Marked(vec![alices_other, marker_only]), P, now());
    assert_eq!(next, Submit::ReadJobs);
}

#[test]
fn two_instances_carrying_the_marker_fail_rather_than_choose() {
    let a = approved("a");
    let found = Found::Marked(vec![
        ours(&a, "one.example.org", "u-1"),
        ours(&a, "two.example.org", "u-2"),
    ]);
    let step = done(after_lookup(&a, &found, P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.instance_uuid, None);
    assert_eq!(
        instance_created(s).2,
        "Ganeti could not create the instance: AmbiguousInstance: 2 instances carry this application's tags (one.example.org, two.example.org); an admin must sort out which is its VM. To try again, file a new application (or an admin edits this one and decides again)."
    );
    assert_eq!((&step.note, step.requeue), (&None, None));
}

#[test]
fn a_running_create_job_of_the_approved_name_is_adopted() {
    let mut a = approved("a");
    // Even when the spec changed since: that job was under way for the approved one.
    a.metadata.generation = Some(2);
    a.spec.hostname = "elsewhere.example.org".into();
    assert_eq!(create_job_summary(&a), "INSTANCE_CREATE(a.example.org)");
    let step = done(after_lookup(&a, &Found::Job(Some(12)), P, now()));
    let s = stored(&step);
    assert_eq!((s.phase, s.job_id), (Phase::Creating, Some(12)));
    assert_eq!(s.instance_name.as_deref(), Some("a.example.org"));
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        instance_created(s),
        (
            "False",
            "Creating",
            "Ganeti job 12 (found running) creates the instance"
        )
    );
    assert_eq!(
        step.note,
        note(
            false,
            "Creating",
            "Ganeti job 12 (found running) creates a.example.org"
        )
    );
    assert_eq!(step.requeue, Some(JOB_POLL));
}

#[test]
fn nothing_found_submits_anew() {
    let a = approved("a");
    assert_eq!(after_lookup(&a, &Found::Job(None), P, now()), Submit::Create);
}

#[test]
fn a_spec_changed_after_the_approval_goes_back_to_pending_instead_of_submitting() {
    let mut a = approved("a");
    a.metadata.generation = Some(2);
    a.spec.vcpus = 8;
    for found in [Found::Job(None), Found::FreshApproval] {
        let step = done(after_lookup(&a, &found, P, now()));
        let s = stored(&step);
        assert_eq!(s.phase, Phase::Pending, "{found:?}");
        assert_eq!((s.approved_generation, s.instance_name.as_deref()), (None, None));
        assert_eq!(s.observed_generation, Some(2));
        let decided = conditions::get(&s.conditions, DECIDED).unwrap();
        assert_eq!(
            (decided.status.as_str(), decided.reason.as_str()),
            ("False", "ChangedAfterApproval")
        );
        assert_eq!(
            step.note,
            note(
                true,
                "ChangedAfterApproval",
                "the spec changed after the approval; nothing was created and the change needs a new decision"
            )
        );
        assert_eq!(step.requeue, Some(JOB_POLL));
    }
}

#[test]
fn a_restart_searches_the_marker_then_the_jobs_then_submits() {
    let a = approved("a");
    // What the controller's loop does, against a Ganeti that has neither.
    let mut found = Found::NotSearched;
    let mut asked = Vec::new();
    let last = loop {
        found = match after_lookup(&a, &found, P, now()) {
            Submit::ReadMarked => Found::Marked(vec![]),
            Submit::ReadJobs => Found::Job(None),
            other => break other,
        };
        asked.push(found.clone());
        assert!(asked.len() <= 2, "{asked:?}");
    };
    assert_eq!(asked, vec![Found::Marked(vec![]), Found::Job(None)]);
    assert_eq!(last, Submit::Create);
}

// after_create

#[test]
fn a_submitted_job_is_recorded_before_it_is_followed() {
    let a = approved("a");
    let step = after_create(&a, Submission::Submitted(42), now());
    let s = stored(&step);
    assert_eq!((s.phase, s.job_id), (Phase::Creating, Some(42)));
    assert_eq!(s.instance_name.as_deref(), Some("a.example.org"));
    assert_eq!(
        instance_created(s),
        (
            "False",
            "Creating",
            "Ganeti job 42 (submitted) creates the instance"
        )
    );
    assert_eq!(
        step.note,
        note(
            false,
            "Creating",
            "Ganeti job 42 (submitted) creates a.example.org"
        )
    );
    assert_eq!(step.requeue, Some(JOB_POLL));
}

#[test]
fn a_request_that_cannot_be_built_or_is_refused_fails_the_application() {
    let a = approved("a");
    for (submission, error_type, message) in [
        (
            Submission::Invalid("memory 1Q: bad quantity".into()),
            "InvalidApplication",
            "memory 1Q: bad quantity",
        ),
        (
            Submission::Refused("invalid NIC mode".into()),
            "BadRequest",
            "invalid NIC mode",
        ),
    ] {
        let step = after_create(&a, submission, now());
        let s = stored(&step);
        assert_eq!((s.phase, s.job_id), (Phase::Failed, None), "{error_type}");
        let e = s.ganeti_error.as_ref().unwrap();
        assert_eq!((e.message.as_str(), e.code.as_deref()), (message, None));
        let (status, reason, text) = instance_created(s);
        assert_eq!((status, reason), ("False", "CreateFailed"));
        assert!(
            text.starts_with(&format!(
                "Ganeti could not create the instance: {error_type}: {message}."
            )),
            "{text}"
        );
        assert_eq!((&step.note, step.requeue), (&None, None));
    }
}

// after_job

#[test]
fn a_running_job_is_polled_again_sooner_when_young() {
    let a = following("a");
    let at = |ago: f64| Some(now().as_second() as f64 - ago);
    for (received_ts, delay) in [
        (at(2.0), JOB_POLL),
        (at(20.0), Duration::from_secs(5)),
        (at(400.0), JOB_POLL_MAX),
        (None, JOB_POLL),
        // A clock behind Ganeti's: as young as can be.
        (at(-30.0), JOB_POLL),
    ] {
        let running = JobOutcome::Running { received_ts };
        // Nothing is read or stored for a running job, marked instances or not.
        for marked in [None, Some(&[][..])] {
            let step = followed(after_job(&a, 9, &running, marked, P, now()));
            assert_eq!(
                step,
                Step {
                    status: None,
                    note: None,
                    requeue: Some(delay)
                },
                "{received_ts:?}"
            );
        }
    }
}

#[test]
fn a_failed_job_fails_the_application_whatever_exists() {
    let a = following("a");
    let hers = ours(&a, "a.example.org", "u-alice");
    let failed = JobOutcome::Failed(memory_failure());
    // No need to look at Ganeti's instances: the failure decides.
    for marked in [None, Some(std::slice::from_ref(&hers))] {
        let step = followed(after_job(&a, 9, &failed, marked, P, now()));
        let s = stored(&step);
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.instance_uuid, None);
        let e = s.ganeti_error.as_ref().unwrap();
        assert_eq!(
            (e.message.as_str(), e.code.as_deref()),
            ("Not enough memory on node1", Some("insufficient_resources"))
        );
        assert_eq!(instance_created(s).1, "CreateFailed");
        assert_eq!(
            step.note,
            note(
                true,
                "CreateFailed",
                "creating a.example.org failed: Not enough memory on node1"
            )
        );
        assert_eq!(step.requeue, None);
    }
}

#[test]
fn a_job_that_ended_well_or_was_archived_needs_the_marked_instances() {
    let a = following("a");
    for outcome in [JobOutcome::Succeeded, JobOutcome::Archived] {
        assert_eq!(after_job(&a, 9, &outcome, None, P, now()), Follow::ReadMarked);
    }
}

#[test]
fn a_succeeded_job_records_the_instance_it_made() {
    let a = following("a");
    let mut hers = ours(&a, "a.example.org", "u-alice");
    hers.ips = vec!["198.51.100.50".into()];
    let marked = [hers];
    let step = followed(after_job(&a, 9, &JobOutcome::Succeeded, Some(&marked), P, now()));
    let s = stored(&step);
    assert_eq!((s.phase, s.job_id), (Phase::Created, Some(9)));
    assert_eq!(s.instance_uuid.as_deref(), Some("u-alice"));
    assert_eq!(s.ips, vec!["198.51.100.50".to_string()]);
    assert_eq!(s.ganeti_error, None);
    assert_eq!(
        instance_created(s),
        ("True", "Created", "instance a.example.org runs on node1")
    );
    assert_eq!(
        step.note,
        note(false, "Created", "instance a.example.org created on node1")
    );
    assert_eq!(step.requeue, None);
}

#[test]
fn the_vm_is_the_one_its_own_job_made_not_the_one_the_hostname_names() {
    let mut a = following("atk");
    // While the job runs alice points the hostname at bob's VM.
    a.metadata.generation = Some(2);
    a.spec.hostname = "bobdb.example.org".into();
    let mut bobs = owned("bobdb.example.org", &Subject::user("bob"));
    bobs.uuid = "u-bob".into();
    let hers = ours(&a, "atk.example.org", "u-alice");
    // Only hers counts, whatever else is among the instances looked at.
    let marked = [bobs.clone(), hers];
    let step = followed(after_job(&a, 9, &JobOutcome::Succeeded, Some(&marked), P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.instance_name.as_deref(), Some("atk.example.org"));
    assert_eq!(s.instance_uuid.as_deref(), Some("u-alice"));
    assert_eq!(
        s.observed_generation,
        Some(1),
        "the status describes the approved spec"
    );
    // Hers gone (removed meanwhile): the application fails rather than take bob's VM.
    let step = followed(after_job(
        &a,
        9,
        &JobOutcome::Succeeded,
        Some(std::slice::from_ref(&bobs)),
        P,
        now(),
    ));
    let s = stored(&step);
    assert_eq!((s.phase, s.instance_uuid.as_deref()), (Phase::Failed, None));
    let message =
        "job 9 succeeded but Ganeti has no instance carrying this application's tags (removed meanwhile?)";
    assert_eq!(s.ganeti_error.as_ref().unwrap().message, message);
    assert_eq!(
        step.note,
        note(
            true,
            "CreateFailed",
            &format!("creating atk.example.org failed: {message}")
        )
    );
}

#[test]
fn an_archived_job_is_judged_by_what_ganeti_has() {
    let a = following("a");
    // Renamed before the operator looked: found by its tags, recorded under its new name.
    let renamed = [ours(&a, "renamed.example.org", "u-alice")];
    let step = followed(after_job(&a, 9, &JobOutcome::Archived, Some(&renamed), P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(
        (s.instance_name.as_deref(), s.instance_uuid.as_deref()),
        (Some("renamed.example.org"), Some("u-alice"))
    );
    assert_eq!(
        step.note,
        note(false, "Created", "instance renamed.example.org created on node1")
    );
    // Nothing of its own: the job is lost (an adopted job that was someone else's too).
    let step = followed(after_job(&a, 9, &JobOutcome::Archived, Some(&[]), P, now()));
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Failed);
    let message = "job 9 is no longer known to Ganeti and created no instance for this application";
    let e = s.ganeti_error.as_ref().unwrap();
    assert_eq!((e.message.as_str(), e.code.as_deref()), (message, None));
    assert_eq!(instance_created(s).1, "CreateFailed");
    assert_eq!(
        step.note,
        note(
            true,
            "CreateFailed",
            &format!("creating a.example.org failed: {message}")
        )
    );
}

#[test]
fn two_instances_with_its_tags_after_the_job_fail_it() {
    let a = following("a");
    let marked = [
        ours(&a, "a.example.org", "u-1"),
        ours(&a, "copy.example.org", "u-2"),
    ];
    for outcome in [JobOutcome::Succeeded, JobOutcome::Archived] {
        let step = followed(after_job(&a, 9, &outcome, Some(&marked), P, now()));
        let s = stored(&step);
        assert_eq!((s.phase, s.instance_uuid.as_deref()), (Phase::Failed, None));
        assert!(
            s.ganeti_error
                .as_ref()
                .unwrap()
                .message
                .starts_with("2 instances carry"),
            "{:?}",
            s.ganeti_error
        );
        assert_eq!(
            step.note.as_ref().map(|n| (n.warning, n.reason)),
            Some((true, "CreateFailed"))
        );
    }
}

#[test]
fn a_job_record_tells_its_outcome() {
    let job = |status: JobStatus, opresult: serde_json::Value| Job {
        id: 9,
        status,
        summary: vec!["INSTANCE_CREATE(a.example.org)".into()],
        opstatus: vec![status],
        opresult: vec![opresult],
        received_ts: Some(1_795_541_331.5),
        start_ts: None,
        end_ts: None,
        ops: vec![],
    };
    for status in [
        JobStatus::Queued,
        JobStatus::Waiting,
        JobStatus::Running,
        JobStatus::Canceling,
    ] {
        assert_eq!(
            JobOutcome::of(&job(status, serde_json::Value::Null)),
            JobOutcome::Running {
                received_ts: Some(1_795_541_331.5)
            }
        );
    }
    assert_eq!(
        JobOutcome::of(&job(JobStatus::Success, serde_json::json!(["a.example.org"]))),
        JobOutcome::Succeeded
    );
    let failed = job(
        JobStatus::Error,
        serde_json::json!([
            "OpPrereqError",
            ["Not enough memory on node1", "insufficient_resources"]
        ]),
    );
    assert_eq!(JobOutcome::of(&failed), JobOutcome::Failed(memory_failure()));
    match JobOutcome::of(&job(JobStatus::Canceled, serde_json::Value::Null)) {
        JobOutcome::Failed(f) => assert_eq!(f.error_type, "JobCanceled"),
        other => panic!("a canceled job failed, not {other:?}"),
    }
}

#[test]
fn an_approved_application_on_an_observed_cluster_is_held_with_one_warning() {
    let mut a = approved("observed");
    let step = held_on_observed(&a, "lab", now());
    let s = stored(&step);
    assert_eq!(s.phase, Phase::Approved, "stays approved: created once managed");
    assert_eq!(s.job_id, None);
    let c = crate::api::conditions::get(&s.conditions, INSTANCE_CREATED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", OBSERVED_ONLY));
    assert!(
        c.message
            .contains("cluster lab is observed only (managementPolicy: Observe)"),
        "{}",
        c.message
    );
    let note = step.note.as_ref().expect("an Event");
    assert!(note.warning && note.message.contains("not created"), "{note:?}");
    assert_eq!(step.requeue, None);
    // Stored: the next pass writes nothing and says nothing again.
    a.status = step.status.clone();
    let again = held_on_observed(&a, "lab", now());
    assert_eq!((again.status, again.note), (None, None));
}
