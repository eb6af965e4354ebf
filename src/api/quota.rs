//! ClusterQuota: limits on what a subject (or everyone) may hold on one cluster.

use super::common::{Conditions, Subject, conditions_schema, non_negative_bytes_rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Limits on one GanetiCluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "ClusterQuota",
    plural = "clusterquotas",
    shortname = "gquota",
    category = "ganeti",
    status = "ClusterQuotaStatus",
    doc = "Limits (instances, vCPUs, memory, disk) on one GanetiCluster: the default for everyone when no subject is given, or an override for one user or group. An absent limit means unlimited.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject.name"),
    printcolumn(name = "Used", type_ = "string", json_path = ".status.used"),
    printcolumn(name = "Limit", type_ = "string", json_path = ".status.limit"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    // This object's own limits, as written: in `-o wide` (Limit above is what applies).
    printcolumn(name = "Instances", type_ = "integer", json_path = ".spec.limits.instances", priority = "1"),
    printcolumn(name = "VCPUs", type_ = "integer", json_path = ".spec.limits.vcpus", priority = "1"),
    printcolumn(name = "Memory", type_ = "string", json_path = ".spec.limits.memory", priority = "1"),
    printcolumn(name = "Disk", type_ = "string", json_path = ".spec.limits.disk", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.subject) == has(oldSelf.subject) && (!has(self.subject) || self.subject == oldSelf.subject)")
    .message("subject cannot change; create another ClusterQuota for another subject").field_path(".subject"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterQuotaSpec {
    /// The GanetiCluster the limits apply to. Cannot change.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change; create another ClusterQuota for another cluster"))]
    pub cluster: String,
    /// The user or group the limits apply to. Absent: the default for every subject
    /// without an override of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The limits; each absent one is unlimited (or, in an override, taken from the default).
    pub limits: QuotaLimits,
}

/// Resource limits. An absent limit is unlimited.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaLimits {
    /// Maximum number of instances, running or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub instances: Option<u32>,
    /// Maximum total virtual CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000000))]
    pub vcpus: Option<u32>,
    /// Maximum total memory, as a quantity such as `64Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = non_negative_bytes_rule("memory limit"))]
    pub memory: Option<String>,
    /// Maximum total disk, as a quantity such as `2Ti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = non_negative_bytes_rule("disk limit"))]
    pub disk: Option<String>,
}

/// Usage per subject.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterQuotaStatus {
    /// `Ready` (usage computed), `ClusterFound`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the subjects use, in short (the `Used` column): for an override its
    /// subject's usage; for a default the number of subjects and their total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// The limits in force, in short (the `Limit` column): for an override, its
    /// subject's (limits it leaves out come from the default); for a default, those of
    /// each subject without an override (the smallest of all defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Usage of each subject this quota governs (at most 1000, sorted by subject).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<SubjectUsage>,
}

/// What one subject uses on the cluster, counting approved applications not yet created.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectUsage {
    /// The user or group.
    pub subject: Subject,
    /// Instances, running or not, plus approved applications.
    pub instances: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, as a quantity.
    pub memory: String,
    /// Disk, as a quantity.
    pub disk: String,
    /// Of the above, how many instances are approved applications not yet created.
    #[serde(default)]
    pub pending_instances: u32,
}
