//! The objects of `compute.ganeti.dev` with their resourceVersions, and a stream of
//! their changes for watches. Rebuilt from each authorization snapshot: only the
//! clusters whose inventory changed are compared, object by object, so an unchanged
//! VM keeps its resourceVersion and a watch hears only of real changes.

use super::objects::{Applications, GanetiNode};
use super::record::{InstanceRecord, Interner};
use crate::access::rules::Snapshot;
use crate::authz::{DetachedVms, Principal, Request};
use crate::inventory::{ClusterInventory, Instance};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, LazyLock, RwLock};
use tokio::sync::broadcast;

/// Events kept for watches that resume from a resourceVersion; older ones answer 410.
pub const HISTORY: usize = 8192;
/// Events a slow watch may fall behind by before it is ended (it re-lists).
const CHANNEL: usize = 4096;

/// What the catalog needs of an object.
pub trait Object: Serialize + Clone + Send + Sync + 'static {
    fn name(&self) -> &str;
    fn set_resource_version(&mut self, revision: u64);
    /// Equal but for the resourceVersion.
    fn same(&self, other: &Self) -> bool;
}

impl Object for GanetiNode {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
    fn set_resource_version(&mut self, revision: u64) {
        self.metadata.resource_version = Some(revision.to_string());
    }
    fn same(&self, other: &Self) -> bool {
        self.spec == other.spec
            && self.status == other.status
            && self.metadata.labels == other.metadata.labels
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
}

/// One change of one object.
pub struct Event<T> {
    pub revision: u64,
    pub kind: EventType,
    pub cluster: Arc<str>,
    pub object: Arc<T>,
    /// The rules to decide who may see it: those of the new snapshot for an addition
    /// or change, of the last one the object was in for a deletion; with the facts of
    /// only the VMs of its update (see `Diff::decided_on`). Node events carry none: nodes
    /// are decided for the whole resource when a watch starts.
    pub rules: Arc<EventRules>,
}

/// Decides requests for a watch: the whole snapshot for what a watch lists first, an
/// event's rules for the events.
pub trait Judge {
    fn allows(&self, p: &Principal<'_>, request: &Request<'_>) -> bool;
}

impl Judge for Snapshot {
    fn allows(&self, p: &Principal<'_>, request: &Request<'_>) -> bool {
        self.index.decide(p, request).allowed
    }
}

/// What events are decided on: the roles, bindings and profiles of a snapshot (with an
/// index of those alone, shared by every event of the same rules) and the facts of the
/// VMs of one update. It decides as the whole snapshot would (see
/// [`crate::authz::AuthzIndex::allows_with`]) and costs an event its VMs only.
pub struct EventRules {
    rules: Arc<Snapshot>,
    vms: DetachedVms,
}

impl EventRules {
    /// The snapshot of the rules alone (no inventory).
    pub fn rules(&self) -> &Arc<Snapshot> {
        &self.rules
    }

    pub fn vms(&self) -> &DetachedVms {
        &self.vms
    }
}

impl Judge for EventRules {
    fn allows(&self, p: &Principal<'_>, request: &Request<'_>) -> bool {
        self.rules.index.allows_with(&self.vms, p, request)
    }
}

/// One cluster's objects by name.
pub type ClusterObjects<T> = Arc<BTreeMap<String, Arc<T>>>;
/// Every cluster's objects.
pub type Clusters<T> = Vec<(Arc<str>, ClusterObjects<T>)>;

struct State<T> {
    revision: u64,
    clusters: BTreeMap<Arc<str>, ClusterObjects<T>>,
    history: VecDeque<Arc<Event<T>>>,
    /// The lowest revision a watch may resume from (older events were dropped).
    oldest: u64,
}

/// The objects of one resource.
pub struct Store<T> {
    state: RwLock<State<T>>,
    events: broadcast::Sender<Arc<Event<T>>>,
}

/// What a watch starts from.
pub struct Start<T> {
    /// Events after the requested revision, to send before the live ones.
    pub backlog: Vec<Arc<Event<T>>>,
    pub live: broadcast::Receiver<Arc<Event<T>>>,
}

/// One object of a cluster's replacement.
pub enum Incoming<T> {
    /// Compared with the current one of its name: an event if it differs.
    New(T),
    /// What it is built from is unchanged: the current object of this name stays.
    Unchanged(String),
}

/// A resourceVersion older than what is kept (HTTP 410).
#[derive(Debug, PartialEq, Eq)]
pub struct Expired {
    pub oldest: u64,
}

impl<T: Object> Default for Store<T> {
    fn default() -> Self {
        Self {
            state: RwLock::new(State {
                revision: 0,
                clusters: BTreeMap::new(),
                history: VecDeque::new(),
                oldest: 0,
            }),
            events: broadcast::channel(CHANNEL).0,
        }
    }
}

impl<T: Object> Store<T> {
    /// The current revision and every cluster's objects (cheap: shared maps).
    pub fn list(&self) -> (u64, Clusters<T>) {
        let state = self.state.read().expect("catalog lock");
        let clusters = state
            .clusters
            .iter()
            .map(|(c, o)| (c.clone(), o.clone()))
            .collect();
        (state.revision, clusters)
    }

