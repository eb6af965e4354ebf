//! The objects of `compute.ganeti.dev`: Ganeti instances and nodes as Kubernetes
//! objects, built from one cluster inventory. Pure: no IO, no clock.

use super::{
    GROUP_VERSION, LABEL_CLUSTER, LABEL_OWNER_GROUP, LABEL_OWNER_USER, LABEL_PRIMARY_NODE, object_name,
};
use crate::api::common::{Subject, SubjectKind};
use crate::inventory::{ClusterInventory, Instance, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether the VM should run: Ganeti's admin state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.RunStrategy")]
pub enum RunStrategy {
    /// Admin state up: Ganeti keeps it running (the watcher restarts it).
    #[default]
    Always,
    /// Admin state down: shut down and kept down.
    Halted,
}

/// A Ganeti instance of a GanetiCluster, live from the operator's inventory. Ganeti is
/// the store: nothing of it is kept in etcd.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiInstance")]
pub struct GanetiInstance {
    pub api_version: String,
    pub kind: String,
    /// `name` is `<GanetiCluster>.<Ganeti instance name>`; `uid` is Ganeti's instance UUID.
    pub metadata: ObjectMeta,
    pub spec: GanetiInstanceSpec,
    pub status: GanetiInstanceStatus,
}

/// What can be declared of a VM. A patch submits the Ganeti jobs that make it so.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiInstanceSpec")]
pub struct GanetiInstanceSpec {
    /// The GanetiCluster the VM runs on. Cannot change.
    pub cluster: String,
    /// `Always`: admin state up (a patch to it starts the VM). `Halted`: admin state
    /// down (a patch to it shuts the VM down). Needs `vms.startup` / `vms.shutdown`.
    pub run_strategy: RunStrategy,
    /// Admin lock (ganetimgr's `adminlock` tag): while set, only VM admins may act on
    /// the VM. Needs `vms.lock`.
    pub locked: bool,
    /// Network isolation (ganetimgr's `isolate` tag): the nodes' network hooks cut the
    /// VM off when it starts or migrates; setting it migrates a running VM so they
    /// apply at once. Needs `vms.isolate`.
    pub isolated: bool,
}

/// The VM as Ganeti reports it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiInstanceStatus")]
pub struct GanetiInstanceStatus {
    /// Ganeti's instance name (a label that can be renamed and reused).
    pub instance_name: String,
    /// Ganeti's instance UUID: what the VM is.
    pub uuid: String,
    /// Ganeti's status: running, ADMIN_down, ERROR_down, ERROR_up, ERROR_nodedown, ...
    pub state: String,
    /// Whether the VM actually runs.
    pub running: bool,
    /// Ganeti's admin state: `up` or `down`.
    pub admin_state: String,
    pub primary_node: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Sum of the disk sizes, in MiB.
    #[serde(rename = "diskMiB")]
    pub disk_mib: u64,
    pub disk_template: String,
    pub os: String,
    pub hypervisor: String,
    /// Every Ganeti tag of the VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The owner, from the owner tag (the operator's or ganetimgr's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Subject>,
    /// Whether the admin lock tag is set.
    pub locked: bool,
    /// Whether the isolation tag is set.
    pub isolated: bool,
    /// A change made through ganetimgr (NIC, disk type, boot device, CD-ROM) applies at
    /// the VM's next reboot: ganetimgr's `needsreboot` tag is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_reboot: bool,
    /// Networks an isolated VM stays reachable from: ganetimgr's `whitelist_ip` tags
    /// (its "Allowed From"), as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_from: Vec<String>,
    /// The InstanceApplication that made the VM (matched by Ganeti UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationRef>,
    /// False when the operator's last read of the cluster failed: this is older data.
    pub fresh: bool,
}

/// An InstanceApplication, by namespace and name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.ApplicationRef")]
pub struct ApplicationRef {
    pub namespace: String,
    pub name: String,
}

/// The applications that made VMs, by the VM's Ganeti UUID.
pub type Applications = std::collections::HashMap<String, ApplicationRef>;

impl GanetiInstance {
    /// Names the application that made the VM, if one did.
    pub fn made_by(mut self, applications: &Applications) -> Self {
        self.status.application = applications.get(&self.status.uuid).cloned();
        self
    }

    pub const KIND: &str = "GanetiInstance";
    pub const PLURAL: &str = "ganetiinstances";

    /// The object of `instance` of `inventory`, without a resourceVersion. Lock and
    /// isolation come from the instance's tags, as the authorization engine reads them.
    pub fn from_inventory(inventory: &ClusterInventory, instance: &Instance) -> Self {
        let (locked, isolated, owner) = instance_tag_facts(inventory, instance);
        let ganetimgr = GanetimgrNotes::of(&instance.tags);
        let cluster = &inventory.cluster;
        let labels = instance_labels(cluster, owner.as_ref(), &instance.primary_node);
        Self {
            api_version: GROUP_VERSION.to_string(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(object_name(cluster, &instance.name)),
                uid: (!instance.uuid.is_empty()).then(|| instance.uuid.clone()),
                labels: Some(labels),
                creation_timestamp: instance.ctime.and_then(time_of),
                ..Default::default()
            },
            spec: GanetiInstanceSpec {
                cluster: cluster.clone(),
                run_strategy: if instance.admin_up {
                    RunStrategy::Always
                } else {
                    RunStrategy::Halted
                },
                locked,
                isolated,
            },
            status: GanetiInstanceStatus {
                instance_name: instance.name.clone(),
                uuid: instance.uuid.clone(),
                state: instance.status.clone(),
                running: instance.running,
                admin_state: if instance.admin_up { "up" } else { "down" }.into(),
                primary_node: instance.primary_node.clone(),
                secondary_nodes: instance.secondary_nodes.clone(),
                ips: instance.ips.clone(),
                macs: instance.macs.clone(),
                vcpus: instance.vcpus,
                memory_mib: instance.memory_mib,
                disk_mib: instance.disk_mib,
                disk_template: instance.disk_template.clone(),
                os: instance.os.clone(),
                hypervisor: instance.hypervisor.clone(),
                tags: instance.tags.clone(),
                owner,
                locked,
                isolated,
                needs_reboot: ganetimgr.needs_reboot,
                allowed_from: ganetimgr.allowed_from,
                application: None,
                fresh: inventory.reachable,
            },
        }
    }
}

/// Lock, isolation and owner of an instance, from its tags as the authorization engine
/// reads them.
pub(super) fn instance_tag_facts(
    inventory: &ClusterInventory,
    instance: &Instance,
) -> (bool, bool, Option<Subject>) {
    use crate::tags::ParsedTag;
    let (mut locked, mut isolated) = (false, false);
    let reader = inventory.reader();
    for tag in &instance.tags {
        match reader.parse(tag) {
            Some(ParsedTag::AdminLock) => locked = true,
            Some(ParsedTag::Isolate) => isolated = true,
            _ => {}
        }
    }
    (locked, isolated, inventory.owner_of(instance))
}

/// What ganetimgr's tags tell the VM's user, shown and never acted on.
#[derive(Debug, Default, PartialEq)]
pub(super) struct GanetimgrNotes {
    pub(super) needs_reboot: bool,
    pub(super) allowed_from: Vec<String>,
}

impl GanetimgrNotes {
    /// From the tags alone (no prefix: ganetimgr's are fixed), so the catalog's compact
    /// record derives them from the tags it keeps anyway.
    pub(super) fn of<S: AsRef<str>>(tags: &[S]) -> Self {
        use crate::tags::{DEFAULT_PREFIX, ParsedTag, parse};
        let mut notes = Self::default();
        for tag in tags {
            match parse(tag.as_ref(), DEFAULT_PREFIX) {
                Some(ParsedTag::NeedsReboot) => notes.needs_reboot = true,
                Some(ParsedTag::WhitelistIp(cidr)) => notes.allowed_from.push(cidr),
                _ => {}
            }
        }
        notes
    }
}

/// The labels of an instance's object: its cluster, owner and primary node (those that
/// are label values).
pub(super) fn instance_labels(
    cluster: &str,
    owner: Option<&Subject>,
    primary_node: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_CLUSTER.to_string(), cluster.to_string());
    if let Some(owner) = owner {
        let key = match owner.kind {
            SubjectKind::User => LABEL_OWNER_USER,
            SubjectKind::Group => LABEL_OWNER_GROUP,
        };
        if is_label_value(&owner.name) {
            labels.insert(key.to_string(), owner.name.clone());
        }
    }
    let node = short_host(primary_node);
    if is_label_value(node) {
        labels.insert(LABEL_PRIMARY_NODE.to_string(), node.to_string());
    }
    labels
}

