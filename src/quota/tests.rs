use super::*;
use crate::api::application::{
    DiskRequest, InstanceApplication, InstanceApplicationSpec, InstanceApplicationStatus, Phase,
};
use crate::api::common::Subject;
use crate::api::quantity::{Bytes, QuantityError};
use crate::api::quota::{ClusterQuota, ClusterQuotaSpec, QuotaLimits};
use crate::inventory::Instance;
use std::collections::HashMap;

const GI: u64 = 1 << 30;

fn limits(
    instances: Option<u32>,
    vcpus: Option<u32>,
    memory: Option<&str>,
    disk: Option<&str>,
) -> QuotaLimits {
    QuotaLimits {
        instances,
        vcpus,
        memory: memory.map(str::to_string),
        disk: disk.map(str::to_string),
    }
}

fn quota(name: &str, cluster: &str, subject: Option<Subject>, limits: QuotaLimits) -> ClusterQuota {
    ClusterQuota::new(
        name,
        ClusterQuotaSpec {
            cluster: cluster.into(),
            subject,
            limits,
        },
    )
}

fn app(name: &str, owner: Subject, phase: Phase, memory: &str, disks: &[&str]) -> InstanceApplication {
    let mut a = InstanceApplication::new(
        name,
        InstanceApplicationSpec {
            mode: crate::api::application::Mode::Create,
            instance: None,
            cluster: Some("production".into()),
            hostname: format!("{name}.example.org"),
            vcpus: 2,
            memory: memory.into(),
            disks: disks
                .iter()
                .map(|s| DiskRequest { size: s.to_string() })
                .collect(),
            os: None,
            network: None,
            ssh_keys: vec![],
            owner,
            applicant: None,
            contact: None,
            purpose: "tests".into(),
            decision: None,
        },
    );
    a.metadata.namespace = Some("default".into());
    a.status = Some(InstanceApplicationStatus {
        phase,
        ..Default::default()
    });
    a
}

fn inst(name: &str, vcpus: u32, memory_gib: u64, disk_gib: u64, running: bool) -> Instance {
    Instance {
        name: name.into(),
        status: if running { "running" } else { "ADMIN_down" }.into(),
        admin_up: running,
        running,
        vcpus,
        memory_mib: memory_gib * 1024,
        disk_mib: disk_gib * 1024,
        ..Default::default()
    }
}

fn owners(pairs: &[(&str, Subject)]) -> impl Fn(&Instance) -> Option<Subject> + use<> {
    let map: HashMap<String, Subject> = pairs.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
    move |i| map.get(&i.name).cloned()
}

fn alice() -> Subject {
    Subject::user("alice")
}

fn team() -> Subject {
    Subject::group("team-a")
}

fn req(vcpus: u64, memory_gib: u64, disk_gib: u64) -> Request {
    Request {
        vcpus,
        memory: Bytes(memory_gib * GI),
        disk: Bytes(disk_gib * GI),
    }
}

#[test]
fn default_only_applies_to_everyone_on_its_cluster() {
    let quotas = [
        quota(
            "default",
            "production",
            None,
            limits(Some(2), Some(8), Some("16Gi"), None),
        ),
        quota(
            "other-cluster",
            "staging",
            None,
            limits(Some(0), None, None, None),
        ),
    ];
    let l = effective_limits(&quotas, "production", &alice()).unwrap();
    assert_eq!(l.instances.as_ref().map(|l| l.value), Some(2));
    assert_eq!(l.vcpus.as_ref().map(|l| l.value), Some(8));
    assert_eq!(l.memory.as_ref().map(|l| l.value), Some(16 * GI));
    assert_eq!(l.disk, None);
    let src = &l.instances.unwrap().source;
    assert_eq!((src.quota.as_str(), src.is_override), ("default", false));
}

