use super::*;
use crate::api::application::{
    Decision, DiskRequest, InstanceApplicationSpec, NetworkRequest, Phase, Verdict,
};
use crate::api::cluster::{Hypervisor, InstanceDefaults, NicMode, SecretKeysRef};
use crate::api::profile::UserProfileSpec;
use crate::api::quota::{ClusterQuotaSpec, QuotaLimits};
use crate::inventory::ClusterInventory;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa alice@a";
const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb alice@b";

fn now() -> Timestamp {
    "2026-11-24T12:00:00Z".parse().unwrap()
}

fn app(name: &str, owner: Subject) -> InstanceApplication {
    let mut a = InstanceApplication::new(
        name,
        InstanceApplicationSpec {
            cluster: Some("lab".into()),
            hostname: format!("{name}.example.org"),
            vcpus: 2,
            memory: "1Gi".into(),
            disks: vec![DiskRequest { size: "10Gi".into() }],
            os: None,
            network: None,
            ssh_keys: vec![KEY_A.into()],
            owner,
            applicant: Some("alice".into()),
            contact: None,
            purpose: "tests".into(),
            decision: None,
        },
    );
    a.metadata.namespace = Some("team".into());
    a.metadata.uid = Some(format!("uid-{name}"));
    a.metadata.generation = Some(1);
    a
}

fn approve(mut a: InstanceApplication) -> InstanceApplication {
    a.spec.decision = Some(Decision {
        verdict: Verdict::Approved,
        reason: None,
        decided_by: Some("admin".into()),
    });
    a
}

fn spec() -> GanetiClusterSpec {
    GanetiClusterSpec {
        rapi_url: "https://lab:5080".into(),
        credentials_secret: SecretKeysRef {
            name: "rapi".into(),
            username_key: None,
            password_key: None,
        },
        ca_bundle: None,
        insecure: None,
        sync_interval: None,
        tag_prefix: None,
        allowed: None,
        defaults: InstanceDefaults {
            disk_template: None,
            os: Some("noop".into()),
            hypervisor: Some(Hypervisor::Fake),
            nic_mode: Some(NicMode::Routed),
            nic_link: Some("rt".into()),
            network: None,
            iallocator: None,
            primary_node: Some("node1".into()),
            ssh_keys_os_parameter: Some("ssh_authorized_keys".into()),
        },
    }
}

fn catalog() -> Catalog {
    Catalog {
        operating_systems: vec!["noop".into(), "debootstrap+default".into()],
        disk_templates: vec!["plain".into(), "diskless".into()],
    }
}

fn inventory(instances: Vec<Instance>) -> ClusterInventory {
    ClusterInventory {
        cluster: "lab".into(),
        instances,
        tag_prefix: crate::tags::DEFAULT_PREFIX.into(),
        reachable: true,
        ..Default::default()
    }
}

fn quota(instances: u32) -> ClusterQuota {
    ClusterQuota::new(
        "default",
        ClusterQuotaSpec {
            cluster: "lab".into(),
            subject: None,
            limits: QuotaLimits {
                instances: Some(instances),
                ..Default::default()
            },
        },
    )
}

struct World {
    spec: GanetiClusterSpec,
    inventory: ClusterInventory,
    catalog: Catalog,
    quotas: Vec<ClusterQuota>,
}

impl World {
    fn new() -> Self {
        Self {
            spec: spec(),
            inventory: inventory(vec![]),
            catalog: catalog(),
            quotas: vec![],
        }
    }

    fn evaluate(
        &self,
        a: &InstanceApplication,
        others: &[InstanceApplication],
        self_approve: bool,
    ) -> Evaluation {
        evaluate(&Pending {
            app: a,
            cluster: ClusterView::Ready {
                name: "lab",
                spec: &self.spec,
                inventory: &self.inventory,
                catalog: &self.catalog,
            },
            quotas: &self.quotas,
            applications: others,
            may_self_approve: self_approve,
            now: now(),
        })
    }
}

