//! What the operator knows of each Ganeti cluster, as of its last bulk read: the
//! domain model shared by the controllers, the authorization engine, quotas and the
//! HTTP server. Built from RAPI answers by the GanetiCluster controller; no IO here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// One Ganeti instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    /// Ganeti instance name (FQDN): a label that can be renamed and reused.
    pub name: String,
    /// Ganeti's instance UUID: what the VM *is*. Empty only in answers of a Ganeti that
    /// does not report it (never the case for 2.10 and later).
    pub uuid: String,
    /// Ganeti status: running, ADMIN_down, ERROR_down, ...
    pub status: String,
    /// Whether the admin state is up (Ganeti `admin_state == "up"`).
    pub admin_up: bool,
    /// Whether it actually runs (Ganeti `oper_state`).
    pub running: bool,
    pub primary_node: String,
    pub secondary_nodes: Vec<String>,
    pub os: String,
    pub hypervisor: String,
    pub disk_template: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Sum of the disk sizes.
    pub disk_mib: u64,
    pub ips: Vec<String>,
    pub macs: Vec<String>,
    /// VNC/SPICE port, when the hypervisor has one.
    pub network_port: Option<u16>,
    /// `vnc_bind_address` from the instance's hypervisor parameters.
    pub vnc_bind_address: Option<String>,
    pub tags: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub ctime: Option<f64>,
}

/// One Ganeti node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    pub name: String,
    /// master, candidate, regular, drained or offline.
    pub role: NodeRole,
    pub offline: bool,
    pub drained: bool,
    pub memory_total_mib: u64,
    pub memory_free_mib: u64,
    pub disk_total_mib: u64,
    pub disk_free_mib: u64,
    pub cpus: u32,
    pub primary_instances: u32,
    pub secondary_instances: u32,
    /// Primary IP address.
    pub primary_ip: Option<String>,
    pub group: Option<String>,
}

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum NodeRole {
    Master,
    Candidate,
    #[default]
    Regular,
    Drained,
    Offline,
}

impl NodeRole {
    /// Every role, in Ganeti's order of rank.
    pub const ALL: [NodeRole; 5] = [
        Self::Master,
        Self::Candidate,
        Self::Regular,
        Self::Drained,
        Self::Offline,
    ];

    /// From RAPI's single-letter role (M, C, R, D, O).
    pub fn from_letter(letter: &str) -> Option<Self> {
        Some(match letter {
            "M" => Self::Master,
            "C" => Self::Candidate,
            "R" => Self::Regular,
            "D" => Self::Drained,
            "O" => Self::Offline,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Candidate => "candidate",
            Self::Regular => "regular",
            Self::Drained => "drained",
            Self::Offline => "offline",
        }
    }
}

/// Cluster-wide facts from `/2/info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterFacts {
    pub name: String,
    pub master: String,
    pub software_version: String,
    pub enabled_hypervisors: Vec<String>,
    pub default_hypervisor: String,
}

/// One cluster as of one bulk read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterInventory {
    /// The GanetiCluster object's name (not Ganeti's cluster name).
    pub cluster: String,
    pub facts: ClusterFacts,
    pub nodes: Vec<Node>,
    pub instances: Vec<Instance>,
    /// Job counts by status.
    pub jobs_by_status: BTreeMap<String, u32>,
    /// Prefix of the permission tags on this cluster (GanetiCluster `tagPrefix`).
    pub tag_prefix: String,
    /// Ganeti Web Manager ids on this cluster (GanetiCluster `gwm`), as of this read.
    pub gwm: GwmSetting,
    /// The GanetiCluster's `managementPolicy` is `Observe`: nothing is written to it.
    pub observed: bool,
    /// Whether the last read succeeded. A failed read keeps the previous data (other
    /// controllers still need it) but marks it stale.
    pub reachable: bool,
    /// When the bulk read behind this snapshot started: an instance Ganeti created
    /// after it may be missing from it.
    pub read_started: Option<k8s_openapi::jiff::Timestamp>,
}

/// A cluster's GWM id setting, loaded when the cluster was read: a changed map comes
/// with the next snapshot, and everything that reads tags from a snapshot reads them
/// with the map of that snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GwmSetting {
    /// The ConfigMap `spec.gwm.idMap` names, if any.
    pub id_map: Option<String>,
    /// The map in force. `None` without one, and when the named one is unusable: then
    /// no id grants anything (fail closed).
    pub ids: Option<Arc<crate::tags::GwmIds>>,
    /// `spec.gwm.writeIds`: the tag sync writes GWM's id form.
    pub write_ids: bool,
    /// Why the named map is not in force: (condition reason, message).
    pub problem: Option<(&'static str, String)>,
}