/// A Ganeti node. Visible with `system.nodes`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiNode")]
pub struct GanetiNode {
    pub api_version: String,
    pub kind: String,
    /// `name` is `<GanetiCluster>.<Ganeti node name>`.
    pub metadata: ObjectMeta,
    pub spec: GanetiNodeSpec,
    pub status: GanetiNodeStatus,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiNodeSpec")]
pub struct GanetiNodeSpec {
    /// The GanetiCluster the node belongs to.
    pub cluster: String,
}

/// The node as Ganeti reports it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiNodeStatus")]
pub struct GanetiNodeStatus {
    /// Ganeti's node name.
    pub node_name: String,
    /// master, candidate, regular, drained or offline.
    pub role: String,
    pub offline: bool,
    pub drained: bool,
    pub cpus: u32,
    #[serde(rename = "memoryTotalMiB")]
    pub memory_total_mib: u64,
    #[serde(rename = "memoryFreeMiB")]
    pub memory_free_mib: u64,
    #[serde(rename = "diskTotalMiB")]
    pub disk_total_mib: u64,
    #[serde(rename = "diskFreeMiB")]
    pub disk_free_mib: u64,
    /// Instances whose primary node this is.
    pub primary_instances: u32,
    /// Instances whose secondary (DRBD) node this is.
    pub secondary_instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// False when the operator's last read of the cluster failed.
    pub fresh: bool,
}

impl GanetiNode {
    pub const KIND: &str = "GanetiNode";
    pub const PLURAL: &str = "ganetinodes";