#[test]
fn override_replaces_only_the_limits_it_sets() {
    let quotas = [
        quota(
            "default",
            "production",
            None,
            limits(Some(2), Some(8), Some("16Gi"), Some("100Gi")),
        ),
        quota(
            "alice",
            "production",
            Some(alice()),
            limits(Some(5), None, None, Some("1Ti")),
        ),
        quota(
            "bob",
            "production",
            Some(Subject::user("bob")),
            limits(Some(0), None, None, None),
        ),
    ];
    let l = effective_limits(&quotas, "production", &alice()).unwrap();
    assert_eq!(
        l.instances.as_ref().map(|l| (l.value, l.source.quota.as_str())),
        Some((5, "alice"))
    );
    assert_eq!(
        l.vcpus.as_ref().map(|l| (l.value, l.source.quota.as_str())),
        Some((8, "default"))
    );
    assert_eq!(l.memory.as_ref().map(|l| l.value), Some(16 * GI));
    assert_eq!(
        l.disk.as_ref().map(|l| (l.value, l.source.is_override)),
        Some((1 << 40, true))
    );
}

#[test]
fn no_quota_or_absent_limits_are_unlimited() {
    let none = effective_limits(&[], "production", &alice()).unwrap();
    assert_eq!(none, EffectiveLimits::unlimited("production", alice()));
    let empty = [quota("default", "production", None, QuotaLimits::default())];
    let l = effective_limits(&empty, "production", &alice()).unwrap();
    let used = Usage {
        instances: u64::MAX,
        vcpus: u64::MAX,
        memory: Bytes(u64::MAX),
        disk: Bytes(u64::MAX),
        ..Default::default()
    };
    let v = check(&l, &used, &req(1000, 1000, 1000));
    assert!(v.fits, "{}", v.message);
}

#[test]
fn group_application_is_checked_against_the_group_quota() {
    let quotas = [
        quota("default", "production", None, limits(Some(1), None, None, None)),
        quota(
            "team-a",
            "production",
            Some(team()),
            limits(Some(3), None, None, None),
        ),
    ];
    let instances = [
        inst("a.example.org", 1, 1, 10, true),
        inst("b.example.org", 1, 1, 10, true),
    ];
    let owner_of = owners(&[("a.example.org", team()), ("b.example.org", team())]);
    let new = app("c", team(), Phase::Pending, "1Gi", &["10Gi"]);
    let v = check_application(&quotas, &instances, std::slice::from_ref(&new), &new, &owner_of).unwrap();
    assert!(v.fits, "{}", v.message);
    // The same request by a user falls under the default, which alice's one VM fills.
    let owner_of = owners(&[("a.example.org", alice())]);
    let mine = app("c", alice(), Phase::Pending, "1Gi", &["10Gi"]);
    let v = check_application(&quotas, &instances, &[], &mine, owner_of).unwrap();
    assert!(!v.fits);
    assert_eq!(
        v.message,
        "user alice would use 2 of 1 instances on cluster production (ClusterQuota default)"
    );
}

#[test]
fn approved_but_not_created_applications_count() {
    let apps = [
        app("one", team(), Phase::Approved, "2Gi", &["10Gi", "5Gi"]),
        app("two", team(), Phase::Creating, "1Gi", &["1Gi"]),
        app("pending", team(), Phase::Pending, "1Gi", &["1Gi"]),
        app("rejected", team(), Phase::Rejected, "1Gi", &["1Gi"]),
        app("failed", team(), Phase::Failed, "1Gi", &["1Gi"]),
    ];
    let u = usage("production", &team(), &[], &apps, |_: &Instance| None);
    assert_eq!((u.instances, u.pending_instances, u.vcpus), (2, 2, 4));
    assert_eq!((u.memory, u.disk), (Bytes(3 * GI), Bytes(16 * GI)));
    // Two approvals cannot together overshoot: the second sees the first.
    let quotas = [quota(
        "team-a",
        "production",
        Some(team()),
        limits(Some(2), None, None, None),
    )];
    let third = app("three", team(), Phase::Pending, "1Gi", &["1Gi"]);
    let v = check_application(&quotas, &[], &apps, &third, |_: &Instance| None).unwrap();
    assert!(!v.fits);
    assert_eq!(
        v.message,
        "group team-a would use 3 of 2 instances on cluster production (ClusterQuota team-a)"
    );
}

