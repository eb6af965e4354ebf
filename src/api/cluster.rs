//! GanetiCluster: one Ganeti cluster the operator manages, and what it last saw of it.

use super::common::{Conditions, conditions_schema};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Ganeti cluster reached through its Remote API (RAPI).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "GanetiCluster",
    plural = "ganeticlusters",
    shortname = "gcl",
    shortname = "gntcluster",
    category = "ganeti",
    status = "GanetiClusterStatus",
    doc = "A Ganeti cluster reached through its Remote API: where it is, which credentials to use, and the defaults for instances created on it.",
    printcolumn(name = "Version", type_ = "string", json_path = ".status.softwareVersion"),
    printcolumn(name = "Master", type_ = "string", json_path = ".status.master"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodeCount"),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instanceCount"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".status.managementPolicy"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.rapiUrl.startsWith('https://') || (self.rapiUrl.startsWith('http://') && has(self.insecure) && self.insecure)")
    .message("rapiUrl must start with https:// (plain http:// is only accepted with insecure: true, for labs)")
    .field_path(".rapiUrl"))]
#[serde(rename_all = "camelCase")]
pub struct GanetiClusterSpec {
    /// Base URL of the cluster's Remote API, e.g. `https://cluster.example.org:5080`.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("rapiUrl must be a URL such as https://cluster.example.org:5080"))]
    pub rapi_url: String,

    /// The Secret (in the operator's Secret namespace) holding the RAPI user name and
    /// password. It must carry the label `ganeti.dev/credentials: rapi`: the operator
    /// reads no other Secret, so naming one here cannot send it anywhere.
    pub credentials_secret: SecretKeysRef,

    /// PEM CA bundle that signs the RAPI server certificate (Ganeti's own cluster
    /// certificate works too). Absent: the system trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("caBundle must be PEM: one or more -----BEGIN CERTIFICATE----- blocks"))]
    pub ca_bundle: Option<String>,

    /// Permit a plain `http://` URL and skip TLS certificate checks. For labs only:
    /// refused unless the operator runs with `--allow-insecure-rapi`, and the cluster
    /// then reports an `InsecureTransport` warning condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,

    /// How often the operator reads the cluster's nodes, instances and jobs, as a
    /// duration (`30s`, `2m`). Between 5s and 1h; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$') && duration(self) >= duration('5s') && duration(self) <= duration('1h')")
        .message("syncInterval must be a duration such as 30s or 2m, between 5s and 1h"))]
    pub sync_interval: Option<String>,

    /// Prefix of the permission tags the operator writes on instances. Default
    /// `GANETI_WEB_MANAGER`, which Ganeti Web Manager reads too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9.+*/@_-]+$"))]
    pub tag_prefix: Option<String>,

    /// `Manage` (default): the operator writes to Ganeti (permission tags, instances
    /// of approved applications, users' actions). `Observe`: read only: inventory,
    /// status, metrics and view rights, but never a write to Ganeti; tags, creates and
    /// actions are refused with a message saying so. A read-only RAPI user suffices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,

    /// Ganeti Web Manager's numeric user and group ids on this cluster, for a cluster
    /// GWM managed or still manages: GWM's tags name subjects by id
    /// (`GANETI_WEB_MANAGER:admin:U:2`). Absent: such tags grant nothing (and are
    /// counted in `status.gwm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gwm: Option<GwmSpec>,

    /// Settings for instances created on this cluster, where an application does not say.
    #[serde(default)]
    pub defaults: InstanceDefaults,

    /// What InstanceApplications may ask for on this cluster's network besides the
    /// defaults. Absent: only the defaults (an application may still name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<AllowedChoices>,
}

/// How a cluster's Ganeti Web Manager ids are read and written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.writeIds) || !self.writeIds || has(self.idMap)")
    .message("writeIds needs idMap: the ids to write come from it")
    .field_path(".writeIds"))]