    pub fn revision(&self) -> u64 {
        self.state.read().expect("catalog lock").revision
    }

    /// One cluster's objects.
    pub fn cluster(&self, cluster: &str) -> Option<ClusterObjects<T>> {
        self.state
            .read()
            .expect("catalog lock")
            .clusters
            .get(cluster)
            .cloned()
    }

    /// The object called `name` (`<cluster>.<Ganeti name>`), with its cluster.
    pub fn get(&self, name: &str) -> Option<(Arc<str>, Arc<T>)> {
        let state = self.state.read().expect("catalog lock");
        let (cluster, _) = super::split_name(name, state.clusters.keys().map(|c| &**c))?;
        let (cluster, objects) = state.clusters.get_key_value(cluster)?;
        objects.get(name).map(|o| (cluster.clone(), o.clone()))
    }

    /// Live events after `from` (`None`: after now). Subscribed under the lock, so no
    /// event falls between the backlog and the live stream.
    pub fn watch(&self, from: Option<u64>) -> Result<Start<T>, Expired> {
        let state = self.state.read().expect("catalog lock");
        let live = self.events.subscribe();
        let backlog = match from {
            None => Vec::new(),
            Some(rv) if rv >= state.revision => Vec::new(),
            Some(rv) if rv + 1 < state.oldest => return Err(Expired { oldest: state.oldest }),
            Some(rv) => state
                .history
                .iter()
                .filter(|e| e.revision > rv)
                .cloned()
                .collect(),
        };
        Ok(Start { backlog, live })
    }

    /// Replaces one cluster's objects; returns how many changed.
    pub fn replace_cluster(
        &self,
        cluster: &str,
        objects: Vec<T>,
        snapshot: &Arc<EventRules>,
        previous: &Arc<EventRules>,
    ) -> usize {
        self.replace_cluster_with(
            cluster,
            objects.into_iter().map(Incoming::New),
            snapshot,
            previous,
        )
    }

    /// [`Self::replace_cluster`], where objects known unchanged are not built again.
    pub fn replace_cluster_with(
        &self,
        cluster: &str,
        objects: impl IntoIterator<Item = Incoming<T>>,
        snapshot: &Arc<EventRules>,
        previous: &Arc<EventRules>,
    ) -> usize {
        let mut state = self.state.write().expect("catalog lock");
        let cluster: Arc<str> = state
            .clusters
            .get_key_value(cluster)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| cluster.into());
        let old = state.clusters.get(&cluster).cloned().unwrap_or_default();
        let mut new = BTreeMap::new();
        let mut events = Vec::new();
        for incoming in objects {
            let mut object = match incoming {
                Incoming::New(object) => object,
                Incoming::Unchanged(name) => {
                    if let Some(existing) = old.get(&name) {
                        new.insert(name, existing.clone());
                    }
                    continue;
                }
            };
            let name = object.name().to_string();
            match old.get(&name) {
                Some(existing) if existing.same(&object) => {
                    new.insert(name, existing.clone());
                }
                existing => {
                    state.revision += 1;
                    object.set_resource_version(state.revision);
                    let object = Arc::new(object);
                    let kind = if existing.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    events.push((state.revision, kind, object.clone(), snapshot.clone()));
                    new.insert(name, object);
                }
            }
        }
        for (name, object) in old.iter() {
            if !new.contains_key(name) {
                state.revision += 1;
                let mut gone = (**object).clone();
                gone.set_resource_version(state.revision);
                events.push((
                    state.revision,
                    EventType::Deleted,
                    Arc::new(gone),
                    previous.clone(),
                ));
            }
        }
        let changed = events.len();
        if new.is_empty() {
            state.clusters.remove(&cluster);
        } else {
            state.clusters.insert(cluster.clone(), Arc::new(new));
        }
        for (revision, kind, object, rules) in events {
            let event = Arc::new(Event {
                revision,
                kind,
                cluster: cluster.clone(),
                object,
                rules,
            });
            state.history.push_back(event.clone());
            // No receivers is fine: nobody watches.
            let _ = self.events.send(event);
        }
        while state.history.len() > HISTORY {
            if let Some(dropped) = state.history.pop_front() {
                state.oldest = dropped.revision + 1;
            }
        }
        changed
    }
}

