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
//! - With `writeIds` (a cluster Ganeti Web Manager reads) a grant is written in GWM's
//!   id form (`<prefix>:power:U:2`) when the id map has an id for its subject, and not
//!   at all when it has none: GWM takes the field for a database id, and a name there
//!   breaks its reading of the VM's tags. The binding reports the subject without an id.
//!   Without `writeIds`, names (`<prefix>:power:U:alice`).
//! - Add what is desired and absent; remove only grant tags the ledger says the operator
//!   wrote, that are present, no longer desired, and grants under the cluster's prefix
//!   (in either form: a map that changed, or `writeIds` turned off, rewrites them). A tag
//!   someone else wrote is never removed, even when it equals one a binding implied.
//! - At most one add call and one remove call per instance, several tags each.

use crate::authz::AuthzIndex;
use crate::inventory::Instance;
use crate::tags::{self, GwmIds, GwmPerm, ParsedTag};
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
    /// Write GWM's id form, with ids from `ids` (`spec.gwm.writeIds`).
    pub write_ids: Option<&'a GwmIds>,
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
        let id = input.write_ids.map(|ids| ids.id(g.subject.kind, &g.subject.name));
        if id == Some(None) {
            for name in &names {
                report.bindings.entry(name.clone()).or_default().errors.push(format!(
                    "no tag for {} on {}: the cluster writes Ganeti Web Manager ids (spec.gwm.writeIds) and its id map has none for them",
                    g.subject, inst.name
                ));
            }
            continue;
        }
        for perm in GwmPerm::covering(|r| g.holds(r)) {
            let formatted = match id.flatten() {
                Some(id) => tags::format_grant_id(input.prefix, perm, g.subject.kind, id),
                None => tags::format_grant(input.prefix, perm, &g.subject),
            };
            match formatted {
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
    // otherwise (edited by hand) does not make the operator remove an owner tag. Ids are
    // read unresolved: a tag of ours whose id the map no longer names is still ours.
    let removable = |t: &str| {
        matches!(
            tags::parse(t, input.prefix),
            Some(ParsedTag::GwmGrant { .. } | ParsedTag::GwmId { perm: Some(_), .. })
        )
    };
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
mod tests;