fn condition<'a>(
    e: &'a Evaluation,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&e.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn without_a_decision_it_waits_for_an_admin() {
    let w = World::new();
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], false);
    assert_eq!(e.status.phase, Phase::Pending);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AwaitingDecision");
    assert_eq!(condition(&e, VALIDATED).status, "True");
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "False");
    assert_eq!(e.status.cluster.as_deref(), Some("lab"));
    assert_eq!(e.status.observed_generation, Some(1));
}

#[test]
fn an_admin_approval_within_quota_approves() {
    let mut w = World::new();
    w.quotas = vec![quota(2)];
    let e = w.evaluate(&approve(app("a", Subject::user("alice"))), &[], false);
    assert!(e.approved);
    assert_eq!(e.status.phase, Phase::Approved);
    let decided = condition(&e, DECIDED);
    assert_eq!(
        (decided.status.as_str(), decided.reason.as_str()),
        ("True", "Approved")
    );
    assert!(decided.message.contains("admin"), "{}", decided.message);
    assert!(e.status.quota.as_ref().unwrap().fits);
}

#[test]
fn an_approval_over_quota_is_refused_with_the_numbers() {
    let mut w = World::new();
    w.quotas = vec![quota(2)];
    w.inventory = inventory(vec![
        owned("one.example.org", &Subject::group("team-a")),
        owned("two.example.org", &Subject::group("team-a")),
    ]);
    let e = w.evaluate(&approve(app("a", Subject::group("team-a"))), &[], false);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Pending);
    let q = condition(&e, QUOTA_EXCEEDED);
    assert_eq!(q.status, "True");
    assert!(q.message.contains("3 of 2"), "{}", q.message);
    let d = condition(&e, DECIDED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("False", "ApprovalRefused")
    );
    assert!(d.message.contains("3 of 2"), "{}", d.message);
    assert!(
        e.note
            .as_ref()
            .is_some_and(|n| n.warning && n.reason == "ApprovalRefused")
    );
    // Said once: the same refusal again is no new Event.
    let mut again = approve(app("a", Subject::group("team-a")));
    again.status = Some(e.status.clone());
    assert_eq!(w.evaluate(&again, &[], false).note, None);
}

fn owned(name: &str, owner: &Subject) -> Instance {
    Instance {
        name: name.into(),
        vcpus: 1,
        memory_mib: 128,
        tags: vec![crate::tags::format_owner(crate::tags::DEFAULT_PREFIX, owner).unwrap()],
        ..Default::default()
    }
}

#[test]
fn approved_but_not_created_applications_count_against_the_quota() {
    let mut w = World::new();
    w.quotas = vec![quota(1)];
    let mut first = app("first", Subject::user("alice"));
    first.status = Some(InstanceApplicationStatus {
        phase: Phase::Creating,
        cluster: Some("lab".into()),
        ..Default::default()
    });
    let second = approve(app("second", Subject::user("alice")));
    let e = w.evaluate(&second, &[first.clone(), second.clone()], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "True");
}

#[test]
fn a_rejection_rejects() {
    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.decision = Some(Decision {
        verdict: Verdict::Rejected,
        reason: Some("no budget".into()),
        decided_by: Some("admin".into()),
    });
    let e = w.evaluate(&a, &[], false);
    assert_eq!(e.status.phase, Phase::Rejected);
    assert!(condition(&e, DECIDED).message.contains("no budget"));
}

#[test]
fn holders_of_create_vm_are_approved_within_quota_only() {
    let mut w = World::new();
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], true);
    assert!(e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AutoApproved");
    w.quotas = vec![quota(0)];
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], true);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AwaitingDecision");
}

#[test]
fn validation_names_what_to_fix() {
    let mut w = World::new();
    w.inventory = inventory(vec![owned("a.example.org", &Subject::user("bob"))]);
    let e = w.evaluate(&approve(app("a", Subject::user("alice"))), &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, VALIDATED).reason, "NameTaken");
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalWaiting");

    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.os = Some("windows".into());
    let v = w.evaluate(&a, &[], false);
    assert_eq!(condition(&v, VALIDATED).reason, "OperatingSystemNotOffered");
    assert!(condition(&v, VALIDATED).message.contains("noop"));
    // A bare name stands for the OS's default variant.
    a.spec.os = Some("debootstrap".into());
    assert_eq!(condition(&w.evaluate(&a, &[], false), VALIDATED).status, "True");

    let mut w = World::new();
    w.spec.defaults.disk_template = Some(DiskTemplate::Drbd);
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], false);
    assert_eq!(condition(&e, VALIDATED).reason, "DiskTemplateNotAllowed");
}

