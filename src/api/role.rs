//! Role: a named set of rights on VMs, clusters and the system, with a scope.

use super::common::{Conditions, InstanceRef, conditions_schema};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// A right's setting in a role; absent means not allowed by this role. (No doc comment:
// schemars would let the type's description replace each right's own.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Permission {
    /// The role grants the right (unless another role of the subject forbids it).
    #[serde(rename = "allowed")]
    Allowed,
    /// The role forbids the right, whatever other roles grant.
    #[serde(rename = "forbidden")]
    Forbidden,
}

/// Declares a rights struct (one optional `Permission` per right, documented for
/// `kubectl explain`) and the enum that names its rights.
macro_rules! rights {
    (
        $(#[$smeta:meta])* struct $rights:ident;
        $(#[$emeta:meta])* enum $right:ident;
        $( $(#[doc = $doc:literal])* $field:ident = $wire:literal => $variant:ident, )+
    ) => {
        $(#[$smeta])*
        #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        #[schemars(extend("minProperties" = 1))]
        pub struct $rights {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<Permission>,
            )+
        }

        $(#[$emeta])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $right {
            $( #[serde(rename = $wire)] $variant, )+
        }

        impl $right {
            /// Every right of this kind.
            pub const ALL: &'static [$right] = &[$($right::$variant),+];

            /// The right's name as written in YAML.
            pub fn as_str(self) -> &'static str {
                match self { $($right::$variant => $wire,)+ }
            }

            /// Parses the name written in YAML.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($wire => Some($right::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $right {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $rights {
            /// This role's setting for one right.
            pub fn get(&self, right: $right) -> Option<Permission> {
                match right { $($right::$variant => self.$field,)+ }
            }

            /// Sets one right.
            pub fn set(&mut self, right: $right, permission: Option<Permission>) {
                match right { $($right::$variant => self.$field = permission,)+ }
            }

            /// The rights this role mentions, with their settings.
            pub fn iter(&self) -> impl Iterator<Item = ($right, Permission)> + '_ {
                $right::ALL.iter().filter_map(|r| self.get(*r).map(|p| (*r, p)))
            }
        }
    };
}

rights! {
    /// Rights on virtual machines.
    struct VmRights;
    /// A right on a virtual machine.
    enum VmRight;
    /// See the VM and its status (API listing, timeline); without it the VM does not exist for the user.
    view = "view" => View,
    /// Start the VM.
    start = "start" => Start,
    /// Shut the VM down.
    shutdown = "shutdown" => Shutdown,
    /// Reboot the VM.
    reboot = "reboot" => Reboot,
    /// Open the VM's console.
    console = "console" => Console,
    /// Rename the VM (confirmed by email).
    rename = "rename" => Rename,
    /// Reinstall the VM's OS (confirmed by email).
    reinstall = "reinstall" => Reinstall,
    /// Resize the VM: vCPUs and memory, or grow a disk, within the owner's quota.
    modify = "modify" => Modify,
    /// Destroy the VM (confirmed by email).
    destroy = "destroy" => Destroy,
    /// Add and remove the VM's free-form Ganeti tags (never permission, owner, marker or ganetimgr tags).
    tags = "tags" => Tags,
    /// Migrate the VM (also needs the cluster right migrate).
    migrate = "migrate" => Migrate,
    /// Export the VM (also needs the cluster right export).
    export = "export" => Export,
    /// Replace the VM's disks (also needs the cluster right replaceDisks).
    replace_disks = "replaceDisks" => ReplaceDisks,
    /// Lock and unlock the VM against its owners' actions (ganetimgr's adminlock tag).
    lock = "lock" => Lock,
    /// Isolate the VM from the network and undo it (ganetimgr's isolate tag).
    isolate = "isolate" => Isolate,
    /// Every right on the VM.
    admin = "admin" => Admin,
}

rights! {
    /// Rights on Ganeti clusters.
    struct ClusterRights;
    /// A right on a Ganeti cluster.
    enum ClusterRight;
    /// See the cluster and its capacity (API GET /clusters).
    view = "view" => View,
    /// Create VMs on the cluster without an admin's approval (within quota).
    create_vm = "createVm" => CreateVm,
    /// Add and remove the cluster's own free-form Ganeti tags.
    tags = "tags" => Tags,
    /// Replace disks of the cluster's VMs (with the VM right replaceDisks on each).
    replace_disks = "replaceDisks" => ReplaceDisks,
    /// Migrate the cluster's VMs (with the VM right migrate on each).
    migrate = "migrate" => Migrate,
    /// Export the cluster's VMs (with the VM right export on each).
    export = "export" => Export,
    /// Every right on the cluster and its VMs.
    admin = "admin" => Admin,
}

rights! {
    /// Rights on the service itself.
    struct SystemRights;
    /// A right on the service itself.
    enum SystemRight;
    /// Review, approve and reject instance applications.
    applications = "applications" => Applications,
    /// Send notifications to VM owners.
    notifications = "notifications" => Notifications,
    /// Manage cluster quotas.
    quotas = "quotas" => Quotas,
    /// Manage roles and role bindings.
    roles = "roles" => Roles,
    /// Keep other users' profiles and set group memberships.
    users = "users" => Users,
    /// See any Ganeti job (one's own are always visible).
    jobs = "jobs" => Jobs,
    /// See the clusters' nodes: role, capacity, instances.
    nodes = "nodes" => Nodes,
    /// Read the audit trail: every VM action and application event, not only one's own.
    audit = "audit" => Audit,
}

/// A named set of rights.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "Role",
    plural = "roles",
    shortname = "grole",
    category = "ganeti",
    status = "RoleStatus",
    doc = "A named set of rights on VMs, clusters and the system, each allowed or forbidden, with the scope of objects it reaches. Bind it to users and groups with a RoleBinding.",
    printcolumn(name = "Scope", type_ = "string", json_path = ".spec.scope.kind"),
    printcolumn(name = "Bindings", type_ = "integer", json_path = ".status.bindingCount"),
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.vms) || has(self.clusters) || has(self.system)")
    .message("a role must set at least one right under vms, clusters or system"))]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// What the role is for, shown to admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Rights on VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<VmRights>,
    /// Rights on clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterRights>,
    /// Rights on the service itself (these ignore the scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemRights>,
    /// Which objects the VM and cluster rights reach. Default: `Own`.
    #[serde(default)]
    pub scope: Scope,
}

/// Which objects a role's rights reach.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind != 'Clusters' || (has(self.clusters) && size(self.clusters) > 0)")
    .message("scope kind Clusters needs the list of clusters").field_path(".clusters"))]
#[x_kube(validation = Rule::new("self.kind != 'Instances' || (has(self.instances) && size(self.instances) > 0)")
    .message("scope kind Instances needs the list of instances").field_path(".instances"))]
pub struct Scope {
    /// `All` objects, the subject's `Own` VMs (owned by the user or one of the user's
    /// groups), the listed `Clusters` (and their VMs), or the listed `Instances`.
    #[serde(default)]
    pub kind: ScopeKind,
    /// GanetiCluster names, for kind `Clusters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub clusters: Vec<String>,
    /// Instances, for kind `Instances`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub instances: Vec<InstanceRef>,
}

/// The kinds of scope.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ScopeKind {
    All,
    #[default]
    Own,
    Clusters,
    Instances,
}

/// Which bindings use a role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Names of the RoleBindings that refer to this role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_by: Vec<String>,
    /// Number of RoleBindings that refer to this role.
    #[serde(default)]
    pub binding_count: u32,
    /// `Preconfigured` (a built-in role) and the like.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