pub struct GwmSpec {
    /// A ConfigMap in the operator's namespace, labelled `ganeti.dev/gwm-ids: "true"`,
    /// whose keys `users` and `groups` each hold a YAML mapping of GWM id to Kubernetes
    /// user or group name (`"2": alice`). A GWM tag naming a mapped id grants to that
    /// user or group; an id it does not map grants nothing. A missing, unlabelled or
    /// invalid map maps nothing (the `GwmIdMap` condition says why). Changes take
    /// effect at the cluster's next read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub id_map: Option<String>,
    /// Write the permission tags of RoleBindings in GWM's id form, so GWM shows them:
    /// a subject the map has no id for gets no tag (GWM would fail on a name), and its
    /// RoleBinding reports it. Default false: names, which GWM does not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ids: Option<bool>,
}

/// Whether the operator may write to a cluster (see `managementPolicy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Read and write: tags, instance creation, users' actions.
    #[default]
    Manage,
    /// Read only: never a write to Ganeti.
    Observe,
}

impl GanetiClusterSpec {
    /// The policy in force (`Manage` when unset).
    pub fn management_policy(&self) -> ManagementPolicy {
        self.management_policy.unwrap_or_default()
    }

    /// Whether the operator must never write to this cluster.
    pub fn observed_only(&self) -> bool {
        self.management_policy() == ManagementPolicy::Observe
    }
}

/// Why a write to an observed-only cluster was refused: one wording for the tag sync,
/// applications, the JSON and aggregated APIs.
pub fn observed_only_message(cluster: &str) -> String {
    format!(
        "cluster {cluster} is observed only (managementPolicy: Observe): the operator makes no changes to it in Ganeti"
    )
}

/// Network choices an application may make, whoever approves it: a self-approver cannot
/// put a VM on a VLAN, bridge or address the admins did not offer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedChoices {
    /// Ganeti networks applications may attach to (as well as `defaults.network`). On a
    /// Ganeti network an explicit IP or `pool` is checked by Ganeti: in the network and free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    pub networks: Vec<String>,
    /// NIC modes applications may ask for (as well as `defaults.nicMode`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub nic_modes: Vec<NicMode>,
    /// NIC links (bridges, routing tables, switches) applications may ask for (as well as
    /// `defaults.nicLink`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    pub nic_links: Vec<String>,
    /// IPv4 ranges (CIDR, e.g. `198.51.100.0/24`) an application may take an explicit IP
    /// from on a NIC without a Ganeti network. Ganeti checks nothing there, so the operator
    /// refuses an address an instance it knows of, or another application, already holds.
    /// Absent: an explicit IP needs a Ganeti network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(max = 18), pattern(r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$"))
    )]
    pub ip_ranges: Vec<String>,
}

/// A Secret and the keys in it that hold a user name and a password.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeysRef {
    /// Name of the Secret, in the namespace the operator reads Secrets from.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name in the Secret's data. Default `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key of the password in the Secret's data. Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// Defaults for new instances on a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDefaults {
    /// Ganeti disk template, e.g. `plain`, `drbd`, `rbd`, `file`, `diskless`. Absent: the
    /// first template the cluster enables (Ganeti's own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_template: Option<DiskTemplate>,
    /// OS definition (with variant), e.g. `debootstrap+default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub os: Option<String>,
    /// Hypervisor, e.g. `kvm`. Absent: the cluster's default hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<Hypervisor>,
    /// NIC mode: `bridged`, `routed` or `openvswitch`. Absent: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_mode: Option<NicMode>,
    /// NIC link: the bridge (bridged), routing table (routed) or switch (openvswitch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub nic_link: Option<String>,
    /// Ganeti network to attach NICs to (instead of mode and link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub network: Option<String>,
    /// Instance allocator that picks nodes, e.g. `hail`. Absent: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub iallocator: Option<String>,
    /// Node new VMs are placed on when no `iallocator` is set: for one-node and
    /// otherwise small clusters where an allocator finds no valid placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub primary_node: Option<String>,
    /// Name of the OS parameter that receives the owners' SSH public keys, one per line
    /// (e.g. `ssh_authorized_keys`). Absent: keys are not passed to the OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9_]+$"))]
    pub ssh_keys_os_parameter: Option<String>,
}

/// Ganeti disk templates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskTemplate {
    Diskless,
    File,
    Sharedfile,
    Plain,
    Drbd,
    Rbd,
    Blockdev,
    Ext,
    Gluster,
}

