//! The `ganeti.dev/v1alpha1` API: one module per kind, no IO.

// kube's derive takes one `printcolumn(...)` per column; clippy reads the repeated
// `type_ = "string"` inside them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod application;
pub mod binding;
pub mod cluster;
pub mod common;
pub mod conditions;
pub mod notification;
pub mod profile;
pub mod quantity;
pub mod quota;
pub mod role;

pub use application::{InstanceApplication, InstanceApplicationSpec, InstanceApplicationStatus};
pub use binding::{RoleBinding, RoleBindingSpec, RoleBindingStatus};
pub use cluster::{GanetiCluster, GanetiClusterSpec, GanetiClusterStatus};
pub use common::{InstanceRef, Subject, SubjectKind};
pub use notification::{Notification, NotificationSpec, NotificationStatus};
pub use profile::{UserProfile, UserProfileSpec, UserProfileStatus};
pub use quota::{ClusterQuota, ClusterQuotaSpec, ClusterQuotaStatus};
pub use role::{Role, RoleSpec, RoleStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub const GROUP: &str = "ganeti.dev";
pub const VERSION: &str = "v1alpha1";
/// Name under which the operator writes (server-side apply field manager, Events).
pub const FIELD_MANAGER: &str = "ganeti-operator";

/// Every CRD of the API, with the file name it is kept under in `crds/`.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    let all = vec![
        ("ganeticluster.yaml", GanetiCluster::crd()),
        ("instanceapplication.yaml", InstanceApplication::crd()),
        ("role.yaml", Role::crd()),
        ("rolebinding.yaml", RoleBinding::crd()),
        ("clusterquota.yaml", ClusterQuota::crd()),
        ("notification.yaml", Notification::crd()),
        ("userprofile.yaml", UserProfile::crd()),
    ];
    all.into_iter()
        .map(|(file, crd)| (file, without_unknown_formats(crd)))
        .collect()
}

/// schemars marks unsigned integers `format: uint32`/`uint64`, which the API server
/// does not know and warns about on every apply; `minimum: 0` already says it.
fn without_unknown_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(f)) = map.get("format")
                    && matches!(f.as_str(), "uint8" | "uint16" | "uint32" | "uint64")
                {
                    map.remove("format");
                    map.entry("minimum").or_insert(serde_json::json!(0));
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("the same CRD, minus formats")
}

/// One CRD as the YAML document checked in under `crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("a CRD always serializes")
}