#[test]
fn cluster_problems_keep_it_pending() {
    let a = approve(app("a", Subject::user("alice")));
    for (view, reason) in [
        (ClusterView::Unchosen, "NoCluster"),
        (ClusterView::Missing("lab"), "ClusterNotFound"),
        (
            ClusterView::NotReady {
                name: "lab",
                message: "wrong password",
            },
            "ClusterNotReady",
        ),
    ] {
        let e = evaluate(&Pending {
            app: &a,
            cluster: view,
            quotas: &[],
            applications: &[],
            may_self_approve: true,
            now: now(),
        });
        assert!(!e.approved, "{reason}");
        assert_eq!(e.status.phase, Phase::Pending);
        assert_eq!(condition(&e, VALIDATED).reason, reason);
        assert!(conditions::get(&e.status.conditions, QUOTA_EXCEEDED).is_none());
    }
}

#[test]
fn only_waiting_or_edited_applications_are_evaluated() {
    let mut a = app("a", Subject::user("alice"));
    assert!(needs_evaluation(&a));
    for (phase, same_generation, expected) in [
        (Phase::Pending, true, true),
        (Phase::Failed, true, false),
        (Phase::Failed, false, true),
        (Phase::Rejected, false, true),
        (Phase::Approved, false, false),
        (Phase::Creating, false, false),
        (Phase::Created, false, false),
    ] {
        a.status = Some(InstanceApplicationStatus {
            phase,
            observed_generation: Some(if same_generation { 1 } else { 0 }),
            ..Default::default()
        });
        assert_eq!(needs_evaluation(&a), expected, "{phase:?} same={same_generation}");
    }
}

#[test]
fn an_edited_failed_application_starts_afresh_on_a_new_decision() {
    let w = World::new();
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    a.status = Some(failed_locally(&a, "OpPrereqError", "out of memory".into(), now()));
    a.status.as_mut().unwrap().job_id = Some(7);
    // Edited: the old approval does not carry over to the new spec.
    a.metadata.generation = Some(2);
    a.spec.vcpus = 8;
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ChangedAfterApproval");
    assert_eq!(e.status.job_id, None);
    // An admin decides again (a new reason): now it is tried afresh.
    a.status = Some(e.status);
    a.metadata.generation = Some(3);
    a.spec.decision.as_mut().unwrap().reason = Some("8 vCPUs are fine".into());
    let e = w.evaluate(&a, &[], false);
    assert!(e.approved);
    assert_eq!(e.status.approved_generation, Some(3));
    assert_eq!(e.status.job_id, None);
    assert_eq!(e.status.ganeti_error, None);
    assert_eq!(e.status.observed_generation, Some(3));
    assert!(conditions::get(&e.status.conditions, INSTANCE_CREATED).is_none());
}

