//! Writing the status of the operator's kinds: server-side apply of the status
//! subresource under [`FIELD_MANAGER`], `apiVersion` and `kind` taken from the type, so
//! no writer spells them out.

use crate::api::FIELD_MANAGER;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn patch<K>(name: &str, resource_version: Option<String>, status: &impl Serialize) -> serde_json::Value
where
    K: Resource<DynamicType = ()>,
{
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = version.into();
    }
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "status": status,
    })
}

/// Applies `status` to the object `name`, whatever its version.
pub async fn apply<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch::<K>(name, None, status)),
    )
    .await
}

/// Applies `status` only if the object is still the version `planned_from` was read
/// as (409 otherwise): for a status that is a decision on that version.
pub async fn apply_if_unchanged<K>(
    api: &Api<K>,
    planned_from: &K,
    status: &impl Serialize,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = planned_from.name_any();
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch::<K>(&name, planned_from.resource_version(), status)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GanetiCluster, RoleBinding};

    #[test]
    fn the_patch_names_the_kind_of_the_type() {
        let p = patch::<GanetiCluster>("prod", None, &serde_json::json!({"a": 1}));
        assert_eq!(p["apiVersion"], "ganeti.dev/v1alpha1");
        assert_eq!(p["kind"], "GanetiCluster");
        assert!(p["metadata"].get("resourceVersion").is_none());
        let p = patch::<RoleBinding>("b", Some("42".into()), &serde_json::json!({}));
        assert_eq!(p["kind"], "RoleBinding");
        assert_eq!(p["metadata"]["resourceVersion"], "42");
    }
}
