//! Keeps the ConfigMap that the admission policies read ([`crate::authz::holders`]) in
//! step with the Roles, RoleBindings and UserProfiles of the authorization snapshot.
//! Leader only: followers would write the same thing.

use super::{Context, FIELD_MANAGER};
use crate::api::RoleBinding;
use crate::api::role::SystemRight;
use crate::authz::holders::{self, ProfileGroups, Published};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs until `stop`: every new authorization snapshot ([`crate::access::rules`])
/// asks for a recomputation; the result is written only when it changed.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let mut snapshots = ctx.shared.rules.changes();
    snapshots.mark_changed();
    let api: Api<ConfigMap> =
        Api::namespaced(ctx.shared.client.clone(), &ctx.shared.config.secrets_namespace);
    let bindings_api: Api<ClusterRoleBinding> = Api::all(ctx.shared.client.clone());
    let mut last = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let snapshot = snapshots.borrow_and_update().clone();
        // Until every first list is in, an empty list means "not known yet", and
        // writing it would lock out every holder (or end the bootstrap) for a moment.
        if !snapshot.listed {
            continue;
        }
        let (role_list, binding_list, profile_list) =
            (&snapshot.roles, &snapshot.bindings, &snapshot.profiles);
        let binding_refs: Vec<&RoleBinding> = binding_list.iter().map(|b| &**b).collect();
        let groups: Vec<ProfileGroups<'_>> = profile_list
            .iter()
            .map(|p| ProfileGroups {
                user: &p.spec.username,
                groups: &p.spec.groups,
            })
            .collect();
        let published = holders::publish(role_list.iter().map(|r| &**r), &binding_refs, &groups);
        let data = holders::config_map_data(&published);
        let subjects = rbac_subjects(&published);
        if last.as_ref().is_some_and(|(d, s)| *d == data && *s == subjects) {
            continue;
        }
        let mut written = true;
        for (binding, subjects) in &subjects {
            let patch = serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": binding},
                // Unchanged (a binding's role is fixed); required when the apply creates it.
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": binding},
                "subjects": subjects,
            });
            if let Err(e) = bindings_api
                .patch(
                    binding,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                tracing::warn!(error = %e, binding, "writing the holders of a system right into RBAC failed");
                written = false;
            }
        }
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": holders::CONFIG_MAP, "namespace": ctx.shared.config.secrets_namespace},
            "data": data,
        });
        match api
            .patch(
                holders::CONFIG_MAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await
        {
            Ok(_) if written => {
                tracing::info!(
                    admin_groups_active = published.admin_groups_active,
                    "system rights for admission updated"
                );
                last = Some((data, subjects));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "writing the system rights ConfigMap failed"),
        }
    }
}

/// The Kubernetes RBAC binding that lets holders of a system right reach the kinds it
/// covers (manifests/access.yaml); `None`: every user may already reach them.
fn rbac_binding(right: SystemRight) -> Option<&'static str> {
    match right {
        SystemRight::Applications => Some("ganeti.dev:system-applications"),
        SystemRight::Quotas => Some("ganeti.dev:system-quotas"),
        SystemRight::Roles => Some("ganeti.dev:system-roles"),
        _ => None,
    }
}

/// Each RBAC binding's subjects: the users and groups allowed the right. Forbidden
/// ones cannot be expressed in RBAC; admission refuses their writes.
fn rbac_subjects(p: &Published) -> BTreeMap<&'static str, Vec<serde_json::Value>> {
    let subject = |kind: &str, name: &str| serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name});
    p.rights
        .iter()
        .filter_map(|(right, h)| {
            let users = h.allowed_users.iter().map(|u| subject("User", u));
            let groups = h.allowed_groups.iter().map(|g| subject("Group", g));
            Some((rbac_binding(*right)?, users.chain(groups).collect()))
        })
        .collect()
}