/// Every resource's store, and the snapshot they were built from.
#[derive(Default)]
pub struct Catalog {
    pub instances: Store<InstanceRecord>,
    pub nodes: Store<GanetiNode>,
    /// The strings the instance records share.
    strings: std::sync::Mutex<Interner>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// The rules of the last update alone (see [`EventRules`]): built again only when
    /// the roles, bindings or profiles change.
    rules: std::sync::Mutex<Option<Arc<Snapshot>>>,
    /// The inventories of the last update, to skip unchanged clusters.
    seen: std::sync::Mutex<HashMap<String, Arc<ClusterInventory>>>,
    /// The applications of the last update (when they change, every cluster is compared).
    applications: std::sync::Mutex<Option<Arc<Applications>>>,
}

impl Catalog {
    /// The authorization snapshot the current objects come from: deciding on it, a VM
    /// and the rights on it agree.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().expect("catalog lock").clone()
    }

    /// Brings every store up to `snapshot` and `applications`; returns how many
    /// objects changed.
    pub fn update(&self, snapshot: Arc<Snapshot>, applications: &Arc<Applications>) -> usize {
        let previous = self.snapshot().unwrap_or_else(|| snapshot.clone());
        let (rules, previous_rules) = self.rules_of(&snapshot, &previous);
        let mut seen = self.seen.lock().expect("catalog lock");
        {
            let mut last = self.applications.lock().expect("catalog lock");
            if !last.as_ref().is_some_and(|a| Arc::ptr_eq(a, applications)) {
                seen.clear();
                *last = Some(applications.clone());
            }
        }
        let mut strings = self.strings.lock().expect("catalog lock");
        let mut changed = 0;
        let mut present = Vec::new();
        for inventory in snapshot.inventories() {
            present.push(inventory.cluster.clone());
            let old = seen.get(&inventory.cluster);
            if old.is_some_and(|s| Arc::ptr_eq(s, inventory)) {
                continue;
            }
            let diff = Diff::of(old.map(|o| &**o), inventory);
            let (now, gone) = diff.decided_on(&rules, &previous_rules, old.map(|o| &**o), inventory);
            // Only the VMs whose inventory entry changed are built again and compared.
            let instances = inventory.instances.iter().zip(&diff.changed).map(|(i, changed)| {
                if *changed {
                    Incoming::New(InstanceRecord::new(inventory, i, applications, &mut strings))
                } else {
                    Incoming::Unchanged(super::object_name(&inventory.cluster, &i.name))
                }
            });
            changed += self
                .instances
                .replace_cluster_with(&inventory.cluster, instances, &now, &gone);
            let nodes = inventory
                .nodes
                .iter()
                .map(|n| GanetiNode::from_inventory(inventory, n))
                .collect();
            changed += self
                .nodes
                .replace_cluster(&inventory.cluster, nodes, &NO_VMS, &NO_VMS);
            seen.insert(inventory.cluster.clone(), inventory.clone());
        }
        let gone: Vec<String> = seen.keys().filter(|c| !present.contains(c)).cloned().collect();
        for cluster in gone {
            let old = seen.remove(&cluster).expect("a cluster seen");
            let gone = slim(&previous_rules, &old, old.instances.iter());
            changed += self
                .instances
                .replace_cluster(&cluster, Vec::new(), &NO_VMS, &gone);
            changed += self.nodes.replace_cluster(&cluster, Vec::new(), &NO_VMS, &NO_VMS);
        }
        strings.prune();
        *self.snapshot.write().expect("catalog lock") = Some(snapshot);
        changed
    }

    /// Snapshots of the rules alone of `snapshot` and of `previous`: the last update's
    /// when the rules are the same objects, so that every event of unchanged rules
    /// shares one compiled index.
    fn rules_of(&self, snapshot: &Snapshot, previous: &Snapshot) -> (Arc<Snapshot>, Arc<Snapshot>) {
        let alone = |s: &Snapshot| {
            Arc::new(Snapshot::build(
                s.roles.clone(),
                s.bindings.clone(),
                s.profiles.clone(),
                Vec::new(),
            ))
        };
        let mut last = self.rules.lock().expect("catalog lock");
        let previous_rules = match last.take() {
            Some(r) if same_rules(&r, previous) => r,
            _ => alone(previous),
        };
        let rules = if same_rules(&previous_rules, snapshot) {
            previous_rules.clone()
        } else {
            alone(snapshot)
        };
        *last = Some(rules.clone());
        (rules, previous_rules)
    }
}

