//! InstanceApplication: a user's request for a VM, the admins' decision, and its progress.

use super::cluster::NicMode;
use super::common::{Conditions, Subject, conditions_schema, positive_bytes_rule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request for a virtual machine.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "InstanceApplication",
    plural = "instanceapplications",
    shortname = "ia",
    shortname = "vmapp",
    category = "ganeti",
    namespaced,
    status = "InstanceApplicationStatus",
    doc = "A request for a virtual machine on a Ganeti cluster. Admins (or policy) approve or reject it; once approved the operator creates the instance and reports its progress in status.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode", priority = 1),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".status.cluster"),
    printcolumn(name = "Instance", type_ = "string", json_path = ".status.instanceName"),
    printcolumn(
        name = "UUID",
        type_ = "string",
        json_path = ".status.instanceUUID",
        priority = 1
    ),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.applicant) == has(oldSelf.applicant) && (!has(self.applicant) || self.applicant == oldSelf.applicant)")
    .message("applicant cannot change after the application is filed").field_path(".applicant"))]
#[x_kube(validation = Rule::new("(has(self.mode) && self.mode == 'Adopt') || (has(self.hostname) && has(self.vcpus) && has(self.memory) && has(self.disks))")
    .message("a VM to create (mode Create) needs hostname, vcpus, memory and disks"))]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'Adopt' || (has(self.cluster) && has(self.instance))")
    .message("adopting (mode Adopt) needs spec.cluster and spec.instance: the existing instance and the cluster it is on"))]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'Adopt' || !(has(self.hostname) || has(self.vcpus) || has(self.memory) || has(self.disks) || has(self.os) || has(self.network) || has(self.sshKeys))")
    .message("in mode Adopt the VM exists already: leave out hostname, vcpus, memory, disks, os, network and sshKeys (they only describe a VM to create)"))]
#[x_kube(validation = Rule::new("(has(self.mode) && self.mode == 'Adopt') || !has(self.instance)")
    .message("spec.instance names an existing VM to adopt: set mode: Adopt, or leave it out to create a VM"))]
#[serde(rename_all = "camelCase")]
pub struct InstanceApplicationSpec {
    /// `Create` (the default) asks for a new VM; `Adopt` asks for an owner for an
    /// existing VM that has none (`spec.instance`). Cannot change after the application
    /// is filed.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("mode cannot change after the application is filed; file a new application"))]
    pub mode: Mode,

    /// Mode `Adopt`: the name of the existing Ganeti instance on `spec.cluster` to be
    /// owned. It is resolved to its Ganeti UUID at the approval (`status.instanceUUID`),
    /// and adopted only if that VM still has no owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(format!("self.matches(r'{}')", super::common::DNS_SUBDOMAIN_PATTERN))
        .message("instance must be a Ganeti instance name as `gnt-instance list` shows it: lowercase letters, digits, '-' and dots, e.g. db1.example.org"))]
    pub instance: Option<String>,

    /// GanetiCluster to create the VM on (mode `Create`: may be left empty for an admin
    /// to choose), or that the instance to adopt is on (mode `Adopt`: required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster: Option<String>,

    // The create-only fields below are required in mode Create and absent in mode Adopt
    // (the rules above); in Rust an absent one reads as empty, so the Adopt paths never
    // read them.
    /// The VM's fully qualified host name (RFC 1123: lowercase labels of at most 63
    /// characters); it becomes the Ganeti instance name. Mode `Create` only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = super::common::hostname_rule())]
    pub hostname: String,

    /// Virtual CPUs, 1 to 256. Mode `Create` only.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 256))]
    pub vcpus: u32,

    /// Memory, as a Kubernetes quantity such as `2Gi`; at most 4Ti. Mode `Create` only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = positive_bytes_rule("memory", "4Ti"))]
    pub memory: String,

    /// Disks, 1 to 16 (ignored on clusters whose disk template is `diskless`). Mode
    /// `Create` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16))]
    pub disks: Vec<DiskRequest>,

    /// OS definition with variant, e.g. `debootstrap+bookworm`. Absent: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub os: Option<String>,

    /// Network settings for the first NIC. Absent: the cluster defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRequest>,

    /// SSH public keys to install in the VM, in addition to the owner's UserProfile keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 16, max = 16384)))]
    #[x_kube(validation = super::common::no_private_keys_rule())]
    #[x_kube(validation = super::common::ssh_public_keys_rule())]
    pub ssh_keys: Vec<String>,

    /// Who will own the VM: the applicant (`User`) or one of the applicant's groups
    /// (`Group`). Cannot change after the application is filed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("owner cannot change after the application is filed; file a new application"))]
    pub owner: Subject,

    /// The user who filed the application. Recorded by admission from the
    /// authenticated requester; cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub applicant: Option<String>,

    /// How to reach the applicant about this VM (email address or phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub contact: Option<String>,

    /// What the VM is for; admins read this when deciding.
    #[schemars(length(min = 1, max = 2048))]
    pub purpose: String,

    /// The admins' decision. Only admins may set or change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What an application asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Mode {
    /// A new VM, created from the spec.
    #[default]
    Create,
    /// An owner for an existing VM that has none (`spec.instance`): only an admin's
    /// approval carries it out, never `clusters.createVm`.
    Adopt,
}

