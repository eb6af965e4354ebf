//! Clusters as users see them: `GET /clusters` (right `clusters.view`), a cluster's nodes
//! (`system.nodes`), and its free-form Ganeti tags (`clusters.tags`). Read from the
//! inventory; tag writes go to Ganeti.

use super::{ApiError, ApiState, Attempt, Caller, NO_INVENTORY_YET, Outcome, rapi_error};
use crate::access::action::{self, TagsPlan};
use crate::access::rules::Snapshot;
use crate::api::role::{ClusterRight, SystemRight};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::inventory::ClusterInventory;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The action name cluster tag jobs carry in their reason (see [`action::reason_for`]).
pub const CLUSTER_TAGS: &str = action::CLUSTER_ACTIONS[0];

fn may(index: &AuthzIndex, p: &Principal<'_>, cluster: &str, right: ClusterRight) -> bool {
    index.decide(p, &Request::Cluster { cluster, right }).allowed
}

fn summary(inv: &ClusterInventory) -> serde_json::Value {
    const MIB: u64 = 1 << 20;
    let usable = || inv.nodes.iter().filter(|n| !n.offline && !n.drained);
    json!({
        "name": inv.cluster,
        "ganetiName": inv.facts.name,
        "softwareVersion": inv.facts.software_version,
        "master": inv.facts.master,
        "reachable": inv.reachable,
        "nodes": inv.nodes.len(),
        "instances": inv.instances.len(),
        "capacity": {
            "cpus": usable().map(|n| u64::from(n.cpus)).sum::<u64>(),
            "memoryTotalBytes": usable().map(|n| n.memory_total_mib * MIB).sum::<u64>(),
            "memoryFreeBytes": usable().map(|n| n.memory_free_mib * MIB).sum::<u64>(),
            "diskTotalBytes": usable().map(|n| n.disk_total_mib * MIB).sum::<u64>(),
            "diskFreeBytes": usable().map(|n| n.disk_free_mib * MIB).sum::<u64>(),
        },
    })
}

async fn ready(state: &ApiState) -> Result<Arc<Snapshot>, ApiError> {
    if state.shared.inventory.all().is_empty() {
        return Err(ApiError::unavailable(NO_INVENTORY_YET));
    }
    state.rules_loaded().await?;
    Ok(state.rules.current())
}

/// The clusters the caller may view, with their capacity.
pub(super) async fn list_clusters(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let snapshot = ready(&state).await?;
    let index = &snapshot.index;
    let p = caller.principal();
    let clusters: Vec<_> = snapshot
        .inventories()
        .iter()
        .filter(|inv| may(index, &p, &inv.cluster, ClusterRight::View))
        .map(|inv| summary(inv))
        .collect();
    Ok(Json(json!({ "clusters": clusters })).into_response())
}

/// A cluster's nodes: role, capacity and instance counts (right `system.nodes`).
pub(super) async fn list_nodes(
    State(state): State<Arc<ApiState>>,
    Path(cluster): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let snapshot = ready(&state).await?;
    let index = &snapshot.index;
    let decision = index.decide(&caller.principal(), &Request::System(SystemRight::Nodes));
    if !decision.allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("missing right system.nodes: {}", index.describe(&decision)),
        ));
    }
    let inv = state.known_cluster(&cluster)?;
    const MIB: u64 = 1 << 20;
    let nodes: Vec<_> = inv
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name, "role": n.role.as_str(), "group": n.group,
                "offline": n.offline, "drained": n.drained, "cpus": n.cpus,
                "memoryTotalBytes": n.memory_total_mib * MIB, "memoryFreeBytes": n.memory_free_mib * MIB,
                "diskTotalBytes": n.disk_total_mib * MIB, "diskFreeBytes": n.disk_free_mib * MIB,
                "primaryInstances": n.primary_instances, "secondaryInstances": n.secondary_instances,
            })
        })
        .collect();
    Ok(Json(json!({ "cluster": cluster, "nodes": nodes })).into_response())
}

/// Adds or removes free-form tags of the cluster itself (right `clusters.tags`); the
/// namespaces that hold permissions, owners and locks are refused.
pub(super) async fn cluster_tags(
    State(state): State<Arc<ApiState>>,
    Path(cluster): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let plan = match action::plan(action::Action::Tags, &body).map_err(ApiError::bad_request)? {
        action::Plan::Tags(t) => t,
        _ => unreachable!("the tags action plans tags"),
    };
    let attempt = Attempt {
        action: CLUSTER_TAGS,
        cluster: &cluster,
        vm: "",
        uuid: None,
    };
    if let Some(refused) = state.rate_limited(&caller, &attempt) {
        return Ok(refused);
    }
    let snapshot = ready(&state).await?;
    let index = &snapshot.index;
    // Like a VM the caller may not view, a cluster it may not view does not exist for it.
    let inv = state.known_cluster(&cluster)?;
    let p = caller.principal();
    if !may(index, &p, &cluster, ClusterRight::View) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no cluster {cluster}"),
        ));
    }
    let decision = index.decide(
        &p,
        &Request::Cluster {
            cluster: &cluster,
            right: ClusterRight::Tags,
        },
    );
    if !decision.allowed {
        let why = format!(
            "missing right clusters.tags on cluster {cluster}: {}",
            index.describe(&decision)
        );
        state.audit(&caller, &attempt, &Outcome::Refused(why.clone()));
        return Err(ApiError::new(StatusCode::FORBIDDEN, why));
    }
    let client = state.client(&cluster)?;
    if inv.observed || client.is_read_only() {
        let refused = ApiError::from(&crate::access::Refusal::ObservedOnly {
            cluster: cluster.clone(),
        });
        state.audit(&caller, &attempt, &Outcome::Refused(refused.1.clone()));
        return Err(refused);
    }
    let (TagsPlan::Add(tags) | TagsPlan::Remove(tags)) = &plan;
    for tag in tags {
        crate::tags::check_user_tag(tag, &inv.tag_prefix)
            .map_err(|why| ApiError::new(StatusCode::FORBIDDEN, why))?;
    }
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let why = action::reason_for(&caller.identity.user, CLUSTER_TAGS);
    let submitted = match &plan {
        TagsPlan::Add(_) => client.add_cluster_tags(&refs, &why).await,
        TagsPlan::Remove(_) => client.remove_cluster_tags(&refs, &why).await,
    };
    match submitted {
        Ok(job) => {
            state.audit(&caller, &attempt, &Outcome::Done { job: job.0 });
            Ok(Json(json!({"job": job.0, "cluster": cluster, "action": CLUSTER_TAGS})).into_response())
        }
        Err(e) => {
            state.audit(&caller, &attempt, &Outcome::Refused(format!("Ganeti: {e}")));
            Err(rapi_error(&e))
        }
    }
}
