//! Pure: which tags one cluster's instances should carry, which RAPI writes get them
//! there, and what the ledger of the operator's own tags becomes.
//!
//! - An instance is its Ganeti UUID: the ledger, the overlay and every planned write are
//!   keyed by it. A name is only the label a RAPI tag call needs (it takes nothing else),
//!   so a renamed VM keeps what the ledger says of it, and a VM created later under a
//!   freed name inherits nothing.
//! - Desired per instance: the GWM grant tags that bindings listing the instance (by its
//!   current name) imply ([`AuthzIndex::listed_grants`], turned into perms by
//!   [`GwmPerm::covering`]). Owner tags are not the tag sync's business: the owner tag
//!   goes with the create request of the application's own VM, once. Adding one later by
//!   name would tag whatever instance carries that name then (a user who pointed her
//!   application's status at another user's VM would have taken it over).
//! - Actual: the inventory's tags, corrected by what is newer than the snapshot
//!   ([`Overlay`]): the operator's own writes, and the tags read from Ganeti right before
//!   a write. That read matters: a snapshot is up to one sync interval old, and a tag
//!   written by hand since then must not be taken for one the operator added.
//! - Add what is desired and absent; remove only grant tags the ledger says the operator
//!   wrote, that are present, no longer desired, and grants under the cluster's prefix. A tag
//!   someone else wrote is never removed, even when it equals one a binding implied.
//! - At most one add call and one remove call per instance, several tags each.

use crate::authz::AuthzIndex;
use crate::inventory::Instance;
use crate::tags::{self, GwmPerm, ParsedTag};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Per instance UUID, the grant tags the operator added and has not removed since.
pub type Ledger = BTreeMap<String, BTreeSet<String>>;

/// Per instance UUID, what is known to differ from the inventory snapshot.
pub type Overlay = BTreeMap<String, Pending>;

/// One instance's tags known present or absent since its snapshot: written by the
/// operator, or seen in a fresh read. A snapshot read before that may still show the
/// old tags; trusting it would write them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub added: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    /// Snapshots seen since the writes that did not show them.
    pub snapshots: u8,
}

/// Snapshots after which a pending write is no longer trusted over the inventory. The
/// cluster controller reads one cluster at a time, so the second snapshot after a write
/// was read entirely after it: if that one disagrees, someone else changed the tags.
pub const OVERLAY_SNAPSHOTS: u8 = 2;

/// The ledger as stored: its keys are instance UUIDs, or instance names in a ledger an
/// operator before UUID keys wrote (no `uuid_keyed` mark on the ConfigMap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLedger {
    pub entries: BTreeMap<String, BTreeSet<String>>,
    pub uuid_keyed: bool,
}

/// The UUID-keyed ledger of a stored one, against the instances Ganeti has now.
///
/// A key that is an instance's UUID stays. In a name-keyed ledger (read once, on the
/// first pass after an upgrade) a key equal to an instance's current name becomes that
/// instance's UUID: the best the old record can say. Any other key names nothing Ganeti
/// has: it is dropped, never acted on (its VM is gone; a VM that later takes the name
/// must not inherit its tags).
pub fn migrate(stored: &StoredLedger, instances: &[Instance]) -> Ledger {
    let by_uuid: HashMap<&str, &Instance> = instances
        .iter()
        .filter(|i| !i.uuid.is_empty())
        .map(|i| (i.uuid.as_str(), i))
        .collect();
    let by_name: HashMap<&str, &Instance> = instances
        .iter()
        .filter(|i| !i.uuid.is_empty())
        .map(|i| (i.name.as_str(), i))
        .collect();
    let mut ledger = Ledger::new();
    for (key, tags) in &stored.entries {
        let uuid = if by_uuid.contains_key(key.as_str()) {
            key.as_str()
        } else if !stored.uuid_keyed
            && let Some(i) = by_name.get(key.as_str())
        {
            i.uuid.as_str()
        } else {
            continue;
        };
        if !tags.is_empty() {
            ledger
                .entry(uuid.to_owned())
                .or_default()
                .extend(tags.iter().cloned());
        }
    }
    ledger
}

