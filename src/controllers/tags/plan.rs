//! Pure: which tags one cluster's instances should carry, which RAPI writes get them
//! there, and what the ledger of the operator's own tags becomes.
//!
//! - Desired per instance: the GWM grant tags that bindings listing the instance imply
//!   ([`AuthzIndex::listed_grants`], turned into perms by [`GwmPerm::covering`]), plus an
//!   owner tag for each VM created through an InstanceApplication.
//! - Actual: the inventory's tags, corrected by what is newer than the snapshot
//!   ([`Overlay`]): the operator's own writes, and the tags read from Ganeti right before
//!   an add. That read matters: a snapshot is up to one sync interval old, and a tag
//!   written by hand since then must not be taken for one the operator added.
//! - Add what is desired and absent; remove only grant tags the ledger says the operator
//!   wrote, that are present, no longer desired, and under the cluster's prefix. A tag
//!   someone else wrote is never removed, even when it equals one a binding implied.
//! - Owner tags are added, never removed: deleting an application leaves its VM (and its
//!   owner) in place, and an application's owner cannot change. So they stay out of the
//!   ledger.
//! - At most one add call and one remove call per instance, several tags each.

use crate::api::common::Subject;
use crate::authz::AuthzIndex;
use crate::inventory::Instance;
use crate::tags::{self, GwmPerm};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Per instance, the grant tags the operator added and has not removed since.
pub type Ledger = BTreeMap<String, BTreeSet<String>>;

/// Per instance, what is known to differ from the inventory snapshot.
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

/// A VM created through an application: its owner is tagged on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedInstance {
    pub instance: String,
    pub owner: Subject,
    /// `namespace/name` of the application, for the reason trail.
    pub application: String,
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
    pub owned: &'a [OwnedInstance],
    pub ledger: &'a Ledger,
    pub overlay: &'a Overlay,
}

/// The RAPI calls for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
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
    /// Owner tags that cannot be written (`application: error`).
    pub owner_errors: Vec<String>,
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
    pub instance: String,
    /// `Ok` when the add job succeeded (or there was nothing to add).
    pub add: Result<(), String>,
    pub remove: Result<(), String>,
}