impl ClusterInventory {
    /// How this cluster's tags are read: its prefix and id map.
    pub fn reader(&self) -> crate::tags::Reader<'_> {
        crate::tags::Reader {
            prefix: &self.tag_prefix,
            ids: self.gwm.ids.as_deref(),
        }
    }

    /// Tags naming a GWM id that no map in force names: they grant nothing.
    pub fn unmapped_gwm_tags(&self) -> impl Iterator<Item = &str> {
        let reader = self.reader();
        self.instances
            .iter()
            .flat_map(|i| &i.tags)
            .filter(move |t| matches!(reader.parse(t), Some(crate::tags::ParsedTag::GwmId { .. })))
            .map(String::as_str)
    }

    /// The instance with exactly this name (never a prefix, as Ganeti would expand it).
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The instance with this Ganeti UUID, whatever it is called now.
    pub fn instance_by_uuid(&self, uuid: &str) -> Option<&Instance> {
        if uuid.is_empty() {
            return None;
        }
        self.instances.iter().find(|i| i.uuid == uuid)
    }

    /// The instance's owner, from the operator's owner tags or ganetimgr's (the
    /// operator's own tag wins when both are present).
    pub fn owner_of(&self, instance: &Instance) -> Option<crate::api::Subject> {
        use crate::tags::ParsedTag;
        let reader = self.reader();
        let mut foreign = None;
        for tag in &instance.tags {
            match reader.parse(tag) {
                Some(ParsedTag::Owner(s)) => return Some(s),
                Some(ParsedTag::GanetimgrOwner(s)) if foreign.is_none() => foreign = Some(s),
                _ => {}
            }
        }
        foreign
    }
}

/// Every cluster's latest inventory, shared between tasks. Readers get an `Arc`
/// snapshot and never block the writer for long; [`Inventory::changes`] wakes those
/// that act on a new snapshot (the authorization snapshot, tag sync).
#[derive(Debug, Clone)]
pub struct Inventory {
    clusters: Arc<RwLock<HashMap<String, Arc<ClusterInventory>>>>,
    /// Bumped after every change.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Inventory {
    fn default() -> Self {
        Self {
            clusters: Default::default(),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Inventory {
    /// Tells of every change after it is made (a counter: only "something changed").
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn get(&self, cluster: &str) -> Option<Arc<ClusterInventory>> {
        self.clusters
            .read()
            .expect("inventory lock")
            .get(cluster)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<ClusterInventory>> {
        let mut all: Vec<_> = self
            .clusters
            .read()
            .expect("inventory lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        all
    }

    pub fn put(&self, inventory: ClusterInventory) {
        let previous = self
            .clusters
            .write()
            .expect("inventory lock")
            .insert(inventory.cluster.clone(), Arc::new(inventory));
        self.bump();
        // Freeing 10k instances takes ~10 ms: do it after the lock is released, so
        // readers (/metrics, authorization) never wait for it.
        drop(previous);
    }

    pub fn remove(&self, cluster: &str) {
        let removed = self.clusters.write().expect("inventory lock").remove(cluster);
        if removed.is_some() {
            self.bump();
        }
    }

    /// Marks a cluster's data stale after a failed read (a no-op if never read).
    pub fn mark_unreachable(&self, cluster: &str) {
        let mut map = self.clusters.write().expect("inventory lock");
        if let Some(entry) = map.get_mut(cluster)
            && entry.reachable
        {
            let mut stale = (**entry).clone();
            stale.reachable = false;
            *entry = Arc::new(stale);
            drop(map);
            self.bump();
        }
    }

    /// Adds (or replaces) one instance the operator has just seen in Ganeti, ahead of
    /// the next bulk read: a VM just created counts against its owner's quota at once,
    /// not only after the next sync. A no-op for a cluster never read.
    pub fn upsert_instance(&self, cluster: &str, instance: Instance) {
        let mut map = self.clusters.write().expect("inventory lock");
        if let Some(entry) = map.get_mut(cluster) {
            let mut updated = (**entry).clone();
            // The same VM is the same UUID; a name alone matches only when Ganeti gave none.
            let same = |i: &Instance| {
                if instance.uuid.is_empty() {
                    i.name == instance.name
                } else {
                    i.uuid == instance.uuid || (i.uuid.is_empty() && i.name == instance.name)
                }
            };
            updated.instances.retain(|i| same(i) || i.name != instance.name);
            match updated.instances.iter_mut().find(|i| same(i)) {
                Some(existing) => *existing = instance,
                None => updated.instances.push(instance),
            }
            *entry = Arc::new(updated);
            drop(map);
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_instance_is_seen_before_the_next_read() {
        let inv = Inventory::default();
        let changes = inv.changes();
        inv.upsert_instance("lab", Instance::default());
        assert!(inv.get("lab").is_none(), "a cluster never read stays unknown");
        assert!(!changes.has_changed().unwrap(), "nothing changed");
        inv.put(ClusterInventory {
            cluster: "lab".into(),
            ..Default::default()
        });
        let vm = |memory_mib| Instance {
            name: "vm1".into(),
            memory_mib,
            ..Default::default()
        };
        inv.upsert_instance("lab", vm(128));
        inv.upsert_instance("lab", vm(256));
        assert!(changes.has_changed().unwrap());
        assert_eq!(inv.get("lab").unwrap().instances, vec![vm(256)]);
    }
}
