//! RoleBinding: subjects bound to a Role, optionally narrowed to clusters or instances.

use super::common::{Conditions, InstanceRef, Subject, conditions_schema};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Users and groups bound to a role.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "RoleBinding",
    plural = "rolebindings",
    shortname = "grb",
    category = "ganeti",
    status = "RoleBindingStatus",
    doc = "Binds users and groups to a Role, optionally narrowed to some clusters or instances. The operator writes the Ganeti permission tags the binding implies.",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleRef"),
    printcolumn(name = "Subjects", type_ = "integer", json_path = ".status.subjectCount"),
    printcolumn(name = "Tags", type_ = "integer", json_path = ".status.tagCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingSpec {
    /// Name of the Role granted.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("roleRef cannot change; create a new binding for another role"))]
    pub role_ref: String,
    /// The users and groups who hold the role; at least one.
    #[schemars(length(min = 1, max = 1024))]
    pub subjects: Vec<Subject>,
    /// Narrow the binding to these GanetiClusters (and their VMs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub clusters: Vec<String>,
    /// Narrow the binding to these instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub instances: Vec<InstanceRef>,
}

/// What a binding resolved to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingStatus {
    /// `Ready` (tags in sync), `RoleFound`, `TagsInSync`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Subjects as resolved (groups are kept as groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_subjects: Vec<Subject>,
    /// Number of subjects.
    #[serde(default)]
    pub subject_count: u32,
    /// Instances the binding's tags are written on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances_covered: Vec<InstanceRef>,
    /// Ganeti tags this binding implies that are on their instances (written by the
    /// operator, or already there), as `cluster/instance: tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_written: Vec<String>,
    /// Number of tags written.
    #[serde(default)]
    pub tag_count: u32,
}
