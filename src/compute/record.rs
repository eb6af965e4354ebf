//! The catalog's form of a GanetiInstance: the VM's facts alone, strings shared, no
//! `ObjectMeta`. The object is rendered from it when served ([`InstanceRecord::render`]).
//!
//! The catalog holds one object per VM of every cluster (100k for 50 clusters of 2k):
//! as a full `GanetiInstance` that was some 1.8 KB each, mostly `ObjectMeta` (a struct
//! of many options), a label map and copies of strings many VMs share (cluster, nodes,
//! OS, state). Here those are one `Arc<str>` each and the labels are derived.

use super::objects::{
    ApplicationRef, Applications, GanetiInstance, GanetiInstanceSpec, GanetiInstanceStatus,
};
use super::objects::{RunStrategy, instance_labels, instance_tag_facts, time_of};
use super::{GROUP_VERSION, object_name};
use crate::api::common::{Subject, SubjectKind};
use crate::inventory::{ClusterInventory, Instance};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// One copy of each string many records share. Pruned of the strings no record holds
/// any more once it has doubled since the last prune, so it follows the inventory.
#[derive(Default)]
pub struct Interner {
    set: HashSet<Arc<str>>,
    pruned_at: usize,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.set.insert(shared.clone());
        shared
    }

    pub fn prune(&mut self) {
        if self.set.len() > 2 * self.pruned_at.max(1024) {
            self.set.retain(|s| Arc::strong_count(s) > 1);
            self.pruned_at = self.set.len();
        }
    }
}

/// A VM as the catalog keeps it; see the module's comment.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    /// 0 until the store gives it one (its revisions start at 1).
    resource_version: u64,
    pub(super) f: Fields,
    /// What a Table row of it writes, made at the first listing after each change: a
    /// listing of 10k VMs then copies bytes instead of serialising every object.
    pub(super) rendered: OnceLock<Box<super::record_row::Rendered>>,
}

/// Everything the object shows but its resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fields {
    /// The object name, `<cluster>.<lowercased Ganeti name>`.
    pub(super) name: Box<str>,
    pub(super) cluster: Arc<str>,
    pub(super) instance_name: Box<str>,
    pub(super) uuid: Box<str>,
    pub(super) created: Option<Time>,
    pub(super) admin_up: bool,
    pub(super) running: bool,
    pub(super) locked: bool,
    pub(super) isolated: bool,
    pub(super) fresh: bool,
    pub(super) state: Arc<str>,
    pub(super) primary_node: Arc<str>,
    pub(super) secondary_nodes: Box<[Arc<str>]>,
    pub(super) ips: Box<[Box<str>]>,
    pub(super) macs: Box<[Box<str>]>,
    pub(super) vcpus: u32,
    pub(super) memory_mib: u64,
    pub(super) disk_mib: u64,
    pub(super) disk_template: Arc<str>,
    pub(super) os: Arc<str>,
    pub(super) hypervisor: Arc<str>,
    /// Interned: permission tags name groups many VMs share.
    pub(super) tags: Box<[Arc<str>]>,
    pub(super) owner: Option<(SubjectKind, Arc<str>)>,
    pub(super) application: Option<Box<ApplicationRef>>,
}

fn boxed(strings: &[String]) -> Box<[Box<str>]> {
    strings.iter().map(|s| s.as_str().into()).collect()
}

