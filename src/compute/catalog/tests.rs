use super::*;
use crate::inventory::Instance;

fn snapshot(vms: &[(&str, &str)]) -> Arc<Snapshot> {
    let inventory = ClusterInventory {
        cluster: "lab".into(),
        tag_prefix: "p".into(),
        reachable: true,
        instances: vms
            .iter()
            .map(|(name, status)| Instance {
                name: name.to_string(),
                uuid: format!("u-{name}"),
                status: status.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Arc::new(Snapshot::build(
        Vec::new(),
        Vec::new(),
        Vec::new(),
        vec![Arc::new(inventory)],
    ))
}

impl Catalog {
    fn update_with(&self, snapshot: Arc<Snapshot>) -> usize {
        self.update(snapshot, &NO_APPLICATIONS)
    }
}

static NO_APPLICATIONS: std::sync::LazyLock<Arc<Applications>> = std::sync::LazyLock::new(Default::default);

#[test]
fn the_application_that_made_a_vm_is_named_and_follows_changes() {
    let catalog = Catalog::default();
    let none = Arc::new(Applications::new());
    catalog.update(snapshot(&[("a", "running")]), &none);
    let (_, a) = catalog.instances.get("lab.a").unwrap();
    assert_eq!(a.render().status.application, None);
    let made = Arc::new(Applications::from([(
        "u-a".to_string(),
        super::super::objects::ApplicationRef {
            namespace: "team".into(),
            name: "app-1".into(),
        },
    )]));
    // The same inventory, new applications: the VM changes.
    let same = catalog.snapshot().unwrap();
    assert_eq!(catalog.update(same, &made), 1);
    let (_, a) = catalog.instances.get("lab.a").unwrap();
    assert_eq!(a.render().status.application.unwrap().name, "app-1");
}

#[test]
fn only_real_changes_get_a_new_version_and_an_event() {
    let catalog = Catalog::default();
    assert_eq!(
        catalog.update_with(snapshot(&[("a", "running"), ("b", "running")])),
        2
    );
    let (rv, _) = catalog.instances.list();
    let start = catalog.instances.watch(Some(rv)).unwrap();
    let mut live = start.live;
    assert!(start.backlog.is_empty());
    // b stops, a is unchanged, c appears, and then a goes away.
    assert_eq!(
        catalog.update_with(snapshot(&[
            ("a", "running"),
            ("b", "ADMIN_down"),
            ("c", "running")
        ])),
        2
    );
    assert_eq!(
        catalog.update_with(snapshot(&[("b", "ADMIN_down"), ("c", "running")])),
        1
    );
    let kinds: Vec<(EventType, String)> = std::iter::from_fn(|| live.try_recv().ok())
        .map(|e| (e.kind, e.object.instance_name().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::Modified, "b".to_string()),
            (EventType::Added, "c".to_string()),
            (EventType::Deleted, "a".to_string())
        ]
    );
    let (_, b) = catalog.instances.get("lab.b").unwrap();
    assert_eq!(b.resource_version(), 3);
    // A watch resuming from the first list gets the same three from history.
    let resumed = catalog.instances.watch(Some(rv)).unwrap();
    assert_eq!(resumed.backlog.len(), 3);
    assert!(catalog.instances.get("lab.a").is_none());
}

#[test]
fn a_version_older_than_the_history_is_expired() {
    let catalog = Catalog::default();
    for n in 0..(HISTORY + 10) {
        catalog.update_with(snapshot(&[(
            "a",
            if n % 2 == 0 { "running" } else { "ADMIN_down" },
        )]));
    }
    assert!(matches!(catalog.instances.watch(Some(1)), Err(Expired { .. })));
    let now = catalog.instances.revision();
    assert!(catalog.instances.watch(Some(now - 5)).unwrap().backlog.len() == 5);
}

#[test]
fn a_cluster_that_is_gone_deletes_its_objects() {
    let catalog = Catalog::default();
    catalog.update_with(snapshot(&[("a", "running")]));
    let mut live = catalog.instances.watch(None).unwrap().live;
    catalog.update_with(Arc::new(Snapshot::build(
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    )));
    let e = live.try_recv().unwrap();
    assert_eq!(e.kind, EventType::Deleted);
    assert!(catalog.instances.list().1.is_empty());
}

#[test]
fn events_are_decided_as_on_the_whole_snapshot_with_only_their_vms() {
    use crate::api::role::VmRight;
    use crate::api::{RoleBinding, RoleBindingSpec, Subject};
    use crate::authz::{ADMINISTRATOR, Principal, Request, USER, preconfigured_roles};
    let roles: Vec<_> = preconfigured_roles().into_iter().map(Arc::new).collect();
    let bind = |name: &str, role: &str, group: &str| {
        Arc::new(RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: vec![Subject::group(group)],
                clusters: vec![],
                instances: vec![],
            },
        ))
    };
    // Bindings narrowed to a cluster or to VMs: decided on ids the rules name.
    let narrowed = |name: &str, user: &str, clusters: &[&str], vms: &[&str]| {
        Arc::new(RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: ADMINISTRATOR.into(),
                subjects: vec![Subject::user(user)],
                clusters: clusters.iter().map(|c| c.to_string()).collect(),
                instances: vms
                    .iter()
                    .map(|v| crate::api::common::InstanceRef {
                        cluster: "lab".into(),
                        name: v.to_string(),
                    })
                    .collect(),
            },
        ))
    };
    let bindings = vec![
        bind("admins", ADMINISTRATOR, "admins"),
        bind("users", USER, "users"),
        narrowed("lab-admin", "erin", &["lab"], &[]),
        narrowed("other-admin", "frank", &["other"], &[]),
        narrowed("a-and-b", "dave", &[], &["a", "b"]),
        narrowed("d", "gina", &[], &["d"]),
    ];
    let world = |vms: &[(&str, &str, &str)]| {
        let inventory = ClusterInventory {
            cluster: "lab".into(),
            tag_prefix: "p".into(),
            reachable: true,
            instances: vms
                .iter()
                .map(|(name, status, owner)| Instance {
                    name: name.to_string(),
                    status: status.to_string(),
                    tags: vec![format!("p:owner:U:{owner}")],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Arc::new(Snapshot::build(
            roles.clone(),
            bindings.clone(),
            Vec::new(),
            vec![Arc::new(inventory)],
        ))
    };
    let before = world(&[
        ("a", "running", "alice"),
        ("b", "running", "bob"),
        ("c", "running", "carol"),
    ]);
    let after = world(&[
        ("a", "ADMIN_down", "alice"),
        ("c", "running", "carol"),
        ("d", "running", "bob"),
    ]);
    let catalog = Catalog::default();
    // The same applications both times: new ones would make every VM compared.
    let applications = Arc::default();
    catalog.update(before.clone(), &applications);
    let mut live = catalog.instances.watch(None).unwrap().live;
    assert_eq!(catalog.update(after.clone(), &applications), 3);
    let events: Vec<_> = std::iter::from_fn(|| live.try_recv().ok()).collect();
    assert_eq!(events.len(), 3);
    let users = ["users".to_string()];
    let admins = ["admins".to_string()];
    let principals = [
        Principal::new("alice", &users),
        Principal::new("bob", &users),
        Principal::new("carol", &users),
        Principal::new("root", &admins),
        Principal::new("nobody", &[]),
        Principal::new("dave", &[]),
        Principal::new("erin", &[]),
        Principal::new("frank", &[]),
        Principal::new("gina", &[]),
    ];
    for e in &events {
        let whole = if e.kind == EventType::Deleted {
            &before
        } else {
            &after
        };
        let name = e.object.instance_name();
        // Only this update's VMs: a (changed) and d (added), or b (gone).
        let kept: Vec<&str> = e.rules.vms().names().collect();
        assert_eq!(
            kept,
            if e.kind == EventType::Deleted {
                vec!["b"]
            } else {
                vec!["a", "d"]
            },
            "{name}"
        );
        for p in &principals {
            let request = Request::Vm {
                cluster: "lab",
                instance: name,
                right: VmRight::View,
            };
            assert_eq!(
                e.rules.allows(p, &request),
                whole.index.decide(p, &request).allowed,
                "{} on {name}",
                p.user
            );
        }
    }
    // The owners and the administrator see theirs, and no one else does.
    let sees = |e: &Event<InstanceRecord>, user: &str, groups: &[String]| {
        let request = Request::Vm {
            cluster: "lab",
            instance: e.object.instance_name(),
            right: VmRight::View,
        };
        e.rules.allows(&Principal::new(user, groups), &request)
    };
    assert!(sees(&events[0], "alice", &users) && !sees(&events[0], "bob", &users));
    assert!(sees(&events[2], "bob", &users) && !sees(&events[2], "alice", &users));
    assert!(events.iter().all(|e| sees(e, "root", &admins)));
    assert!(
        events
            .iter()
            .all(|e| sees(e, "erin", &[]) && !sees(e, "frank", &[]))
    );
    assert!(sees(&events[0], "dave", &[]) && sees(&events[1], "gina", &[]) && sees(&events[2], "dave", &[]));
    // The rules are compiled once for every event of the same rules.
    assert!(Arc::ptr_eq(events[0].rules.rules(), events[2].rules.rules()));
}