#[test]
fn the_create_request_carries_defaults_owner_tag_and_keys() {
    let mut a = app("a", Subject::user("alice"));
    a.spec.memory = "1536Mi".into();
    a.spec.disks = vec![
        DiskRequest { size: "10Gi".into() },
        DiskRequest { size: "1G".into() },
    ];
    let profile = |user: &str, keys: &[&str], groups: &[&str]| {
        UserProfile::new(
            user,
            UserProfileSpec {
                username: user.into(),
                full_name: None,
                email: format!("{user}@example.org"),
                ssh_keys: keys.iter().map(|k| k.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        )
    };
    let profiles = [
        profile("alice", &[KEY_A, KEY_B], &[]),
        profile("bob", &["ssh-rsa BOB"], &[]),
    ];
    let req = create_request(&a, &spec(), &catalog(), "GANETI_WEB_MANAGER", &profiles).unwrap();
    let body = serde_json::to_value(&req).unwrap();
    assert_eq!(body["__version__"], 1);
    assert_eq!(body["instance_name"], "a.example.org");
    assert_eq!(body["disk_template"], "plain");
    assert_eq!(body["disks"], serde_json::json!([{"size": 10240}, {"size": 954}]));
    assert_eq!(
        body["beparams"],
        serde_json::json!({"vcpus": 2, "maxmem": 1536, "minmem": 1536})
    );
    assert_eq!(
        body["nics"],
        serde_json::json!([{"mode": "routed", "link": "rt"}])
    );
    assert_eq!(body["os_type"], "noop");
    assert_eq!(body["hypervisor"], "fake");
    assert_eq!(body["start"], true);
    assert_eq!(body["pnode"], "node1");
    assert_eq!(
        body["tags"],
        serde_json::json!(["GANETI_WEB_MANAGER:owner:U:alice", "GANETI_WEB_MANAGER:app:uid-a"])
    );
    // The application's key once, then the profile's other key; not bob's.
    assert_eq!(
        body["osparams"]["ssh_authorized_keys"],
        format!("{KEY_A}\n{KEY_B}")
    );

    // A Ganeti network brings its own mode and link; diskless has no disks.
    let mut s = spec();
    s.defaults.disk_template = Some(DiskTemplate::Diskless);
    a.spec.network = Some(NetworkRequest {
        name: Some("vlan42".into()),
        ip: Some("pool".into()),
        ..Default::default()
    });
    let body = serde_json::to_value(create_request(&a, &s, &catalog(), "P", &[]).unwrap()).unwrap();
    assert_eq!(body["disks"], serde_json::json!([]));
    assert_eq!(
        body["nics"],
        serde_json::json!([{"network": "vlan42", "ip": "pool"}])
    );

    // A group's VM gets every member's keys.
    let g = app("g", Subject::group("team-a"));
    let members = [
        profile("carol", &[KEY_B], &["team-a"]),
        profile("dave", &[KEY_A], &["team-b"]),
    ];
    assert_eq!(ssh_keys(&g, &members), vec![KEY_A.to_string(), KEY_B.to_string()]);
}

/// An instance as the application's own create job makes it: owner tag and marker.
fn made_by(a: &InstanceApplication, name: &str, uuid: &str) -> Instance {
    let mut i = owned(name, &a.spec.owner);
    i.uuid = uuid.into();
    i.tags.push(marker_tag(a, crate::tags::DEFAULT_PREFIX).unwrap());
    i
}

#[test]
fn an_instance_is_ours_only_with_the_marker_and_the_owner_tag() {
    let p = crate::tags::DEFAULT_PREFIX;
    let a = app("a", Subject::user("alice"));
    assert_eq!(marker_tag(&a, p).unwrap(), "GANETI_WEB_MANAGER:app:uid-a");
    assert!(is_ours(&a, &made_by(&a, "renamed.example.org", "u-1"), p));
    // The owner's tag alone (any VM of alice's) is not enough, nor the marker alone.
    assert!(!is_ours(&a, &owned("a.example.org", &Subject::user("alice")), p));
    let mut marker_only = made_by(&a, "a.example.org", "u-1");
    marker_only.tags.retain(|t| t.contains(":app:"));
    assert!(!is_ours(&a, &marker_only, p));
    // Another application of the same owner has another marker.
    let other = app("other", Subject::user("alice"));
    assert!(!is_ours(&other, &made_by(&a, "a.example.org", "u-1"), p));
    assert!(!is_ours(&a, &made_by(&a, "a.example.org", "u-1"), "OTHER"));
    // Without a UID (never so in the API server) nothing is ours, and nothing is sent.
    let mut no_uid = app("a", Subject::user("alice"));
    no_uid.metadata.uid = None;
    assert!(!is_ours(&no_uid, &made_by(&a, "a.example.org", "u-1"), p));
    assert!(create_request(&no_uid, &spec(), &catalog(), p, &[]).is_err());
}

#[test]
fn the_vm_is_the_one_its_own_job_made_not_the_one_the_hostname_names() {
    let p = crate::tags::DEFAULT_PREFIX;
    let w = World::new();
    let mut a = approve(app("atk", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    a.status = Some(submitted(&a, 9, false, now()));
    // While the job runs alice points the hostname at bob's VM.
    a.metadata.generation = Some(2);
    a.spec.hostname = "bobdb.example.org".into();
    let bobs = {
        let mut i = owned("bobdb.example.org", &Subject::user("bob"));
        i.uuid = "u-bob".into();
        i
    };
    let hers = made_by(&a, "atk.example.org", "u-alice");
    // Only instances with the marker are looked at; bob's is not among them, and
    // would not count if it were.
    let s = after_job(
        &a,
        9,
        JobOutcome::Succeeded,
        &[bobs.clone(), hers.clone()],
        p,
        now(),
    );
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.instance_name.as_deref(), Some("atk.example.org"));
    assert_eq!(s.instance_uuid.as_deref(), Some("u-alice"));
    assert_eq!(
        s.observed_generation,
        Some(1),
        "the status describes the approved spec"
    );
    let s = after_job(
        &a,
        9,
        JobOutcome::Succeeded,
        std::slice::from_ref(&bobs),
        p,
        now(),
    );
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.instance_uuid, None);
    assert!(s.ganeti_error.unwrap().message.contains("no instance carrying"));
    // Renamed before the operator looked: found by its tags, recorded under its new name.
    let renamed = made_by(&a, "renamed.example.org", "u-alice");
    let s = after_job(
        &a,
        9,
        JobOutcome::Unknown,
        std::slice::from_ref(&renamed),
        p,
        now(),
    );
    assert_eq!(
        (s.instance_name.as_deref(), s.instance_uuid.as_deref()),
        (Some("renamed.example.org"), Some("u-alice"))
    );
    let s = after_job(&a, 9, JobOutcome::Unknown, &[], p, now());
    assert_eq!(s.ganeti_error.unwrap().code, None);
    assert_eq!(
        conditions::get(&s.conditions, INSTANCE_CREATED).unwrap().reason,
        "CreateFailed"
    );
    // Two instances with its tags (someone copied them): none is taken.
    let s = after_job(&a, 9, JobOutcome::Succeeded, &[hers.clone(), renamed], p, now());
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.instance_uuid, None);
    // A failed job is a failure whatever exists.
    let failure = GanetiFailure {
        error_type: "OpPrereqError".into(),
        message: "already exists".into(),
        ecode: None,
    };
    let s = after_job(&a, 9, JobOutcome::Failed(&failure), &[hers], p, now());
    assert_eq!(s.phase, Phase::Failed);
}

#[test]
fn a_restart_adopts_only_an_instance_with_the_applications_tags() {
    let p = crate::tags::DEFAULT_PREFIX;
    let w = World::new();
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    assert_eq!(adopt(&a, &[], p, now()), None);
    let alices_other = owned("a.example.org", &Subject::user("alice"));
    assert_eq!(adopt(&a, &[alices_other], p, now()), None);
    let s = adopt(&a, &[made_by(&a, "moved.example.org", "u-7")], p, now()).unwrap();
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.instance_uuid.as_deref(), Some("u-7"));
}

