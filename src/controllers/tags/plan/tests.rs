use super::*;
use crate::api::binding::RoleBindingSpec;
use crate::api::common::{InstanceRef, Subject};
use crate::api::role::{Permission, RoleSpec, Scope, ScopeKind, VmRight, VmRights};

const P: &str = tags::DEFAULT_PREFIX;

fn power_role() -> RoleSpec {
    let mut vms = VmRights::default();
    for r in [
        VmRight::View,
        VmRight::Start,
        VmRight::Shutdown,
        VmRight::Reboot,
        VmRight::Console,
    ] {
        vms.set(r, Some(Permission::Allowed));
    }
    RoleSpec {
        description: None,
        vms: Some(vms),
        clusters: None,
        system: None,
        scope: Scope {
            kind: ScopeKind::All,
            ..Scope::default()
        },
    }
}

fn on(subject: Subject, instance: &str) -> RoleBindingSpec {
    RoleBindingSpec {
        role_ref: "power".into(),
        subjects: vec![subject],
        clusters: vec![],
        instances: vec![InstanceRef {
            cluster: "c".into(),
            name: instance.into(),
        }],
    }
}

/// A VM whose UUID is `uuid-<name>`.
fn vm(name: &str, tags: &[&str]) -> Instance {
    vm_uuid(name, &format!("uuid-{name}"), tags)
}

fn vm_uuid(name: &str, uuid: &str, tags: &[&str]) -> Instance {
    Instance {
        name: name.into(),
        uuid: uuid.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Instance::default()
    }
}

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

struct World {
    bindings: Vec<(&'static str, RoleBindingSpec)>,
    instances: Vec<Instance>,
    ledger: Ledger,
    overlay: Overlay,
    held: BTreeSet<String>,
    /// `writeIds` with this map.
    ids: Option<GwmIds>,
}

impl World {
    fn new(instances: Vec<Instance>) -> Self {
        Self {
            bindings: vec![],
            instances,
            ledger: Ledger::new(),
            overlay: Overlay::new(),
            held: BTreeSet::new(),
            ids: None,
        }
    }
    fn plan(&self) -> Plan {
        let mut b = AuthzIndex::builder().role("power", &power_role());
        let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, spec) in &self.bindings {
            b = b.binding(name, spec);
            listed
                .entry(name.to_string())
                .or_default()
                .extend(spec.instances.iter().map(|i| i.name.clone()));
        }
        for i in &self.instances {
            b = b.instance("c", &i.name, &i.tags, P);
        }
        let index = b.build();
        plan(&Input {
            cluster: "c",
            prefix: P,
            write_ids: self.ids.as_ref(),
            index: &index,
            instances: &self.instances,
            listed: &listed,
            ledger: &self.ledger,
            overlay: &self.overlay,
            held: &self.held,
        })
    }
    /// Applies a plan as Ganeti would, all writes succeeding.
    fn apply(&mut self, plan: &Plan) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = plan
            .writes
            .iter()
            .map(|w| Outcome {
                uuid: w.uuid.clone(),
                add: Ok(()),
                remove: Ok(()),
            })
            .collect();
        for w in &plan.writes {
            let i = self.instances.iter_mut().find(|i| i.uuid == w.uuid).unwrap();
            assert_eq!(i.name, w.instance, "written under its current name");
            i.tags.extend(w.add.iter().cloned());
            i.tags.retain(|t| !w.remove.contains(t));
        }
        self.ledger = ledger_after(plan, &outcomes);
        outcomes
    }
}

