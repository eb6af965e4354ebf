use super::*;
use crate::api::application::{DiskRequest, InstanceApplicationSpec, InstanceApplicationStatus, Phase};
use crate::api::quota::{ClusterQuotaSpec, QuotaLimits};
use crate::inventory::Instance;

const CLUSTER: &str = "prod";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn quota(name: &str, subject: Option<Subject>, limits: QuotaLimits) -> Arc<ClusterQuota> {
    let mut q = ClusterQuota::new(
        name,
        ClusterQuotaSpec {
            cluster: CLUSTER.into(),
            subject,
            limits,
        },
    );
    q.metadata.generation = Some(1);
    q.metadata.resource_version = Some("10".into());
    Arc::new(q)
}

fn limits(instances: u32, memory: &str) -> QuotaLimits {
    QuotaLimits {
        instances: Some(instances),
        memory: Some(memory.into()),
        ..Default::default()
    }
}

fn vm(name: &str, owner_tag: &str) -> Instance {
    Instance {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        vcpus: 1,
        memory_mib: 128,
        disk_mib: 1024,
        tags: vec![format!("GANETI_WEB_MANAGER:owner:{owner_tag}")],
        ..Default::default()
    }
}

fn inventory(instances: Vec<Instance>, reachable: bool) -> Arc<ClusterInventory> {
    Arc::new(ClusterInventory {
        cluster: CLUSTER.into(),
        instances,
        tag_prefix: "GANETI_WEB_MANAGER".into(),
        reachable,
        ..Default::default()
    })
}