#[test]
fn a_created_instance_is_not_counted_twice() {
    let mut a = app("web", alice(), Phase::Creating, "4Gi", &["20Gi"]);
    a.status.as_mut().unwrap().instance_name = Some("web.example.org".into());
    let instances = [inst("web.example.org", 2, 4, 20, true)];
    let u = usage(
        "production",
        &alice(),
        &instances,
        std::slice::from_ref(&a),
        owners(&[("web.example.org", alice())]),
    );
    assert_eq!(
        (u.instances, u.pending_instances, u.memory),
        (1, 0, Bytes(4 * GI))
    );
    // Not yet tagged: the instance still counts once, for the application's owner.
    let u = usage(
        "production",
        &alice(),
        &instances,
        std::slice::from_ref(&a),
        |_: &Instance| None,
    );
    assert_eq!((u.instances, u.pending_instances, u.disk), (1, 0, Bytes(20 * GI)));
    // Re-checking an approved application does not count its own request twice.
    let quotas = [quota(
        "q",
        "production",
        Some(alice()),
        limits(Some(1), None, None, None),
    )];
    let approved = app("db", alice(), Phase::Approved, "1Gi", &["1Gi"]);
    let v = check_application(
        &quotas,
        &[],
        std::slice::from_ref(&approved),
        &approved,
        |_: &Instance| None,
    )
    .unwrap();
    assert!(v.fits, "{}", v.message);
}

#[test]
fn stopped_vms_count() {
    let instances = [
        inst("up.example.org", 2, 4, 10, true),
        inst("down.example.org", 4, 8, 20, false),
    ];
    let owner_of = owners(&[("up.example.org", alice()), ("down.example.org", alice())]);
    let u = usage("production", &alice(), &instances, &[], owner_of);
    assert_eq!(
        (u.instances, u.vcpus, u.memory, u.disk),
        (2, 6, Bytes(12 * GI), Bytes(30 * GI))
    );
}

#[test]
fn exactly_at_the_limit_fits_one_more_does_not() {
    let quotas = [quota(
        "default",
        "production",
        None,
        limits(Some(3), Some(8), Some("16Gi"), Some("100Gi")),
    )];
    let l = effective_limits(&quotas, "production", &alice()).unwrap();
    let used = Usage {
        instances: 2,
        vcpus: 6,
        memory: Bytes(12 * GI),
        disk: Bytes(90 * GI),
        ..Default::default()
    };
    let v = check(&l, &used, &req(2, 4, 10));
    assert!(v.fits, "{}", v.message);
    assert_eq!(
        v.message,
        "fits the quota of user alice on cluster production; left after it: instances: 0, vCPUs: 0, memory: 0, disk: 0"
    );
    let v = check(
        &l,
        &used,
        &Request {
            memory: Bytes(4 * GI + 1),
            ..req(2, 0, 10)
        },
    );
    assert!(!v.fits);
    assert_eq!(v.exceeded.len(), 1);
    assert_eq!(v.exceeded[0].limit, LimitKind::Memory);
    let used = Usage { instances: 3, ..used };
    let v = check(&l, &used, &req(3, 5, 11));
    let broken: Vec<_> = v.exceeded.iter().map(|e| e.limit).collect();
    assert_eq!(broken, LimitKind::ALL);
    assert!(
        v.message
            .contains("user alice would use 17Gi of 16Gi memory on cluster production"),
        "{}",
        v.message
    );
}

#[test]
fn an_invalid_limit_fails_closed() {
    let quotas = [
        quota(
            "default",
            "production",
            None,
            limits(None, None, Some("lots"), None),
        ),
        quota(
            "alice",
            "production",
            Some(alice()),
            limits(None, None, Some("8Gi"), None),
        ),
    ];
    // bob has no override: the broken default governs him, and is an error, not unlimited.
    let err = effective_limits(&quotas, "production", &Subject::user("bob")).unwrap_err();
    assert_eq!(
        err,
        QuotaError::InvalidLimit {
            quota: "default".into(),
            limit: LimitKind::Memory,
            source: QuantityError::Syntax("lots".into()),
        }
    );
    let bob_app = app("x", Subject::user("bob"), Phase::Pending, "1Gi", &["1Gi"]);
    assert!(check_application(&quotas, &[], &[], &bob_app, |_: &Instance| None).is_err());
    // alice's override sets memory, so the broken default is never consulted for it.
    let l = effective_limits(&quotas, "production", &alice()).unwrap();
    assert_eq!(l.memory.map(|l| l.value), Some(8 * GI));
    // An approved application whose size cannot be read makes memory and disk refuse.
    let mut broken = app("broken", alice(), Phase::Approved, "1Gi", &["1Gi"]);
    broken.spec.memory = "1.5".into();
    let u = usage(
        "production",
        &alice(),
        &[],
        std::slice::from_ref(&broken),
        |_: &Instance| None,
    );
    assert_eq!(
        (u.instances, u.vcpus, u.uncountable.clone()),
        (1, 2, vec!["default/broken".to_string()])
    );
    let l = effective_limits(&quotas[1..], "production", &alice()).unwrap();
    let v = check(&l, &u, &req(1, 1, 1));
    assert!(!v.fits);
    assert!(
        v.exceeded[0].uncountable && v.message.contains("default/broken"),
        "{}",
        v.message
    );
}