#[test]
fn an_approval_covers_only_the_spec_it_was_given_for() {
    let taken = owned("small.example.org", &Subject::user("bob"));
    let mut w = World::new();
    w.inventory = inventory(vec![taken]);
    // alice asks for a small VM under a taken name; an admin approves; it waits.
    let mut a = app("small", Subject::user("alice"));
    a.spec.vcpus = 1;
    a.status = Some(w.evaluate(&a, &[], false).status);
    a = approve(a);
    a.metadata.generation = Some(2);
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalWaiting");
    assert_eq!(e.status.decided.as_ref().unwrap().generation, 2);
    // Evaluated again on the same spec: still the same decision, still waiting.
    a.status = Some(e.status);
    let e = w.evaluate(&a, &[], false);
    assert_eq!(e.status.decided.as_ref().unwrap().generation, 2);
    // alice frees the name and asks for 8 vCPUs: the approval does not carry over.
    a.status = Some(e.status);
    a.metadata.generation = Some(3);
    a.spec.hostname = "big.example.org".into();
    a.spec.vcpus = 8;
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Pending);
    assert_eq!(e.status.approved_generation, None);
    let d = condition(&e, DECIDED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("False", "ChangedAfterApproval")
    );
    assert!(d.message.contains("approved generation 2") && d.message.contains("decide again"));
    assert!(e.note.as_ref().is_some_and(|n| n.warning));
    // A holder of clusters.createVm may approve the new spec themselves, within quota.
    let self_approved = w.evaluate(&a, &[], true);
    assert!(self_approved.approved);
    assert_eq!(condition(&self_approved, DECIDED).reason, "AutoApproved");
    // An admin's new decision approves it, for this generation.
    a.status = Some(e.status);
    a.metadata.generation = Some(4);
    a.spec.decision.as_mut().unwrap().reason = Some("8 vCPUs are fine".into());
    let e = w.evaluate(&a, &[], false);
    assert!(e.approved);
    assert_eq!(e.status.approved_generation, Some(4));
    assert_eq!(e.status.instance_name.as_deref(), Some("big.example.org"));
}