fn approved(name: &str, owner: Subject) -> Arc<InstanceApplication> {
    let mut a = InstanceApplication::new(
        name,
        InstanceApplicationSpec {
            mode: crate::api::application::Mode::Create,
            instance: None,
            cluster: Some(CLUSTER.into()),
            hostname: format!("{name}.example.org"),
            vcpus: 2,
            memory: "256Mi".into(),
            disks: vec![DiskRequest { size: "2Gi".into() }],
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
    a.metadata.namespace = Some("apps".into());
    a.status = Some(InstanceApplicationStatus {
        phase: Phase::Approved,
        ..Default::default()
    });
    Arc::new(a)
}

struct World {
    quotas: Vec<Arc<ClusterQuota>>,
    clusters: BTreeSet<String>,
    inventories: Vec<Arc<ClusterInventory>>,
    applications: Vec<Arc<InstanceApplication>>,
}

impl World {
    fn new(quotas: Vec<Arc<ClusterQuota>>, instances: Vec<Instance>) -> Self {
        Self {
            quotas,
            clusters: BTreeSet::from([CLUSTER.to_string()]),
            inventories: vec![inventory(instances, true)],
            applications: vec![],
        }
    }

    fn plan(&self, now: i64) -> Plan {
        plan(&Input {
            quotas: &self.quotas,
            clusters: &self.clusters,
            inventories: &self.inventories,
            applications: &self.applications,
            now: t(now),
        })
    }

    /// Plans, then stores what was planned (as the API server would).
    fn settle(&mut self, now: i64) -> Plan {
        let p = self.plan(now);
        for w in &p.writes {
            let q = self.quotas.iter_mut().find(|q| q.name_any() == w.quota).unwrap();
            let mut stored = (**q).clone();
            stored.status = Some(w.status.clone());
            *q = Arc::new(stored);
        }
        p
    }

    fn status(&self, name: &str) -> &ClusterQuotaStatus {
        let q = self.quotas.iter().find(|q| q.name_any() == name).unwrap();
        q.status.as_ref().unwrap()
    }
}

fn condition<'a>(s: &'a ClusterQuotaStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = conditions::get(&s.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
    (&c.status, &c.reason, &c.message)
}

#[test]
fn an_override_shows_its_subjects_vms_and_pending_approvals_then_rests() {
    let team = Subject::group("team");
    let mut w = World::new(
        vec![quota("team", Some(team.clone()), limits(3, "1Gi"))],
        vec![vm("a.example.org", "G:team"), vm("b.example.org", "U:bob")],
    );
    w.applications.push(approved("new", team.clone()));
    let p = w.settle(100);
    assert_eq!(p.writes.len(), 1);
    let s = w.status("team");
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.usage.len(), 1);
    let u = &s.usage[0];
    assert_eq!((u.instances, u.vcpus, u.pending_instances), (2, 3, 1));
    assert_eq!((u.memory.as_str(), u.disk.as_str()), ("384Mi", "3Gi"));
    assert_eq!(
        s.used.as_deref(),
        Some("instances 2, vCPUs 3, memory 384Mi, disk 3Gi (1 pending)")
    );
    assert_eq!(s.limit.as_deref(), Some("instances 3, memory 1Gi"));
    assert_eq!(condition(s, "Ready").0, "True");
    assert_eq!(condition(s, "ClusterFound").0, "True");

    // Steady state: the same world plans no write, whatever the time.
    assert!(w.settle(200).writes.is_empty());

    // The series: four resources, each with the limit in force (vCPUs unlimited).
    let used: Vec<(&str, u64, Option<u64>)> =
        p.series.iter().map(|s| (s.resource, s.used, s.limit)).collect();
    assert_eq!(
        used,
        [
            ("instances", 2, Some(3)),
            ("vcpus", 3, None),
            ("memory", 384 << 20, Some(1 << 30)),
            ("disk", 3 << 30, None),
        ]
    );
    assert!(
        p.series
            .iter()
            .all(|s| s.subject_kind == "Group" && s.subject == "team" && s.quota == "team")
    );
}

#[test]
fn usage_follows_creation_and_removal_and_keeps_the_transition_time() {
    let team = Subject::group("team");
    let mut w = World::new(vec![quota("team", Some(team.clone()), limits(3, "1Gi"))], vec![]);
    w.applications.push(approved("new", team.clone()));
    w.settle(100);
    assert_eq!(w.status("team").usage[0].pending_instances, 1);
    // Created: the VM is in the inventory, counted once, no longer pending.
    w.inventories = vec![inventory(vec![vm("new.example.org", "G:team")], true)];
    assert_eq!(w.settle(200).writes.len(), 1);
    let u = &w.status("team").usage[0];
    assert_eq!((u.instances, u.pending_instances), (1, 0));
    // Removed in Ganeti (the application stays, its phase no longer counts).
    let mut created = (*w.applications[0]).clone();
    created.status.as_mut().unwrap().phase = Phase::Created;
    w.applications = vec![Arc::new(created)];
    w.inventories = vec![inventory(vec![], true)];
    assert_eq!(w.settle(300).writes.len(), 1);
    let s = w.status("team");
    assert_eq!(s.usage[0].instances, 0);
    assert_eq!(s.used.as_deref(), Some("instances 0, vCPUs 0, memory 0, disk 0"));
    let ready = conditions::get(&s.conditions, "Ready").unwrap();
    assert_eq!(ready.last_transition_time.0, t(100), "Ready never flipped");
}

#[test]
fn a_missing_or_unread_cluster_is_not_ready_and_says_why() {
    let mut w = World::new(
        vec![quota("team", Some(Subject::group("team")), limits(3, "1Gi"))],
        vec![],
    );
    w.clusters.clear();
    w.inventories.clear();
    let p = w.settle(100);
    assert!(p.series.is_empty());
    let s = w.status("team");
    assert_eq!(condition(s, "ClusterFound").0, "False");
    assert_eq!(condition(s, "Ready").0, "False");
    assert_eq!(condition(s, "Ready").1, reason::NOT_FOUND);
    assert!(s.usage.is_empty() && s.used.is_none());
    assert_eq!(
        s.limit.as_deref(),
        Some("instances 3, memory 1Gi"),
        "the limits are known"
    );

    w.clusters.insert(CLUSTER.into());
    w.settle(200);
    let s = w.status("team");
    assert_eq!(condition(s, "ClusterFound").0, "True");
    let (status, why, message) = condition(s, "Ready");
    assert_eq!((status, why), ("False", reason::NOT_READ));
    assert!(
        message.contains("has not read GanetiCluster \"prod\""),
        "{message}"
    );

    w.inventories = vec![inventory(vec![vm("a", "G:team")], false)];
    w.settle(300);
    let s = w.status("team");
    assert_eq!(condition(s, "Ready").1, reason::UNREACHABLE);
    assert_eq!(s.usage[0].instances, 1, "the last read's figures stay");
}

#[test]
fn an_invalid_limit_is_reported_not_taken_for_unlimited() {
    let mut w = World::new(
        vec![quota("bad", None, limits(1, "lots"))],
        vec![vm("a", "U:ann")],
    );
    w.settle(100);
    let s = w.status("bad");
    let (status, why, message) = condition(s, "Ready");
    assert_eq!((status, why), ("False", reason::INVALID_LIMIT));
    assert!(message.contains("memory limit is invalid"), "{message}");
    assert_eq!(s.limit, None);
    assert_eq!(s.usage.len(), 1, "usage is still shown");
}

#[test]
fn a_default_lists_every_owner_with_the_limit_each_one_has() {
    let mut w = World::new(
        vec![
            quota("default", None, limits(2, "1Gi")),
            quota(
                "ann",
                Some(Subject::user("ann")),
                QuotaLimits {
                    instances: Some(5),
                    ..Default::default()
                },
            ),
            quota("other-cluster", None, limits(1, "1Mi")),
        ],
        vec![vm("a", "U:ann"), vm("b", "U:bob"), vm("c", "U:bob")],
    );
    // Another cluster's quota is no default of this one.
    w.quotas[2] = {
        let mut q = (*w.quotas[2]).clone();
        q.spec.cluster = "lab".into();
        Arc::new(q)
    };
    let p = w.settle(100);
    let s = w.status("default");
    assert_eq!(s.limit.as_deref(), Some("each: instances 2, memory 1Gi"));
    assert_eq!(
        s.used.as_deref(),
        Some("2 subjects: instances 3, vCPUs 3, memory 384Mi, disk 3Gi")
    );
    assert_eq!(
        w.status("ann").limit.as_deref(),
        Some("instances 5, memory 1Gi"),
        "memory from the default"
    );
    let limit_of = |quota: &str, subject: &str| {
        p.series
            .iter()
            .find(|s| s.quota == quota && s.subject == subject && s.resource == "instances")
            .map(|s| (s.used, s.limit))
    };
    assert_eq!(limit_of("default", "bob"), Some((2, Some(2))));
    assert_eq!(
        limit_of("default", "ann"),
        Some((1, Some(5))),
        "ann's override applies to ann"
    );
    assert_eq!(limit_of("ann", "ann"), Some((1, Some(5))));
    assert_eq!(condition(w.status("other-cluster"), "Ready").1, reason::NOT_FOUND);
}