/// Tags of an instance as the plan should believe them.
pub fn actual_tags(instance: &Instance, overlay: &Overlay) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = instance.tags.iter().cloned().collect();
    if let Some(p) = overlay.get(&instance.name) {
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
    // Per instance: desired tag → what wants it (for the reason trail).
    let mut desired: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut grant_tags: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();

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
                        .entry(inst.name.as_str())
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
                    grant_tags.entry(inst.name.as_str()).or_default().insert(tag);
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
    for o in input.owned {
        let Some(inst) = by_name.get(o.instance.as_str()) else {
            continue;
        };
        match tags::format_owner(input.prefix, &o.owner) {
            Ok(tag) => {
                desired
                    .entry(inst.name.as_str())
                    .or_default()
                    .entry(tag)
                    .or_default()
                    .insert(format!("InstanceApplication {}", o.application));
            }
            Err(e) => report.owner_errors.push(format!(
                "{}: the owner tag for {} cannot be written: {e}",
                o.application, o.owner
            )),
        }
    }

    let ours = format!("{}:", input.prefix);
    let mut writes = Vec::new();
    let mut ledger_before = Ledger::new();
    for inst in input.instances {
        let want = desired.get(inst.name.as_str());
        let recorded = input.ledger.get(&inst.name);
        // Most instances: nothing wanted, nothing of ours.
        if want.is_none() && recorded.is_none() {
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
            .filter(|t| {
                actual.contains(*t) && t.starts_with(&ours) && !want.is_some_and(|w| w.contains_key(*t))
            })
            .cloned()
            .collect();
        // Only what is present or about to be added stays recorded: a tag removed by
        // hand and later re-added by hand is not ours.
        let grants = grant_tags.get(inst.name.as_str());
        let record: BTreeSet<String> = recorded
            .into_iter()
            .flatten()
            .filter(|t| actual.contains(*t))
            .chain(add.iter().filter(|t| grants.is_some_and(|g| g.contains(*t))))
            .cloned()
            .collect();
        if !record.is_empty() {
            ledger_before.insert(inst.name.clone(), record);
        }
        if add.is_empty() && remove.is_empty() {
            continue;
        }
        writes.push(Write {
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

/// The ledger after the writes: what was recorded and is still present (a failed add
/// leaves its tag unrecorded again; a successful remove drops it).
pub fn ledger_after(plan: &Plan, outcomes: &[Outcome]) -> Ledger {
    let mut ledger = plan.ledger_before.clone();
    for o in outcomes {
        let Some(w) = plan.writes.iter().find(|w| w.instance == o.instance) else {
            continue;
        };
        if let Some(tags) = ledger.get_mut(&o.instance) {
            if o.add.is_err() {
                tags.retain(|t| !w.add.contains(t));
            }
            if o.remove.is_ok() {
                tags.retain(|t| !w.remove.contains(t));
            }
            if tags.is_empty() {
                ledger.remove(&o.instance);
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
        overlay.remove(&instance.name);
    } else {
        overlay.insert(instance.name.clone(), p);
    }
}

/// Records successful writes in the overlay (replacing older ones for the instance).
pub fn record_writes(overlay: &mut Overlay, plan: &Plan, outcomes: &[Outcome]) {
    for o in outcomes {
        let Some(w) = plan.writes.iter().find(|w| w.instance == o.instance) else {
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
        let p = overlay.entry(o.instance.clone()).or_default();
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
    let by_name: HashMap<&str, &Instance> = instances.iter().map(|i| (i.name.as_str(), i)).collect();
    overlay.retain(|name, p| {
        let Some(inst) = by_name.get(name.as_str()) else {
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
        let Some(w) = plan.writes.iter().find(|w| w.instance == o.instance) else {
            continue;
        };
        if let Err(e) = &o.add {
            for b in report.bindings.values_mut() {
                let before = b.tags.len();
                b.tags.retain(|(i, t)| *i != o.instance || !w.add.contains(t));
                if b.tags.len() != before {
                    b.errors
                        .push(format!("adding tags on {} failed: {e}", o.instance));
                }
            }
        }
        if let Err(e) = &o.remove {
            for b in report.bindings.values_mut() {
                if b.instances.contains(&o.instance) {
                    b.errors
                        .push(format!("removing tags on {} failed: {e}", o.instance));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::InstanceRef;
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

    fn vm(name: &str, tags: &[&str]) -> Instance {
        Instance {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Instance::default()
        }
    }

    struct World {
        bindings: Vec<(&'static str, RoleBindingSpec)>,
        instances: Vec<Instance>,
        owned: Vec<OwnedInstance>,
        ledger: Ledger,
        overlay: Overlay,
    }

    impl World {
        fn new(instances: Vec<Instance>) -> Self {
            Self {
                bindings: vec![],
                instances,
                owned: vec![],
                ledger: Ledger::new(),
                overlay: Overlay::new(),
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
                owned: &self.owned,
                ledger: &self.ledger,
                overlay: &self.overlay,
            })
        }
        /// Applies a plan as Ganeti would, all writes succeeding.
        fn apply(&mut self, plan: &Plan) -> Vec<Outcome> {
            let outcomes: Vec<Outcome> = plan
                .writes
                .iter()
                .map(|w| Outcome {
                    instance: w.instance.clone(),
                    add: Ok(()),
                    remove: Ok(()),
                })
                .collect();
            for w in &plan.writes {
                let i = self.instances.iter_mut().find(|i| i.name == w.instance).unwrap();
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
        assert!(p.writes[0].remove.is_empty());
        assert!(
            p.writes[0].add_reason.contains("RoleBinding bob-power"),
            "{}",
            p.writes[0].add_reason
        );
        assert_eq!(p.ledger_before["vm1"].len(), 1, "recorded before writing");
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
    fn tags_outside_the_prefix_are_never_removed() {
        let mut w = World::new(vec![vm(
            "vm1",
            &["OLD:power:U:bob", "GANETI_WEB_MANAGER:power:U:x"],
        )]);
        w.ledger.insert(
            "vm1".into(),
            BTreeSet::from([
                "OLD:power:U:bob".to_string(),
                "GANETI_WEB_MANAGER:power:U:x".to_string(),
            ]),
        );
        let p = w.plan();
        assert_eq!(p.writes[0].remove, vec!["GANETI_WEB_MANAGER:power:U:x"]);
    }

    #[test]
    fn owner_tags_are_added_for_created_applications_and_never_removed() {
        let mut w = World::new(vec![vm("vm1", &[])]);
        w.owned.push(OwnedInstance {
            instance: "vm1".into(),
            owner: Subject::group("team a"),
            application: "ns/app".into(),
        });
        w.owned.push(OwnedInstance {
            instance: "not-there".into(),
            owner: Subject::user("x"),
            application: "ns/other".into(),
        });
        let p = w.plan();
        assert_eq!(p.writes[0].add, vec!["GANETI_WEB_MANAGER:owner:G:team+20a"]);
        assert!(p.writes[0].add_reason.contains("InstanceApplication ns/app"));
        assert!(p.ledger_before.is_empty(), "owner tags are not in the ledger");
        w.apply(&p);
        w.owned.clear();
        assert_eq!(w.plan().writes, vec![], "the VM keeps its owner");
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
            instance: "vm1".into(),
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
            instance: "vm1".into(),
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
            "vm1".into(),
            Pending {
                added: BTreeSet::from(["x".to_string()]),
                ..Pending::default()
            },
        );
        age_overlay(&mut overlay, &w.instances);
        assert_eq!(overlay["vm1"].snapshots, 1);
        age_overlay(&mut overlay, &w.instances);
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
    fn long_reasons_are_cut_with_a_count() {
        let sources: BTreeSet<String> = (0..100).map(|n| format!("RoleBinding binding-{n:03}")).collect();
        let r = reason("for", &sources);
        assert!(r.len() <= MAX_REASON + 20, "{}", r.len());
        assert!(r.ends_with("more"), "{r}");
    }
}