#[test]
fn a_rejection_stands_over_an_edit() {
    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.decision = Some(Decision {
        verdict: Verdict::Rejected,
        reason: Some("too big".into()),
        decided_by: Some("admin".into()),
    });
    a.status = Some(w.evaluate(&a, &[], true).status);
    a.metadata.generation = Some(2);
    a.spec.vcpus = 1;
    let e = w.evaluate(&a, &[], true);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Rejected);
}

#[test]
fn the_vm_is_created_from_the_approved_generation_only() {
    let w = World::new();
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    assert_eq!(a.status.as_ref().unwrap().approved_generation, Some(1));
    assert!(spec_is_approved(&a));
    // Changed between the approval and the create call.
    a.metadata.generation = Some(2);
    a.spec.hostname = "elsewhere.example.org".into();
    assert!(!spec_is_approved(&a));
    assert_eq!(approved_name(&a), "a.example.org");
    let s = changed_after_approval(&a, now());
    assert_eq!((s.phase, s.approved_generation), (Phase::Pending, None));
    assert_eq!(
        conditions::get(&s.conditions, DECIDED).unwrap().reason,
        "ChangedAfterApproval"
    );
    // Back in Pending the admin's approval is stale: it waits for a new decision.
    a.status = Some(s);
    assert!(needs_evaluation(&a));
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ChangedAfterApproval");
    // Submitted before the change: the status keeps the approved name, not the spec's.
    let mut b = approve(app("b", Subject::user("alice")));
    b.status = Some(w.evaluate(&b, &[], false).status);
    b.spec.hostname = "bobdb.example.org".into();
    b.metadata.generation = Some(2);
    let s = submitted(&b, 5, false, now());
    assert_eq!(s.instance_name.as_deref(), Some("b.example.org"));
}

#[test]
fn reserved_groups_cannot_own_a_vm() {
    let w = World::new();
    let a = approve(app("a", Subject::group("system:authenticated")));
    let e = w.evaluate(&a, &[], true);
    assert!(!e.approved);
    let v = condition(&e, VALIDATED);
    assert_eq!(v.reason, "ReservedGroup");
    assert!(v.message.contains("system:authenticated"));
}

fn with_network(name: &str, network: NetworkRequest) -> InstanceApplication {
    let mut a = app(name, Subject::user("alice"));
    a.spec.network = Some(network);
    a
}