#[test]
fn a_binding_adds_its_tag_once_and_its_removal_removes_exactly_it() {
    let mut w = World::new(vec![vm("vm1", &["ganetimgr:user:alice", "webserver"])]);
    w.bindings.push(("bob-power", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:bob"]);
    assert_eq!(
        (p.writes[0].uuid.as_str(), p.writes[0].instance.as_str()),
        ("uuid-vm1", "vm1")
    );
    assert!(p.writes[0].remove.is_empty());
    assert!(
        p.writes[0].add_reason.contains("RoleBinding bob-power"),
        "{}",
        p.writes[0].add_reason
    );
    assert_eq!(
        p.ledger_before["uuid-vm1"].len(),
        1,
        "recorded, under the UUID, before writing"
    );
    let r = &p.report.bindings["bob-power"];
    assert_eq!(r.instances, BTreeSet::from(["vm1".to_string()]));
    assert_eq!(r.tags.len(), 1);
    w.apply(&p);

    assert_eq!(w.plan().writes, vec![], "second pass: nothing to write");

    // Someone adds a tag by hand; the binding goes away.
    w.instances[0].tags.push("GANETI_WEB_MANAGER:tags:U:carol".into());
    w.bindings.clear();
    let p = w.plan();
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:bob"]);
    assert!(p.writes[0].add.is_empty());
    w.apply(&p);
    assert_eq!(
        w.instances[0].tags,
        vec![
            "ganetimgr:user:alice",
            "webserver",
            "GANETI_WEB_MANAGER:tags:U:carol"
        ]
    );
    assert!(w.ledger.is_empty());
    assert_eq!(w.plan().writes, vec![]);
}

#[test]
fn a_hand_written_tag_equal_to_a_desired_one_is_never_ours() {
    let mut w = World::new(vec![vm("vm1", &["GANETI_WEB_MANAGER:power:U:bob"])]);
    w.bindings.push(("bob-power", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes, vec![]);
    assert!(p.ledger_before.is_empty());
    w.bindings.clear();
    assert_eq!(w.plan().writes, vec![], "not ours: stays");
}

#[test]
fn one_add_and_one_remove_call_per_instance() {
    let mut w = World::new(vec![vm("vm1", &[]), vm("vm2", &[])]);
    for (n, s) in [("a", "u1"), ("b", "u2"), ("c", "u3")] {
        w.bindings.push((n, on(Subject::user(s), "vm1")));
    }
    w.bindings.push(("g", on(Subject::group("ops"), "vm2")));
    let p = w.plan();
    assert_eq!(p.writes.len(), 2);
    assert_eq!(p.writes[0].add.len(), 3);
    assert_eq!(p.writes[1].add, vec!["GANETI_WEB_MANAGER:power:G:ops"]);
    w.apply(&p);
    w.bindings.retain(|(n, _)| *n == "a");
    w.bindings.push(("d", on(Subject::user("u4"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes.len(), 2);
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:u4"]);
    assert_eq!(
        p.writes[0].remove,
        vec!["GANETI_WEB_MANAGER:power:U:u2", "GANETI_WEB_MANAGER:power:U:u3"]
    );
    assert_eq!(p.writes[1].remove, vec!["GANETI_WEB_MANAGER:power:G:ops"]);
}

#[test]
fn only_grant_tags_under_the_prefix_are_ever_removed() {
    let mut w = World::new(vec![vm(
        "vm1",
        &[
            "OLD:power:U:bob",
            "GANETI_WEB_MANAGER:power:U:x",
            "GANETI_WEB_MANAGER:owner:U:bob",
        ],
    )]);
    // A ledger edited by hand (the operator records grants only).
    w.ledger.insert(
        "uuid-vm1".into(),
        set(&[
            "OLD:power:U:bob",
            "GANETI_WEB_MANAGER:power:U:x",
            "GANETI_WEB_MANAGER:owner:U:bob",
        ]),
    );
    let p = w.plan();
    assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:x"]);
}

#[test]
fn owner_tags_are_never_written_by_the_tag_sync() {
    // The owner tag goes with the create request: the sync neither adds one (there
    // is no input that could ask for it) nor touches one that is there.
    let mut w = World::new(vec![
        vm("vm1", &["GANETI_WEB_MANAGER:owner:U:bob"]),
        vm("vm2", &[]),
    ]);
    w.bindings.push(("alice", on(Subject::user("alice"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:alice"]);
    w.apply(&p);
    w.bindings.clear();
    let p = w.plan();
    assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:alice"]);
    w.apply(&p);
    assert_eq!(w.instances[0].tags, vec!["GANETI_WEB_MANAGER:owner:U:bob"]);
    assert!(w.instances[1].tags.is_empty());
    assert_eq!(w.plan().writes, vec![]);
}

#[test]
fn a_renamed_vm_keeps_its_ledger_entries_and_nothing_follows_the_old_name() {
    let tag = "GANETI_WEB_MANAGER:power:U:bob";
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.bindings.push(("bob", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    let outcomes = w.apply(&p);
    record_writes(&mut w.overlay, &p, &outcomes);
    assert_eq!(w.ledger, Ledger::from([("uuid-vm1".into(), set(&[tag]))]));

    // Renamed in Ganeti, the binding follows it: the tag is still the operator's,
    // the overlay still belongs to the VM, and there is nothing to write.
    w.instances[0].name = "vm1-renamed".into();
    w.bindings[0].1 = on(Subject::user("bob"), "vm1-renamed");
    let p = w.plan();
    assert_eq!(p.writes, vec![]);
    assert_eq!(p.ledger_before, w.ledger, "kept under the UUID");

    // The binding still names the old name: nothing carries it, nothing is added
    // anywhere, and the tag the operator wrote is removed from the renamed VM.
    w.bindings[0].1 = on(Subject::user("bob"), "vm1");
    let p = w.plan();
    assert_eq!(p.report.bindings["bob"].missing, set(&["vm1"]));
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].instance, "vm1-renamed");
    assert!(p.writes[0].add.is_empty());
    assert_eq!(p.writes[0].remove, vec![tag]);
}

#[test]
fn a_vm_created_under_a_reused_name_inherits_nothing() {
    let tag = "GANETI_WEB_MANAGER:power:U:bob";
    let mut w = World::new(vec![vm_uuid("vm1", "old", &[])]);
    w.bindings.push(("bob", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    w.apply(&p);
    assert!(w.ledger.contains_key("old"));
    // Destroyed; another VM takes the name, with the same tag written by hand.
    w.instances = vec![vm_uuid("vm1", "new", &[tag])];
    w.bindings.clear();
    let p = w.plan();
    assert_eq!(p.writes, vec![], "the hand-written tag is not the operator's");
    assert!(p.ledger_before.is_empty(), "the old VM's record is gone with it");
    // And a binding on the name now records nothing for a tag that was there.
    w.bindings.push(("bob", on(Subject::user("bob"), "vm1")));
    assert!(w.plan().ledger_before.is_empty());
}

#[test]
fn a_held_instance_is_not_written_and_keeps_its_record() {
    let mut w = World::new(vec![vm("vm1", &[]), vm("vm2", &[])]);
    w.ledger
        .insert("uuid-vm1".into(), set(&["GANETI_WEB_MANAGER:power:U:gone"]));
    w.bindings.push(("a", on(Subject::user("a"), "vm1")));
    w.bindings.push(("b", on(Subject::user("b"), "vm2")));
    w.held.insert("uuid-vm1".into());
    let p = w.plan();
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].uuid, "uuid-vm2");
    assert_eq!(
        p.ledger_before["uuid-vm1"],
        set(&["GANETI_WEB_MANAGER:power:U:gone"]),
        "left as recorded until the VM is known again"
    );
}

#[test]
fn a_write_goes_only_to_the_name_that_still_is_its_vm() {
    let w = Write {
        uuid: "u1".into(),
        instance: "db.example.org".into(),
        add: vec!["t".into()],
        add_reason: String::new(),
        remove: vec![],
        remove_reason: String::new(),
    };
    assert!(still_resolves(&w, Some(("db.example.org", "u1"))));
    assert!(!still_resolves(&w, None), "gone");
    assert!(
        !still_resolves(&w, Some(("db.example.org", "u2"))),
        "the name is another VM's now"
    );
    assert!(
        !still_resolves(&w, Some(("db.example.org.other", "u1"))),
        "Ganeti expanded the name as a prefix"
    );
}

#[test]
fn a_name_keyed_ledger_migrates_once_and_unknown_keys_are_dropped() {
    let instances = vec![
        vm_uuid("vm1", "u1", &[]),
        vm_uuid("vm2", "u2", &[]),
        vm_uuid("old", "", &[]),
    ];
    let old = StoredLedger {
        entries: BTreeMap::from([
            ("vm1".to_string(), set(&["a"])),
            ("u2".to_string(), set(&["b"])),
            ("gone".to_string(), set(&["c"])),
            ("old".to_string(), set(&["d"])),
        ]),
        uuid_keyed: false,
    };
    assert_eq!(
        migrate(&old, &instances),
        Ledger::from([("u1".into(), set(&["a"])), ("u2".into(), set(&["b"]))])
    );
    // Once keyed by UUID, a key that is some VM's name is not taken for that VM.
    let new = StoredLedger {
        entries: old.entries.clone(),
        uuid_keyed: true,
    };
    assert_eq!(
        migrate(&new, &instances),
        Ledger::from([("u2".into(), set(&["b"]))])
    );
    // A name and its VM's UUID both present (a crash mid-upgrade): merged.
    let both = StoredLedger {
        entries: BTreeMap::from([("vm1".to_string(), set(&["a"])), ("u1".to_string(), set(&["e"]))]),
        uuid_keyed: false,
    };
    assert_eq!(
        migrate(&both, &instances),
        Ledger::from([("u1".into(), set(&["a", "e"]))])
    );
}

#[test]
fn too_long_tags_are_errors_on_the_binding() {
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.bindings
        .push(("long", on(Subject::user("x".repeat(120)), "vm1")));
    w.bindings.push(("missing", on(Subject::user("y"), "gone")));
    let p = w.plan();
    assert_eq!(p.writes, vec![]);
    let r = &p.report.bindings["long"];
    assert!(r.errors[0].contains("at most 128"), "{:?}", r.errors);
    assert_eq!(
        p.report.bindings["missing"].missing,
        BTreeSet::from(["gone".to_string()])
    );
}

#[test]
fn a_failed_add_is_not_recorded_and_is_retried() {
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.bindings.push(("b", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    let failed = vec![Outcome {
        uuid: "uuid-vm1".into(),
        add: Err("job failed".into()),
        remove: Ok(()),
    }];
    assert!(ledger_after(&p, &failed).is_empty());
    let mut report = p.report.clone();
    report_failures(&mut report, &p, &failed);
    assert!(report.bindings["b"].errors[0].contains("job failed"));
    assert!(
        report.bindings["b"].tags.is_empty(),
        "a tag that did not make it is not listed"
    );
    let mut overlay = Overlay::new();
    record_writes(&mut overlay, &p, &failed);
    assert!(overlay.is_empty());
    assert_eq!(w.plan().writes.len(), 1, "tried again");
}

#[test]
fn the_overlay_hides_a_stale_snapshot_and_ages_out() {
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.bindings.push(("b", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    let outcomes = vec![Outcome {
        uuid: "uuid-vm1".into(),
        add: Ok(()),
        remove: Ok(()),
    }];
    w.ledger = ledger_after(&p, &outcomes);
    record_writes(&mut w.overlay, &p, &outcomes);
    // A snapshot read during the write still shows no tag: no second write.
    let stale = w.instances.clone();
    age_overlay(&mut w.overlay, &stale);
    assert_eq!(w.plan().writes, vec![]);
    // The next one shows it: the overlay is done.
    w.instances[0].tags.push("GANETI_WEB_MANAGER:power:U:bob".into());
    age_overlay(&mut w.overlay, &w.instances.clone());
    assert!(w.overlay.is_empty());
    assert_eq!(w.plan().writes, vec![]);
    // Someone removes it by hand: put back.
    w.instances[0].tags.clear();
    assert_eq!(w.plan().writes.len(), 1);
    // A write no snapshot ever shows is distrusted after two snapshots.
    let mut overlay = Overlay::new();
    overlay.insert(
        "uuid-vm1".into(),
        Pending {
            added: set(&["x"]),
            ..Pending::default()
        },
    );
    age_overlay(&mut overlay, &w.instances);
    assert_eq!(overlay["uuid-vm1"].snapshots, 1);
    age_overlay(&mut overlay, &w.instances);
    assert!(overlay.is_empty());
    // An overlay belongs to the VM, not its name: another VM under the name does not
    // see it, and it goes when its VM does.
    let mut overlay = Overlay::new();
    overlay.insert(
        "uuid-vm1".into(),
        Pending {
            added: set(&["x"]),
            ..Pending::default()
        },
    );
    let reused = vm_uuid("vm1", "other", &[]);
    assert!(actual_tags(&reused, &overlay).is_empty());
    age_overlay(&mut overlay, std::slice::from_ref(&reused));
    assert!(overlay.is_empty());
}

#[test]
fn a_tag_written_by_hand_since_the_snapshot_is_not_taken_for_ours() {
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.bindings.push(("carol", on(Subject::user("carol"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:carol"]);
    // Read before adding: someone wrote it by hand meanwhile.
    let snapshot = w.instances[0].clone();
    observe(
        &mut w.overlay,
        &snapshot,
        &[
            "GANETI_WEB_MANAGER:power:U:carol".to_string(),
            "other".to_string(),
        ],
    );
    let p = w.plan();
    assert_eq!(p.writes, vec![], "nothing to add any more");
    assert!(p.ledger_before.is_empty(), "and it is not ours");
    w.bindings.clear();
    assert_eq!(w.plan().writes, vec![], "so it stays");
    // A read that agrees with the snapshot leaves nothing in the overlay.
    observe(&mut w.overlay, &snapshot, &[]);
    assert!(w.overlay.is_empty());
}

#[test]
fn instances_without_a_uuid_are_left_alone() {
    let mut w = World::new(vec![vm_uuid("vm1", "", &[])]);
    w.bindings.push(("b", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes, vec![]);
    assert!(p.ledger_before.is_empty());
}

#[test]
fn long_reasons_are_cut_with_a_count() {
    let sources: BTreeSet<String> = (0..100).map(|n| format!("RoleBinding binding-{n:03}")).collect();
    let r = reason("for", &sources);
    assert!(r.len() <= MAX_REASON + 20, "{}", r.len());
    assert!(r.ends_with("more"), "{r}");
}

fn ids(users: &str) -> GwmIds {
    GwmIds::from_data(&BTreeMap::from([("users".to_string(), users.to_string())])).unwrap()
}

#[test]
fn with_write_ids_grants_go_by_gwm_id_and_a_map_change_rewrites_them() {
    let mut w = World::new(vec![vm("vm1", &[])]);
    w.ids = Some(ids("7: bob\n"));
    w.bindings.push(("bob-power", on(Subject::user("bob"), "vm1")));
    w.bindings
        .push(("carol-power", on(Subject::user("carol"), "vm1")));
    let p = w.plan();
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:7"]);
    let carol = &p.report.bindings["carol-power"];
    assert!(carol.tags.is_empty(), "no name where GWM expects an id");
    assert!(
        carol.errors[0].contains("has none for them"),
        "{:?}",
        carol.errors
    );
    assert!(p.report.bindings["bob-power"].errors.is_empty());
    w.apply(&p);
    assert!(
        w.plan().writes.is_empty(),
        "its own id tag is recognised: no churn"
    );

    // bob's id changes: the old id (now nobody's, or someone else's) goes.
    w.ids = Some(ids("8: bob\n7: dave\n"));
    let p = w.plan();
    assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:power:U:8"]);
    assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:7"]);
    w.apply(&p);
    assert!(w.plan().writes.is_empty());

    // writeIds off: back to names, the id tag removed.
    w.ids = None;
    let p = w.plan();
    assert_eq!(
        p.writes[0].add,
        vec![
            "GANETI_WEB_MANAGER:power:U:bob",
            "GANETI_WEB_MANAGER:power:U:carol"
        ]
    );
    assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:8"]);
    w.apply(&p);
    assert_eq!(w.instances[0].tags.len(), 2);
}

#[test]
fn an_id_tag_gwm_wrote_is_never_taken_for_ours() {
    // GWM granted bob (id 7) power before the binding existed.
    let mut w = World::new(vec![vm("vm1", &["GANETI_WEB_MANAGER:power:U:7"])]);
    w.ids = Some(ids("7: bob\n"));
    w.bindings.push(("bob-power", on(Subject::user("bob"), "vm1")));
    let p = w.plan();
    assert!(p.writes.is_empty(), "already there");
    assert!(p.ledger_before.is_empty(), "and not recorded as ours");
    assert_eq!(p.report.bindings["bob-power"].tags.len(), 1);
    w.bindings.clear();
    assert!(w.plan().writes.is_empty(), "so never removed");
}