#[test]
fn several_defaults_resolve_to_the_most_restrictive_whatever_the_order() {
    let mut quotas = vec![
        quota(
            "b-default",
            "production",
            None,
            limits(Some(5), Some(4), None, Some("1Ti")),
        ),
        quota(
            "a-default",
            "production",
            None,
            limits(Some(10), Some(4), Some("8Gi"), None),
        ),
        quota(
            "c-default",
            "production",
            None,
            limits(Some(3), Some(16), None, Some("2Ti")),
        ),
        quota(
            "x-alice",
            "production",
            Some(alice()),
            limits(None, Some(64), None, None),
        ),
        quota(
            "y-alice",
            "production",
            Some(alice()),
            limits(None, Some(32), None, None),
        ),
    ];
    let first = effective_limits(&quotas, "production", &alice()).unwrap();
    for _ in 0..quotas.len() {
        quotas.rotate_left(1);
        assert_eq!(effective_limits(&quotas, "production", &alice()).unwrap(), first);
        quotas.reverse();
        assert_eq!(effective_limits(&quotas, "production", &alice()).unwrap(), first);
    }
    let pick = |l: &Option<Limit>| l.as_ref().map(|l| (l.value, l.source.quota.clone()));
    assert_eq!(pick(&first.instances), Some((3, "c-default".into())));
    assert_eq!(pick(&first.vcpus), Some((32, "y-alice".into())));
    assert_eq!(pick(&first.memory), Some((8 * GI, "a-default".into())));
    assert_eq!(pick(&first.disk), Some((1 << 40, "b-default".into())));
    // A tie names the first quota by name.
    let bob = effective_limits(&quotas, "production", &Subject::user("bob")).unwrap();
    assert_eq!(pick(&bob.vcpus), Some((4, "a-default".into())));
}

#[test]
fn status_lists_the_governed_subjects_sorted() {
    let instances = [
        inst("a.example.org", 1, 1, 1, true),
        inst("b.example.org", 1, 1, 1, false),
        inst("orphan.example.org", 1, 1, 1, true),
    ];
    let owner_of = owners(&[("a.example.org", Subject::user("zed")), ("b.example.org", team())]);
    let apps = [app("new", alice(), Phase::Approved, "2Gi", &["3Gi"])];
    let default = quota("default", "production", None, QuotaLimits::default());
    let s = status_usage(&default, &instances, &apps, &owner_of);
    let names: Vec<_> = s.usage.iter().map(|u| u.subject.to_string()).collect();
    assert_eq!(names, ["user alice", "user zed", "group team-a"]);
    assert_eq!(
        (s.usage[0].memory.as_str(), s.usage[0].disk.as_str()),
        ("2Gi", "3Gi")
    );
    assert_eq!(s.usage[0].pending_instances, 1);
    assert_eq!(s.omitted, 0);
    let bob = quota(
        "bob",
        "production",
        Some(Subject::user("bob")),
        QuotaLimits::default(),
    );
    let s = status_usage(&bob, &instances, &apps, &owner_of);
    assert_eq!(s.usage.len(), 1);
    assert_eq!((s.usage[0].instances, s.usage[0].memory.as_str()), (0, "0"));
}

#[test]
fn status_is_bounded() {
    let instances: Vec<Instance> = (0..MAX_STATUS_SUBJECTS + 5)
        .map(|i| inst(&format!("vm{i}.example.org"), 1, 1, 1, true))
        .collect();
    let owner_of = |i: &Instance| Some(Subject::user(i.name.clone()));
    let default = quota("default", "production", None, QuotaLimits::default());
    let s = status_usage(&default, &instances, &[], owner_of);
    assert_eq!((s.usage.len(), s.omitted), (MAX_STATUS_SUBJECTS, 5));
}