#[test]
fn applications_choose_only_the_networks_the_cluster_offers() {
    let mut w = World::new();
    let refused = |w: &World, a: &InstanceApplication| {
        let e = w.evaluate(a, &[], true);
        assert!(!e.approved, "{:?}", a.spec.network);
        let v = condition(&e, VALIDATED);
        (v.reason.clone(), v.message.clone())
    };
    // Defaults only: the default mode and link may be named, nothing else.
    let default_named = with_network(
        "d",
        NetworkRequest {
            mode: Some(NicMode::Routed),
            link: Some("rt".into()),
            ..Default::default()
        },
    );
    assert!(w.evaluate(&default_named, &[], true).approved);
    let (reason, message) = refused(
        &w,
        &with_network(
            "v",
            NetworkRequest {
                name: Some("dmz".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NetworkNotAllowed");
    assert!(message.contains("allowed networks: none"), "{message}");
    let (reason, message) = refused(
        &w,
        &with_network(
            "l",
            NetworkRequest {
                link: Some("br-dmz".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NicLinkNotAllowed");
    assert!(message.contains("allowed links: rt"), "{message}");
    let (reason, message) = refused(
        &w,
        &with_network(
            "m",
            NetworkRequest {
                mode: Some(NicMode::Bridged),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NicModeNotAllowed");
    assert!(message.contains("allowed modes: routed"), "{message}");
    // An explicit IP without a Ganeti network needs an offered range; `pool` a network.
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.7".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");
    assert!(message.contains("allowed ranges: none"), "{message}");
    let (reason, _) = refused(
        &w,
        &with_network(
            "p",
            NetworkRequest {
                ip: Some("pool".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");

    // The cluster offers more.
    w.spec.allowed = Some(crate::api::cluster::AllowedChoices {
        networks: vec!["dmz".into()],
        nic_modes: vec![NicMode::Bridged],
        nic_links: vec!["br-dmz".into()],
        ip_ranges: vec!["198.51.100.0/25".into()],
    });
    for ok in [
        NetworkRequest {
            name: Some("dmz".into()),
            ip: Some("pool".into()),
            ..Default::default()
        },
        NetworkRequest {
            name: Some("dmz".into()),
            ip: Some("203.0.113.9".into()),
            ..Default::default()
        },
        NetworkRequest {
            mode: Some(NicMode::Bridged),
            link: Some("br-dmz".into()),
            ..Default::default()
        },
        NetworkRequest {
            ip: Some("198.51.100.127".into()),
            ..Default::default()
        },
    ] {
        assert!(
            w.evaluate(&with_network("ok", ok.clone()), &[], true).approved,
            "{ok:?}"
        );
    }
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.128".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");
    assert!(
        message.contains("198.51.100.0/25") && message.contains("dmz"),
        "{message}"
    );
    let (_, message) = refused(
        &w,
        &with_network(
            "n",
            NetworkRequest {
                name: Some("core".into()),
                ..Default::default()
            },
        ),
    );
    assert!(message.contains("allowed networks: dmz"), "{message}");

    // An offered address someone holds: a VM Ganeti has, or an approved application.
    let mut holder = owned("web.example.org", &Subject::user("bob"));
    holder.ips = vec!["198.51.100.10".into()];
    w.inventory = inventory(vec![holder]);
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.10".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpTaken");
    assert!(message.contains("web.example.org"), "{message}");
    let mut approved = with_network(
        "first",
        NetworkRequest {
            ip: Some("198.51.100.11".into()),
            ..Default::default()
        },
    );
    approved.status = Some(InstanceApplicationStatus {
        phase: Phase::Approved,
        cluster: Some("lab".into()),
        ..Default::default()
    });
    let second = with_network(
        "second",
        NetworkRequest {
            ip: Some("198.51.100.11".into()),
            ..Default::default()
        },
    );
    let e = w.evaluate(&second, std::slice::from_ref(&approved), true);
    assert!(!e.approved);
    assert!(condition(&e, VALIDATED).message.contains("team/first"));
    // Its own earlier approval does not count against it.
    assert!(
        w.evaluate(&approved, std::slice::from_ref(&approved), true)
            .approved
    );
}

#[test]
fn cidr_ranges() {
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    assert!(cidr_contains("10.0.0.0/8", ip("10.255.1.2")));
    assert!(!cidr_contains("10.0.0.0/8", ip("11.0.0.1")));
    assert!(cidr_contains("0.0.0.0/0", ip("1.2.3.4")));
    assert!(cidr_contains("192.0.2.7/32", ip("192.0.2.7")));
    assert!(!cidr_contains("192.0.2.7/32", ip("192.0.2.8")));
    assert!(!cidr_contains("192.0.2.0/33", ip("192.0.2.1")));
    assert!(!cidr_contains("192.0.2.0", ip("192.0.2.0")));
}

#[test]
fn transitions_record_job_node_and_errors() {
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    let s = submitted(&a, 42, false, now());
    assert_eq!((s.phase, s.job_id), (Phase::Creating, Some(42)));
    assert_eq!(s.observed_generation, Some(1));
    a.status = Some(s);
    let instance = Instance {
        name: "a.example.org".into(),
        primary_node: "node1".into(),
        ips: vec!["198.51.100.50".into()],
        ctime: Some(1_795_541_331.5),
        ..Default::default()
    };
    let s = created(&a, &instance, now());
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.primary_node.as_deref(), Some("node1"));
    assert_eq!(s.ips, vec!["198.51.100.50".to_string()]);
    assert_eq!(s.created_time.as_ref().unwrap().0.as_second(), 1_795_541_331);
    assert_eq!(
        conditions::get(&s.conditions, INSTANCE_CREATED).unwrap().status,
        "True"
    );

    let failure = GanetiFailure::from_opresult(&serde_json::json!([
        "OpPrereqError",
        ["Not enough memory on node1", "insufficient_resources"]
    ]))
    .unwrap();
    let s = failed(&a, &failure, now());
    assert_eq!(s.phase, Phase::Failed);
    let e = s.ganeti_error.unwrap();
    assert_eq!(e.message, "Not enough memory on node1");
    assert_eq!(e.code.as_deref(), Some("insufficient_resources"));
}

#[test]
fn the_applicant_is_mailed_once_per_phase_and_generation() {
    let mut a = approve(app("a", Subject::user("alice")));
    assert_eq!(mail_due(&a), None);
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(mail_due(&a), Some(MailKind::Approved));
    a.status = Some(notified(&a, MailKind::Approved, true, "mailed".into(), now()));
    assert_eq!(mail_due(&a), None);
    a.status = Some(submitted(&a, 1, false, now()));
    assert_eq!(mail_due(&a), None, "Creating is still approved to the applicant");
    a.status = Some(failed_locally(&a, "X", "broken".into(), now()));
    assert_eq!(mail_due(&a), Some(MailKind::Failed));
    let (subject, body) = mail_text(&a, MailKind::Failed);
    assert!(subject.contains("a.example.org"));
    assert!(body.contains("broken") && body.contains("File a new application"));
    a.status = Some(notified(&a, MailKind::Failed, false, "no address".into(), now()));
    assert_eq!(mail_due(&a), None, "an impossible mail is not retried");
    // Edited and approved again: a new generation, a new approval mail.
    a.metadata.generation = Some(2);
    a.spec.decision.as_mut().unwrap().reason = Some("again".into());
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(mail_due(&a), Some(MailKind::Approved));
}

#[test]
fn the_reason_names_application_applicant_and_approver() {
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(
        create_reason(&a),
        "ganeti-operator: InstanceApplication team/a of alice, approved by admin"
    );
}

#[test]
fn a_vm_created_after_the_inventory_was_read_still_counts() {
    let mut w = World::new();
    w.quotas = vec![quota(1)];
    w.inventory.read_started = Some(now());
    let created_at = |t: &str| {
        let mut a = app("first", Subject::user("alice"));
        a.status = Some(InstanceApplicationStatus {
            phase: Phase::Created,
            cluster: Some("lab".into()),
            instance_name: Some("first.example.org".into()),
            created_time: Some(Time(t.parse().unwrap())),
            ..Default::default()
        });
        a
    };
    let second = approve(app("second", Subject::user("alice")));
    // Created after the read began: the snapshot may lack it, it counts.
    let after = created_at("2026-11-24T12:00:01Z");
    let e = w.evaluate(&second, &[after, second.clone()], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "True");
    // Created before the read began and absent from it: removed since, holds nothing.
    let before = created_at("2026-11-24T11:59:59Z");
    let e = w.evaluate(&second, &[before, second.clone()], false);
    assert!(e.approved);
}
