//! `GET /instances` and `GET /instances/{cluster}/{name}`: the VMs the caller may view,
//! from the inventory. A VM the caller may not view answers exactly as one that does
//! not exist.

use super::{ApiError, ApiState, Caller, NO_INVENTORY_YET};
use crate::api::role::VmRight;
use crate::authz::{AuthzIndex, Principal, Request};
use crate::inventory::Instance;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceView<'a> {
    cluster: &'a str,
    name: &'a str,
    /// Ganeti's UUID: what the VM is, whatever it is called.
    uuid: &'a str,
    status: &'a str,
    running: bool,
    admin_up: bool,
    owner: Option<crate::api::Subject>,
    primary_node: &'a str,
    secondary_nodes: &'a [String],
    ips: &'a [String],
    vcpus: u32,
    memory_mib: u64,
    disk_mib: u64,
    os: &'a str,
    hypervisor: &'a str,
    locked: bool,
    /// ganetimgr's `needsreboot`: a change waits for the next reboot.
    needs_reboot: bool,
}

fn view<'a>(
    cluster: &'a str,
    i: &'a Instance,
    owner: Option<crate::api::Subject>,
    locked: bool,
) -> InstanceView<'a> {
    InstanceView {
        cluster,
        name: &i.name,
        uuid: &i.uuid,
        status: &i.status,
        running: i.running,
        admin_up: i.admin_up,
        owner,
        primary_node: &i.primary_node,
        secondary_nodes: &i.secondary_nodes,
        ips: &i.ips,
        vcpus: i.vcpus,
        memory_mib: i.memory_mib,
        disk_mib: i.disk_mib,
        os: &i.os,
        hypervisor: &i.hypervisor,
        locked,
        needs_reboot: i.tags.iter().any(|t| t == crate::tags::NEEDS_REBOOT_TAG),
    }
}

fn may_view(index: &AuthzIndex, p: &Principal<'_>, cluster: &str, instance: &str) -> bool {
    index
        .decide(
            p,
            &Request::Vm {
                cluster,
                instance,
                right: VmRight::View,
            },
        )
        .allowed
}

async fn ready(state: &ApiState) -> Result<(), ApiError> {
    if state.shared.inventory.all().is_empty() {
        return Err(ApiError::unavailable(NO_INVENTORY_YET));
    }
    state.rules_loaded().await
}

/// Every VM the caller may view.
pub(super) async fn list_instances(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    ready(&state).await?;
    // The inventories the index was built from: a VM and the rights on it agree.
    let snapshot = state.rules.current();
    let (inventories, index) = (snapshot.inventories(), &snapshot.index);
    let p = caller.principal();
    let mut out = Vec::new();
    for inv in inventories {
        for i in &inv.instances {
            if may_view(index, &p, &inv.cluster, &i.name) {
                out.push(view(
                    &inv.cluster,
                    i,
                    inv.owner_of(i),
                    index.is_locked(&inv.cluster, &i.name),
                ));
            }
        }
    }
    Ok(Json(json!({ "instances": out })).into_response())
}

/// One VM, or 404: the same 404 whether it does not exist or may not be viewed.
pub(super) async fn show_instance(
    State(state): State<Arc<ApiState>>,
    Path((cluster, name)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    ready(&state).await?;
    state.known_cluster(&cluster)?;
    let snapshot = state.rules.current();
    let index = &snapshot.index;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no VM {name} on {cluster}"));
    let inv = snapshot.inventory(&cluster).ok_or_else(not_found)?;
    let instance = inv.instance(&name).ok_or_else(not_found)?;
    if !may_view(index, &caller.principal(), &cluster, &name) {
        return Err(not_found());
    }
    let locked = index.is_locked(&cluster, &name);
    Ok(Json(view(&cluster, instance, inv.owner_of(instance), locked)).into_response())
}