impl DiskTemplate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Diskless => "diskless",
            Self::File => "file",
            Self::Sharedfile => "sharedfile",
            Self::Plain => "plain",
            Self::Drbd => "drbd",
            Self::Rbd => "rbd",
            Self::Blockdev => "blockdev",
            Self::Ext => "ext",
            Self::Gluster => "gluster",
        }
    }
}

/// Ganeti hypervisors.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Hypervisor {
    #[serde(rename = "kvm")]
    Kvm,
    #[serde(rename = "xen-pvm")]
    XenPvm,
    #[serde(rename = "xen-hvm")]
    XenHvm,
    #[serde(rename = "lxc")]
    Lxc,
    #[serde(rename = "chroot")]
    Chroot,
    #[serde(rename = "fake")]
    Fake,
}

impl Hypervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::XenPvm => "xen-pvm",
            Self::XenHvm => "xen-hvm",
            Self::Lxc => "lxc",
            Self::Chroot => "chroot",
            Self::Fake => "fake",
        }
    }
}

/// How an instance's NIC connects.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NicMode {
    Bridged,
    Routed,
    Openvswitch,
}

impl NicMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridged => "bridged",
            Self::Routed => "routed",
            Self::Openvswitch => "openvswitch",
        }
    }
}

/// What the operator last saw of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GanetiClusterStatus {
    /// `Reachable` (RAPI answered with valid credentials), `Ready` (reachable, supported
    /// version, inventory current), `InsecureTransport` (TLS checks are off),
    /// `GwmIdMap` (the GWM id map is in force, or why not).
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The management policy in force: `Observe` means nothing is written to Ganeti.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,
    /// The cluster's name in Ganeti.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Ganeti software version, e.g. `3.0.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// The master node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Enabled hypervisors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervisors: Vec<String>,
    /// Number of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u32>,
    /// Number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    /// Totals over all nodes that are neither offline nor drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ClusterCapacity>,
    /// Every node, with its role and resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
    /// Instance counts by Ganeti status (`running`, `ADMIN_down`, `ERROR_down`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances_by_status: BTreeMap<String, u32>,
    /// Job counts by status (`queued`, `running`, `success`, `error`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jobs_by_status: BTreeMap<String, u32>,
    /// When the last complete read of the cluster finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Ganeti Web Manager ids: what the id map maps, and how many tags name ids it does
    /// not (those grant nothing). Absent while neither exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gwm: Option<GwmStatus>,
}

/// What a cluster's GWM id map does, as of its last read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GwmStatus {
    /// The ConfigMap in force (`spec.gwm.idMap`, when usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_map: Option<String>,
    /// GWM user ids mapped.
    pub mapped_users: u32,
    /// GWM group ids mapped.
    pub mapped_groups: u32,
    /// Tags on the cluster's instances that name a GWM id the map does not map.
    pub unmapped_id_tags: u32,
}

/// Resource totals of a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCapacity {
    /// Physical memory, in bytes.
    pub memory_total_bytes: u64,
    /// Free memory, in bytes.
    pub memory_free_bytes: u64,
    /// Disk space for instances, in bytes.
    pub disk_total_bytes: u64,
    /// Free disk space, in bytes.
    pub disk_free_bytes: u64,
    /// Physical CPUs.
    pub cpus: u32,
}

/// One Ganeti node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// `master`, `candidate`, `regular`, `drained` or `offline`.
    pub role: String,
    /// Physical memory, in bytes.
    #[serde(default)]
    pub memory_total_bytes: u64,
    /// Free memory, in bytes.
    #[serde(default)]
    pub memory_free_bytes: u64,
    /// Disk space, in bytes.
    #[serde(default)]
    pub disk_total_bytes: u64,
    /// Free disk space, in bytes.
    #[serde(default)]
    pub disk_free_bytes: u64,
    /// Physical CPUs.
    #[serde(default)]
    pub cpus: u32,
    /// Instances with this node as primary.
    #[serde(default)]
    pub primary_instances: u32,
    /// Instances with this node as secondary.
    #[serde(default)]
    pub secondary_instances: u32,
}