/// What one cluster's plan needs.
pub struct Input<'a> {
    pub cluster: &'a str,
    pub prefix: &'a str,
    /// Built from every Role and RoleBinding and this cluster's inventory.
    pub index: &'a AuthzIndex,
    /// The cluster's instances, as of the last snapshot.
    pub instances: &'a [Instance],
    /// Instances that bindings list on this cluster, by binding name (to report those
    /// missing from Ganeti).
    pub listed: &'a BTreeMap<String, BTreeSet<String>>,
    /// UUID-keyed ([`migrate`]).
    pub ledger: &'a Ledger,
    pub overlay: &'a Overlay,
    /// UUIDs of instances not written this pass: the name the snapshot has for them no
    /// longer resolves to them in Ganeti (renamed or destroyed since). Their ledger
    /// entries stay as they are; the next snapshot knows them better.
    pub held: &'a BTreeSet<String>,
}

/// The RAPI calls for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What the instance is.
    pub uuid: String,
    /// Its name as of the snapshot: RAPI's tag calls take a name only, so the writer
    /// checks right before the call that the name still resolves to `uuid`.
    pub instance: String,
    pub add: Vec<String>,
    pub add_reason: String,
    pub remove: Vec<String>,
    pub remove_reason: String,
}

/// What one cluster's tags say about one binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingReport {
    /// (instance, tag) the binding implies on this cluster.
    pub tags: BTreeSet<(String, String)>,
    /// Instances it lists (and reaches) that exist.
    pub instances: BTreeSet<String>,
    /// Instances it lists that Ganeti does not have.
    pub missing: BTreeSet<String>,
    /// Tags that cannot be written (too long, ...), and writes that failed.
    pub errors: Vec<String>,
}

/// One cluster's sync, as the binding statuses read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterReport {
    pub bindings: BTreeMap<String, BindingReport>,
}

/// The writes for one cluster and the ledger to record before making them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// The ledger plus every grant tag about to be added: recorded before the writes,
    /// so a crash between the add and the record cannot leave a tag of ours unrecorded.
    pub ledger_before: Ledger,
    pub report: ClusterReport,
}

/// The result of one instance's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub uuid: String,
    /// `Ok` when the add job succeeded (or there was nothing to add).
    pub add: Result<(), String>,
    pub remove: Result<(), String>,
}

/// Tags of an instance as the plan should believe them.
pub fn actual_tags(instance: &Instance, overlay: &Overlay) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = instance.tags.iter().cloned().collect();
    if let Some(p) = overlay.get(&instance.uuid) {
        tags.extend(p.added.iter().cloned());
        tags.retain(|t| !p.removed.contains(t));
    }
    tags
}

/// Longest reason sent to RAPI: it lands in every job's reason trail.
const MAX_REASON: usize = 300;

fn reason(what: &str, sources: &BTreeSet<String>) -> String {
    let mut out = format!("ganeti-operator tag sync: {what}");
    let mut first = true;
    for (n, s) in sources.iter().enumerate() {
        if out.len() + s.len() + 2 > MAX_REASON {
            out.push_str(&format!(" and {} more", sources.len() - n));
            break;
        }
        out.push_str(if first { " " } else { ", " });
        out.push_str(s);
        first = false;
    }
    out
}