impl InstanceApplicationSpec {
    /// Whether the application adopts an existing VM rather than creating one.
    pub fn adopts(&self) -> bool {
        self.mode == Mode::Adopt
    }
}

/// One disk of a requested VM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskRequest {
    /// Size as a Kubernetes quantity such as `20Gi`; at most 64Ti.
    #[schemars(length(max = 32))]
    #[x_kube(validation = positive_bytes_rule("disk size", "64Ti"))]
    pub size: String,
}

/// Network settings of a requested VM's NIC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRequest {
    /// Ganeti network to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub name: Option<String>,
    /// NIC mode, when not attaching to a Ganeti network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NicMode>,
    /// NIC link (bridge, routing table or switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub link: Option<String>,
    /// IPv4 address, or `pool` to take one from the Ganeti network's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(r"^(pool|([0-9]{1,3}\.){3}[0-9]{1,3})$"))]
    pub ip: Option<String>,
}

/// An admin's decision on an application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.verdict != 'Rejected' || (has(self.reason) && self.reason.trim().size() > 0)")
    .message("a rejection needs a reason the applicant can read").field_path(".reason"))]
pub struct Decision {
    /// `Approved` or `Rejected`.
    pub verdict: Verdict,
    /// Why; required when rejecting, shown to the applicant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub reason: Option<String>,
    /// The admin who decided. Recorded by admission from the authenticated requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub decided_by: Option<String>,
}

/// The outcome of a decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    Approved,
    Rejected,
}

/// Where an application is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Waiting for a decision (or for quota).
    #[default]
    Pending,
    /// Approved; the create job (mode `Adopt`: the owner tag job) is about to be
    /// submitted.
    Approved,
    /// The create job (mode `Adopt`: the job writing the owner tag) runs in Ganeti.
    Creating,
    /// The VM exists (mode `Adopt`: and carries the owner's tag).
    Created,
    /// An admin rejected it.
    Rejected,
    /// Ganeti refused or failed to create it (mode `Adopt`: the VM could not be adopted,
    /// e.g. it has an owner). A new application tries again (or an admin edits this one
    /// and decides again).
    Failed,
}

impl Phase {
    /// Every phase, in the order an application goes through them.
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Approved,
        Phase::Creating,
        Phase::Created,
        Phase::Rejected,
        Phase::Failed,
    ];
}

/// Progress of an application.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceApplicationStatus {
    /// Where the application is.
    #[serde(default)]
    pub phase: Phase,
    /// `Decided`, `QuotaAvailable`, `InstanceCreated` and the like.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The GanetiCluster the VM is (to be) created on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The decision the operator acted on, and the spec generation it was made on: a
    /// decision counts only for that spec. Changing the spec afterwards needs a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<DecisionRecord>,
    /// The spec generation that was approved: the VM is created from it and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_generation: Option<i64>,
    /// The Ganeti job that creates the VM (mode `Adopt`: that writes its owner tag),
    /// recorded before anything waits on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    /// The Ganeti instance name: the approved hostname (mode `Adopt`: the instance
    /// named), then the name of the instance that this application's own job made (or
    /// tagged) as it was when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Ganeti's UUID of the instance this application's own create job made (mode
    /// `Adopt`: of the instance approved for adoption, resolved at the approval): what
    /// the VM is, whatever it is renamed to later.
    #[serde(default, rename = "instanceUUID", skip_serializing_if = "Option::is_none")]
    pub instance_uuid: Option<String>,
    /// The instance's primary node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_node: Option<String>,
    /// The instance's IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Result of the last quota check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaCheck>,
    /// Ganeti's error, when creation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ganeti_error: Option<GanetiError>,
    /// When the VM was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<Time>,
}

/// A decision as the operator first saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The spec generation the decision was first seen on.
    pub generation: i64,
    /// The decision.
    pub decision: Decision,
}

/// The outcome of checking an application against the cluster's quotas.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaCheck {
    /// Whether the application fits.
    pub fits: bool,
    /// Which limit it exceeds, or what it leaves free.
    pub message: String,
}

/// An error reported by Ganeti.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GanetiError {
    /// Ganeti's message.
    pub message: String,
    /// Ganeti's error code (`ecode`), e.g. `resolver_error` or `already_exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl InstanceApplication {
    /// `namespace/name`: how applications are named in messages, logs, mails and Ganeti
    /// job reasons, and compared with one another.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

#[cfg(test)]
impl InstanceApplication {
    /// A small application of alice's on `cluster`, filed at `filed`, for tests.
    pub fn for_tests(cluster: Option<&str>, filed: k8s_openapi::jiff::Timestamp) -> Self {
        let mut a = Self::new(
            "a",
            InstanceApplicationSpec {
                mode: Mode::Create,
                instance: None,
                cluster: cluster.map(Into::into),
                hostname: "vm.example.org".into(),
                vcpus: 1,
                memory: "1Gi".into(),
                disks: vec![DiskRequest { size: "1Gi".into() }],
                os: None,
                network: None,
                ssh_keys: vec![],
                owner: crate::api::Subject::user("alice"),
                applicant: None,
                contact: None,
                purpose: "tests".into(),
                decision: None,
            },
        );
        a.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(filed));
        a
    }
}