impl InstanceRecord {
    /// The record of `instance` of `inventory`: what
    /// `GanetiInstance::from_inventory(..).made_by(applications)` shows.
    pub fn new(
        inventory: &ClusterInventory,
        instance: &Instance,
        applications: &Applications,
        strings: &mut Interner,
    ) -> Self {
        let (locked, isolated, owner) = instance_tag_facts(inventory, instance);
        let mut intern = |s: &str| strings.intern(s);
        let f = Fields {
            name: object_name(&inventory.cluster, &instance.name).into(),
            cluster: intern(&inventory.cluster),
            instance_name: instance.name.as_str().into(),
            uuid: instance.uuid.as_str().into(),
            created: instance.ctime.and_then(time_of),
            admin_up: instance.admin_up,
            running: instance.running,
            locked,
            isolated,
            fresh: inventory.reachable,
            state: intern(&instance.status),
            primary_node: intern(&instance.primary_node),
            secondary_nodes: instance.secondary_nodes.iter().map(|n| intern(n)).collect(),
            ips: boxed(&instance.ips),
            macs: boxed(&instance.macs),
            vcpus: instance.vcpus,
            memory_mib: instance.memory_mib,
            disk_mib: instance.disk_mib,
            disk_template: intern(&instance.disk_template),
            os: intern(&instance.os),
            hypervisor: intern(&instance.hypervisor),
            tags: instance.tags.iter().map(|t| intern(t)).collect(),
            owner: owner.map(|s| (s.kind, intern(&s.name))),
            application: applications.get(&instance.uuid).cloned().map(Box::new),
        };
        Self {
            resource_version: 0,
            f,
            rendered: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.f.name
    }

    pub fn cluster(&self) -> &str {
        &self.f.cluster
    }

    /// Ganeti's instance name.
    pub fn instance_name(&self) -> &str {
        &self.f.instance_name
    }

    pub fn primary_node(&self) -> &str {
        &self.f.primary_node
    }

    pub fn state(&self) -> &str {
        &self.f.state
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub(super) fn set_resource_version(&mut self, revision: u64) {
        self.resource_version = revision;
        // The rendered row holds the old version.
        self.rendered = OnceLock::new();
    }

    fn owner(&self) -> Option<Subject> {
        let (kind, name) = self.f.owner.as_ref()?;
        Some(Subject {
            kind: *kind,
            name: name.to_string(),
        })
    }

    pub fn label_map(&self) -> std::collections::BTreeMap<String, String> {
        instance_labels(&self.f.cluster, self.owner().as_ref(), &self.f.primary_node)
    }

    pub fn object_meta(&self) -> ObjectMeta {
        let f = &self.f;
        ObjectMeta {
            name: Some(f.name.to_string()),
            uid: (!f.uuid.is_empty()).then(|| f.uuid.to_string()),
            labels: Some(self.label_map()),
            creation_timestamp: f.created.clone(),
            resource_version: (self.resource_version != 0).then(|| self.resource_version.to_string()),
            ..Default::default()
        }
    }

    /// The object as the API serves it.
    pub fn render(&self) -> GanetiInstance {
        let f = &self.f;
        let notes = super::objects::GanetimgrNotes::of(&f.tags);
        let strings = |v: &[Box<str>]| v.iter().map(|s| s.to_string()).collect();
        GanetiInstance {
            api_version: GROUP_VERSION.to_string(),
            kind: GanetiInstance::KIND.to_string(),
            metadata: self.object_meta(),
            spec: GanetiInstanceSpec {
                cluster: f.cluster.to_string(),
                run_strategy: if f.admin_up {
                    RunStrategy::Always
                } else {
                    RunStrategy::Halted
                },
                locked: f.locked,
                isolated: f.isolated,
            },
            status: GanetiInstanceStatus {
                instance_name: f.instance_name.to_string(),
                uuid: f.uuid.to_string(),
                state: f.state.to_string(),
                running: f.running,
                admin_state: if f.admin_up { "up" } else { "down" }.into(),
                primary_node: f.primary_node.to_string(),
                secondary_nodes: f.secondary_nodes.iter().map(|s| s.to_string()).collect(),
                ips: strings(&f.ips),
                macs: strings(&f.macs),
                vcpus: f.vcpus,
                memory_mib: f.memory_mib,
                disk_mib: f.disk_mib,
                disk_template: f.disk_template.to_string(),
                os: f.os.to_string(),
                hypervisor: f.hypervisor.to_string(),
                tags: f.tags.iter().map(|s| s.to_string()).collect(),
                owner: self.owner(),
                locked: f.locked,
                isolated: f.isolated,
                needs_reboot: notes.needs_reboot,
                allowed_from: notes.allowed_from,
                application: f.application.as_deref().cloned(),
                fresh: f.fresh,
            },
        }
    }
}

impl serde::Serialize for InstanceRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.render().serialize(s)
    }
}

impl super::catalog::Object for InstanceRecord {
    fn name(&self) -> &str {
        &self.f.name
    }
    fn set_resource_version(&mut self, revision: u64) {
        InstanceRecord::set_resource_version(self, revision);
    }
    fn same(&self, other: &Self) -> bool {
        self.f == other.f
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