pub fn plan(input: &Input<'_>) -> Plan {
    let by_name: HashMap<&str, &Instance> = input.instances.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut report = ClusterReport::default();
    // Per instance UUID: desired tag → what wants it (for the reason trail).
    let mut desired: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();

    for (binding, instances) in input.listed {
        let entry = report.bindings.entry(binding.clone()).or_default();
        for i in instances.iter().filter(|i| !by_name.contains_key(i.as_str())) {
            entry.missing.insert(i.clone());
        }
    }
    for g in input.index.listed_grants(input.cluster) {
        let Some(inst) = by_name.get(&*g.instance) else {
            continue;
        };
        let names: Vec<String> = g
            .bindings
            .iter()
            .map(|b| input.index.binding_name(*b).to_owned())
            .collect();
        for name in &names {
            report
                .bindings
                .entry(name.clone())
                .or_default()
                .instances
                .insert(inst.name.clone());
        }
        for perm in GwmPerm::covering(|r| g.holds(r)) {
            match tags::format_grant(input.prefix, perm, &g.subject) {
                Ok(tag) => {
                    let sources = desired
                        .entry(inst.uuid.as_str())
                        .or_default()
                        .entry(tag.clone())
                        .or_default();
                    for name in &names {
                        sources.insert(format!("RoleBinding {name}"));
                        report
                            .bindings
                            .entry(name.clone())
                            .or_default()
                            .tags
                            .insert((inst.name.clone(), tag.clone()));
                    }
                }
                Err(e) => {
                    for name in &names {
                        report
                            .bindings
                            .entry(name.clone())
                            .or_default()
                            .errors
                            .push(format!(
                                "the {perm} tag for {} on {} cannot be written: {e}",
                                g.subject, inst.name
                            ));
                    }
                }
            }
        }
    }

    // Only grant tags under the cluster's prefix are ever removed: a ledger that says
    // otherwise (edited by hand) does not make the operator remove an owner tag.
    let removable = |t: &str| matches!(tags::parse(t, input.prefix), Some(ParsedTag::GwmGrant { .. }));
    let mut writes = Vec::new();
    let mut ledger_before = Ledger::new();
    // An instance without a UUID (a Ganeti before 2.10) cannot be told from a later
    // one of the same name: nothing is written on it or recorded for it.
    for inst in input.instances.iter().filter(|i| !i.uuid.is_empty()) {
        let uuid = inst.uuid.as_str();
        let want = desired.get(uuid);
        let recorded = input.ledger.get(uuid);
        // Most instances: nothing wanted, nothing of ours.
        if want.is_none() && recorded.is_none() {
            continue;
        }
        if input.held.contains(uuid) {
            if let Some(r) = recorded {
                ledger_before.insert(uuid.to_owned(), r.clone());
            }
            continue;
        }
        let actual = actual_tags(inst, input.overlay);
        let mut add = Vec::new();
        let mut add_sources = BTreeSet::new();
        for (tag, sources) in want.into_iter().flatten() {
            if !actual.contains(tag) {
                add.push(tag.clone());
                add_sources.extend(sources.iter().cloned());
            }
        }
        let remove: Vec<String> = recorded
            .into_iter()
            .flatten()
            .filter(|t| actual.contains(*t) && removable(t) && !want.is_some_and(|w| w.contains_key(*t)))
            .cloned()
            .collect();
        // Only what is present or about to be added stays recorded: a tag removed by
        // hand and later re-added by hand is not ours. (Every desired tag is a grant.)
        let record: BTreeSet<String> = recorded
            .into_iter()
            .flatten()
            .filter(|t| actual.contains(*t))
            .chain(add.iter())
            .cloned()
            .collect();
        if !record.is_empty() {
            ledger_before.insert(uuid.to_owned(), record);
        }
        if add.is_empty() && remove.is_empty() {
            continue;
        }
        writes.push(Write {
            uuid: uuid.to_owned(),
            instance: inst.name.clone(),
            add_reason: reason("for", &add_sources),
            add,
            remove_reason: reason("no RoleBinding implies these any more", &BTreeSet::new()),
            remove,
        });
    }
    Plan {
        writes,
        ledger_before,
        report,
    }
}

/// Whether a write may go to `name` now: a fresh, exact-name read of Ganeti (`found`:
/// the name and UUID it answered with, `None` when it has no such instance) says the
/// name still belongs to the instance the write was planned for. Ganeti expands a
/// unique prefix, so the answer's name must equal the one asked for.
pub fn still_resolves(write: &Write, found: Option<(&str, &str)>) -> bool {
    found.is_some_and(|(name, uuid)| name == write.instance && uuid == write.uuid)
}