    pub fn from_inventory(inventory: &ClusterInventory, node: &Node) -> Self {
        let cluster = &inventory.cluster;
        let labels = BTreeMap::from([
            (LABEL_CLUSTER.to_string(), cluster.clone()),
            (super::LABEL_ROLE.to_string(), node.role.as_str().to_string()),
        ]);
        Self {
            api_version: GROUP_VERSION.to_string(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(object_name(cluster, &node.name)),
                labels: Some(labels),
                ..Default::default()
            },
            spec: GanetiNodeSpec {
                cluster: cluster.clone(),
            },
            status: GanetiNodeStatus {
                node_name: node.name.clone(),
                role: node.role.as_str().to_string(),
                offline: node.offline,
                drained: node.drained,
                cpus: node.cpus,
                memory_total_mib: node.memory_total_mib,
                memory_free_mib: node.memory_free_mib,
                disk_total_mib: node.disk_total_mib,
                disk_free_mib: node.disk_free_mib,
                primary_instances: node.primary_instances,
                secondary_instances: node.secondary_instances,
                primary_ip: node.primary_ip.clone(),
                group: node.group.clone(),
                fresh: inventory.reachable,
            },
        }
    }
}

/// A Ganeti job in a cluster's queue, read from Ganeti when asked for. Visible to the
/// user who submitted it through the operator, and with `system.jobs` all of them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiJob")]
pub struct GanetiJob {
    pub api_version: String,
    pub kind: String,
    /// `name` is `<GanetiCluster>.<job id>`.
    pub metadata: ObjectMeta,
    pub spec: GanetiNodeSpec,
    pub status: GanetiJobStatus,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.ganeti.compute.v1alpha1.GanetiJobStatus")]
pub struct GanetiJobStatus {
    pub id: u64,
    /// queued, waiting, running, canceling, canceled, success or error.
    pub state: String,
    /// One entry per opcode, e.g. `INSTANCE_SHUTDOWN(vm1.example.org)`.
    pub summary: Vec<String>,
    /// Who submitted it, from the job's reason trail (`<action> by <user>` for jobs of
    /// the operator); absent for jobs of Ganeti's command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Time>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl GanetiJob {
    pub const KIND: &str = "GanetiJob";
    pub const PLURAL: &str = "ganetijobs";