/// alice's application to adopt `instance` (approved at `uuid` when given).
fn adoption(name: &str, instance: &str, phase: Phase, uuid: Option<&str>) -> InstanceApplication {
    let mut a = app(name, alice(), phase, "", &[]);
    a.spec.mode = crate::api::application::Mode::Adopt;
    a.spec.instance = Some(instance.into());
    a.spec.hostname.clear();
    a.spec.vcpus = 0;
    if let Some(s) = a.status.as_mut() {
        s.instance_name = Some(instance.into());
        s.instance_uuid = uuid.map(str::to_string);
    }
    a
}

fn with_uuid(mut i: Instance, uuid: &str) -> Instance {
    i.uuid = uuid.into();
    i
}

#[test]
fn an_approved_adoption_holds_its_vm_by_uuid_until_tagged_and_never_twice() {
    let vm = with_uuid(inst("old.example.org", 2, 4, 20, false), "u-old");
    let nobody = |_: &Instance| None;
    // Filed, not approved: the VM counts for no one yet.
    let filed = adoption("a1", "old.example.org", Phase::Pending, None);
    let u = usage(
        "production",
        &alice(),
        std::slice::from_ref(&vm),
        &[filed],
        nobody,
    );
    assert_eq!(u, Usage::default());
    // Approved (and while its tag job runs): the VM is alice's, counted once, not as a
    // VM still to be created.
    for phase in [Phase::Approved, Phase::Creating, Phase::Created] {
        let approved = adoption("a1", "old.example.org", phase, Some("u-old"));
        let u = usage(
            "production",
            &alice(),
            std::slice::from_ref(&vm),
            &[approved],
            nobody,
        );
        assert_eq!(
            (u.instances, u.vcpus, u.pending_instances),
            (1, 2, 0),
            "{phase:?}"
        );
        assert_eq!((u.memory.0, u.disk.0), (4 * GI, 20 * GI));
    }
    // Tagged: counted through its tag, once.
    let tagged = adoption("a1", "old.example.org", Phase::Created, Some("u-old"));
    let u = usage(
        "production",
        &alice(),
        std::slice::from_ref(&vm),
        &[tagged],
        owners(&[("old.example.org", alice())]),
    );
    assert_eq!(u.instances, 1);
    // The name taken by another VM since the approval: that VM is not alice's, and the
    // approved one, gone, holds nothing.
    let stranger = with_uuid(inst("old.example.org", 8, 32, 100, true), "u-new");
    let approved = adoption("a1", "old.example.org", Phase::Approved, Some("u-old"));
    let u = usage("production", &alice(), &[stranger], &[approved], nobody);
    assert_eq!(u, Usage::default());
    // A failed adoption holds nothing.
    let failed = adoption("a1", "old.example.org", Phase::Failed, Some("u-old"));
    assert_eq!(
        usage("production", &alice(), &[vm], &[failed], nobody),
        Usage::default()
    );
}

#[test]
fn an_adoption_is_checked_with_what_its_vm_holds() {
    let quotas = [quota(
        "default",
        "production",
        None,
        limits(Some(2), None, Some("6Gi"), None),
    )];
    let mine = inst("mine.example.org", 1, 2, 10, true);
    let old = with_uuid(inst("old.example.org", 2, 4, 20, false), "u-old");
    let big = with_uuid(inst("big.example.org", 2, 8, 20, false), "u-big");
    let instances = [mine, old, big];
    let owner_of = owners(&[("mine.example.org", alice())]);
    let fits = adoption("a1", "old.example.org", Phase::Pending, None);
    let v = check_application(&quotas, &instances, &[], &fits, &owner_of).unwrap();
    assert!(v.fits, "{}", v.message);
    let too_big = adoption("a2", "big.example.org", Phase::Pending, None);
    let v = check_application(&quotas, &instances, &[], &too_big, &owner_of).unwrap();
    assert!(!v.fits);
    assert!(
        v.message.contains("would use 10Gi of 6Gi memory"),
        "{}",
        v.message
    );
    let missing = adoption("a3", "gone.example.org", Phase::Pending, None);
    assert_eq!(
        check_application(&quotas, &instances, &[], &missing, &owner_of).unwrap_err(),
        QuotaError::NoInstance {
            application: "default/a3".into(),
            instance: "gone.example.org".into()
        }
    );
}