/// The ledger after the writes: what was recorded and is still present (a failed add
/// leaves its tag unrecorded again; a successful remove drops it).
pub fn ledger_after(plan: &Plan, outcomes: &[Outcome]) -> Ledger {
    let mut ledger = plan.ledger_before.clone();
    for o in outcomes {
        let Some(w) = plan.writes.iter().find(|w| w.uuid == o.uuid) else {
            continue;
        };
        if let Some(tags) = ledger.get_mut(&o.uuid) {
            if o.add.is_err() {
                tags.retain(|t| !w.add.contains(t));
            }
            if o.remove.is_ok() {
                tags.retain(|t| !w.remove.contains(t));
            }
            if tags.is_empty() {
                ledger.remove(&o.uuid);
            }
        }
    }
    ledger
}

/// Records tags just read from Ganeti (`fresh`) in the overlay, replacing what it knew
/// of the instance: the difference from the snapshot is what changed since.
pub fn observe(overlay: &mut Overlay, instance: &Instance, fresh: &[String]) {
    let snapshot: BTreeSet<&String> = instance.tags.iter().collect();
    let fresh: BTreeSet<&String> = fresh.iter().collect();
    let p = Pending {
        added: fresh.difference(&snapshot).map(|t| (*t).clone()).collect(),
        removed: snapshot.difference(&fresh).map(|t| (*t).clone()).collect(),
        snapshots: 0,
    };
    if p.added.is_empty() && p.removed.is_empty() {
        overlay.remove(&instance.uuid);
    } else {
        overlay.insert(instance.uuid.clone(), p);
    }
}

/// Records successful writes in the overlay (replacing older ones for the instance).
pub fn record_writes(overlay: &mut Overlay, plan: &Plan, outcomes: &[Outcome]) {
    for o in outcomes {
        let Some(w) = plan.writes.iter().find(|w| w.uuid == o.uuid) else {
            continue;
        };
        let added: BTreeSet<String> = if o.add.is_ok() {
            w.add.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        let removed: BTreeSet<String> = if o.remove.is_ok() {
            w.remove.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        if added.is_empty() && removed.is_empty() {
            continue;
        }
        let p = overlay.entry(o.uuid.clone()).or_default();
        p.added.retain(|t| !removed.contains(t));
        p.removed.retain(|t| !added.contains(t));
        p.added.extend(added);
        p.removed.extend(removed);
        p.snapshots = 0;
    }
}

/// Ages the overlay against a new snapshot: writes the snapshot shows are done with;
/// the others are trusted for at most [`OVERLAY_SNAPSHOTS`] snapshots.
pub fn age_overlay(overlay: &mut Overlay, instances: &[Instance]) {
    let by_uuid: HashMap<&str, &Instance> = instances.iter().map(|i| (i.uuid.as_str(), i)).collect();
    overlay.retain(|uuid, p| {
        let Some(inst) = by_uuid.get(uuid.as_str()) else {
            return false;
        };
        let shown =
            p.added.iter().all(|t| inst.tags.contains(t)) && !p.removed.iter().any(|t| inst.tags.contains(t));
        p.snapshots += 1;
        !shown && p.snapshots < OVERLAY_SNAPSHOTS
    });
}

/// Failed writes, reported on the bindings whose tags they carried. A tag whose add
/// failed is not in Ganeti, so it is no longer listed as the binding's.
pub fn report_failures(report: &mut ClusterReport, plan: &Plan, outcomes: &[Outcome]) {
    for o in outcomes {
        let Some(w) = plan.writes.iter().find(|w| w.uuid == o.uuid) else {
            continue;
        };
        let name = &w.instance;
        if let Err(e) = &o.add {
            for b in report.bindings.values_mut() {
                let before = b.tags.len();
                b.tags.retain(|(i, t)| i != name || !w.add.contains(t));
                if b.tags.len() != before {
                    b.errors.push(format!("adding tags on {name} failed: {e}"));
                }
            }
        }
        if let Err(e) = &o.remove {
            for b in report.bindings.values_mut() {
                if b.instances.contains(name) {
                    b.errors.push(format!("removing tags on {name} failed: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
    }

    impl World {
        fn new(instances: Vec<Instance>) -> Self {
            Self {
                bindings: vec![],
                instances,
                ledger: Ledger::new(),
                overlay: Overlay::new(),
                held: BTreeSet::new(),
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
}