/// Whether two snapshots hold the very same Role, RoleBinding and UserProfile objects
/// (the watches' caches hand out the same `Arc` for an unchanged object).
fn same_rules(a: &Snapshot, b: &Snapshot) -> bool {
    fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
    }
    same(&a.roles, &b.roles) && same(&a.bindings, &b.bindings) && same(&a.profiles, &b.profiles)
}

/// No rules and no VMs: what node events carry (and instance events of an update that
/// changed no VM, which has none).
static NO_VMS: LazyLock<Arc<EventRules>> = LazyLock::new(|| {
    Arc::new(EventRules {
        rules: Arc::new(Snapshot::build(Vec::new(), Vec::new(), Vec::new(), Vec::new())),
        vms: DetachedVms::default(),
    })
});

/// What changed between two inventories of one cluster, by instance.
struct Diff<'a> {
    /// By position in the new inventory: whether the instance's entry differs from the
    /// one of the same name before (or is new).
    changed: Vec<bool>,
    /// Instances of before that are gone.
    gone: Vec<&'a Instance>,
}

impl<'a> Diff<'a> {
    fn of(old: Option<&'a ClusterInventory>, new: &'a ClusterInventory) -> Self {
        // An object is built from its instance, the cluster's name, tag prefix, GWM id
        // map (owners named by id) and reachability (see `GanetiInstance::from_inventory`).
        let whole = old.is_none_or(|o| {
            o.tag_prefix != new.tag_prefix || o.gwm.ids != new.gwm.ids || o.reachable != new.reachable
        });
        let before: HashMap<&str, &Instance> = old
            .map(|o| o.instances.iter().map(|i| (i.name.as_str(), i)).collect())
            .unwrap_or_default();
        let changed = new
            .instances
            .iter()
            .map(|i| whole || before.get(i.name.as_str()) != Some(&i))
            .collect();
        let names: HashSet<&str> = new.instances.iter().map(|i| i.name.as_str()).collect();
        let gone = old
            .map(|o| {
                o.instances
                    .iter()
                    .filter(|i| !names.contains(i.name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        Self { changed, gone }
    }

    /// The instances of `new` (the inventory it was made with) whose objects must be
    /// built again.
    fn changed_in<'n>(&'n self, new: &'n ClusterInventory) -> impl Iterator<Item = &'n Instance> {
        new.instances
            .iter()
            .zip(&self.changed)
            .filter(|(_, c)| **c)
            .map(|(i, _)| i)
    }

    /// What the events of this update are decided on: the rules of `snapshot`
    /// (changes and additions) and of `previous` (deletions), each a snapshot of the
    /// rules alone, with only the VMs of this update that changed or went.
    ///
    /// An event holding the whole snapshot would keep every VM's facts, and every
    /// cluster's inventory of that moment, alive for as long as the watch history
    /// holds the event: with 50 clusters of 2,000 VMs each read every 30 s, some 4 GB
    /// more per sync interval until the history is full. A VM's rights depend only on
    /// the rules and its own name and tags, so these decide every event the same.
    fn decided_on(
        &self,
        snapshot: &Arc<Snapshot>,
        previous: &Arc<Snapshot>,
        old: Option<&ClusterInventory>,
        new: &ClusterInventory,
    ) -> (Arc<EventRules>, Arc<EventRules>) {
        let now = if self.changed.contains(&true) {
            slim(snapshot, new, self.changed_in(new))
        } else {
            NO_VMS.clone()
        };
        let gone = match old {
            Some(old) if !self.gone.is_empty() => slim(previous, old, self.gone.iter().copied()),
            _ => NO_VMS.clone(),
        };
        (now, gone)
    }
}

/// The rules of `rules` (a snapshot of the rules alone) with `instances` of
/// `inventory` (their names and tags: what the authorization index reads of a VM).
fn slim<'a>(
    rules: &Arc<Snapshot>,
    inventory: &ClusterInventory,
    instances: impl IntoIterator<Item = &'a Instance>,
) -> Arc<EventRules> {
    Arc::new(EventRules {
        rules: rules.clone(),
        vms: DetachedVms::new(&inventory.cluster, inventory.reader(), instances),
    })
}

#[cfg(test)]
mod tests;