    pub fn from_job(cluster: &str, job: &crate::rapi::Job) -> Self {
        let reasons: Vec<&str> = job.user_reasons().collect();
        Self {
            api_version: GROUP_VERSION.to_string(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(format!("{cluster}.{}", job.id)),
                labels: Some(BTreeMap::from([
                    (LABEL_CLUSTER.to_string(), cluster.to_string()),
                    (super::LABEL_STATE.to_string(), job.status.as_str().to_string()),
                ])),
                creation_timestamp: job.received_ts.and_then(time_of),
                ..Default::default()
            },
            spec: GanetiNodeSpec {
                cluster: cluster.to_string(),
            },
            status: GanetiJobStatus {
                id: job.id,
                state: job.status.as_str().to_string(),
                summary: job.summary.clone(),
                submitter: reasons.first().map(|r| r.to_string()),
                received: job.received_ts.and_then(time_of),
                started: job.start_ts.and_then(time_of),
                ended: job.end_ts.and_then(time_of),
                failure: job.failure().map(|f| f.to_string()),
            },
        }
    }
}

/// A Kubernetes label value: at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric
/// at both ends (or empty).
pub fn is_label_value(s: &str) -> bool {
    let bytes = s.as_bytes();
    s.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

/// `node1` of `node1.example.org`: what fits in a label.
fn short_host(name: &str) -> &str {
    if is_label_value(name) {
        name
    } else {
        name.split('.').next().unwrap_or(name)
    }
}

pub(super) fn time_of(seconds: f64) -> Option<Time> {
    let ts = k8s_openapi::jiff::Timestamp::from_second(seconds as i64).ok()?;
    Some(Time(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> ClusterInventory {
        ClusterInventory {
            cluster: "lab".into(),
            tag_prefix: "ganeti-operator.io".into(),
            reachable: true,
            ..Default::default()
        }
    }

    #[test]
    fn an_instance_object_names_its_cluster_owner_and_node() {
        let vm = Instance {
            name: "vm1.example.org".into(),
            uuid: "u-1".into(),
            status: "ADMIN_down".into(),
            primary_node: "node1.example.org".into(),
            tags: vec![
                "ganeti-operator.io:owner:U:alice".into(),
                "ganetimgr:adminlock".into(),
            ],
            ctime: Some(1_700_000_000.0),
            ..Default::default()
        };
        let o = GanetiInstance::from_inventory(&lab(), &vm);
        assert_eq!(o.metadata.name.as_deref(), Some("lab.vm1.example.org"));
        assert_eq!(o.metadata.uid.as_deref(), Some("u-1"));
        let labels = o.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_CLUSTER], "lab");
        assert_eq!(labels[LABEL_OWNER_USER], "alice");
        assert_eq!(labels[LABEL_PRIMARY_NODE], "node1.example.org");
        assert_eq!(o.spec.run_strategy, RunStrategy::Halted);
        assert!(o.spec.locked && o.status.locked);
        assert_eq!(o.status.admin_state, "down");
        assert!(o.metadata.creation_timestamp.is_some());
    }

    #[test]
    fn an_owner_that_is_no_label_value_is_left_out_of_the_labels() {
        let vm = Instance {
            name: "vm1".into(),
            tags: vec!["ganeti-operator.io:owner:U:alice@example.org".into()],
            ..Default::default()
        };
        let o = GanetiInstance::from_inventory(&lab(), &vm);
        assert!(!o.metadata.labels.unwrap().contains_key(LABEL_OWNER_USER));
        assert_eq!(o.status.owner.unwrap().name, "alice@example.org");
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("node1.example.org"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a@b"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
