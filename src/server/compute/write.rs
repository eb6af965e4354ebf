//! What a user does to a VM through the aggregated API: patch its spec (declarative
//! run strategy, lock and isolation), POST an action subresource, get a console
//! ticket, or open its VNC stream. All go through the JSON API's decision point
//! ([`crate::server::api::actions::perform`]), pinned to the UUID the object shows.

use super::status::StatusError;
use super::{ComputeState, Proxied, json_answer};
use crate::access::{Action, VmRef};
use crate::compute::GROUP_VERSION;
use crate::compute::objects::GanetiInstance;
use crate::compute::patch::{self, PatchType, Refused as PatchRefused};
use crate::server::api::actions::{Performed, Refused, perform};
use crate::server::console::relay::{self, CHANNEL_PROTOCOLS, Framing};
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// The VM behind an object name, if the caller may view it (else 404, whether it
/// exists or not).
fn visible_instance(
    state: &ComputeState,
    caller: &crate::server::api::Caller,
    name: &str,
) -> Result<(Arc<str>, Arc<GanetiInstance>), StatusError> {
    let snapshot = state.catalog.snapshot();
    let found = state.catalog.instances.get(name).filter(|(cluster, o)| {
        snapshot.as_ref().is_some_and(|s| {
            s.index
                .decide(
                    &caller.principal(),
                    &crate::authz::Request::Vm {
                        cluster,
                        instance: o.instance_name(),
                        right: crate::api::role::VmRight::View,
                    },
                )
                .allowed
        })
    });
    // The object as served: what a patch applies to.
    found
        .map(|(cluster, o)| (cluster, Arc::new(o.render())))
        .ok_or_else(|| StatusError::not_found(GanetiInstance::PLURAL, name))
}

fn refused(e: Refused, name: &str) -> StatusError {
    match e {
        Refused::Api(e) => StatusError::from(e).about(GanetiInstance::PLURAL, name),
        Refused::RateLimited(wait) => StatusError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many actions; try again in {} s", wait.as_secs() + 1),
        ),
    }
}

/// One action on the VM the object shows (its UUID pinned): the job's answer.
async fn run(
    state: &ComputeState,
    caller: &crate::server::api::Caller,
    cluster: &str,
    o: &GanetiInstance,
    action: Action,
    body: &[u8],
) -> Result<Value, StatusError> {
    let name = o.metadata.name.as_deref().unwrap_or_default();
    let vm = VmRef {
        cluster,
        name: &o.status.instance_name,
        uuid: (!o.status.uuid.is_empty()).then_some(o.status.uuid.as_str()),
    };
    match perform(&state.api, caller, vm, action, body).await {
        Ok(Performed::Done(answer)) => Ok(answer),
        Ok(Performed::Confirm(_)) => Err(StatusError::new(
            StatusCode::CONFLICT,
            format!(
                "{} needs a mailed confirmation; use the JSON API",
                action.as_str()
            ),
        )),
        Err(e) => Err(refused(e, name)),
    }
}

/// `PATCH ganetiinstances/{name}`: the actions that make Ganeti match the new spec,
/// in order; the first refusal stops the rest. Answers the object with the spec
/// asked for (its status follows when the jobs end).
pub(super) async fn patch_instance(
    State(state): State<Arc<ComputeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
    body: Bytes,
) -> Result<Response, StatusError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchType::from_content_type(content_type)
        .map_err(|why| StatusError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why))?;
    let (cluster, listed) = visible_instance(&state, &caller, &name)?;
    // Planned against the VM as Ganeti has it now, not as of the last sync: a job
    // that just ended must not make the patch a no-op.
    let current = fresh(&state, &cluster, &listed).await?;
    let (wanted, actions) = patch::plan(&current, &body).map_err(|e| match e {
        PatchRefused::BadRequest(why) => StatusError::bad_request(why).about(GanetiInstance::PLURAL, &name),
        PatchRefused::Invalid(field, why) => StatusError::invalid(GanetiInstance::PLURAL, &name, field, why),
    })?;
    let mut jobs = Vec::new();
    for action in actions {
        let answer = run(&state, &caller, &cluster, &current, action, b"").await?;
        jobs.push(json!({"action": action.as_str(), "job": answer["job"]}));
    }
    let mut object = serde_json::to_value(&wanted).unwrap_or(Value::Null);
    if !jobs.is_empty() {
        // Which jobs the patch submitted, for `kubectl patch -o yaml` and scripts.
        object["metadata"]["annotations"] =
            json!({"compute.ganeti.dev/submitted-jobs": Value::Array(jobs).to_string()});
    }
    Ok(json_answer(object, false))
}

/// The object of the VM as Ganeti answers now (the listed one if it cannot be read;
/// the actions decide on a fresh read anyway). A VM whose name now belongs to another
/// UUID is gone.
async fn fresh(
    state: &ComputeState,
    cluster: &str,
    listed: &GanetiInstance,
) -> Result<GanetiInstance, StatusError> {
    let name = listed.metadata.name.as_deref().unwrap_or_default();
    let (Some(client), Some(inventory)) = (
        state.api.shared.clusters.client(cluster),
        state.api.shared.inventory.get(cluster),
    ) else {
        return Ok(listed.clone());
    };
    match crate::access::read_exact(&client, &listed.status.instance_name).await {
        Ok(Some(instance)) if listed.status.uuid.is_empty() || instance.uuid == listed.status.uuid => {
            let mut o = GanetiInstance::from_inventory(&inventory, &instance);
            o.status.application = listed.status.application.clone();
            o.metadata.resource_version = listed.metadata.resource_version.clone();
            Ok(o)
        }
        Ok(_) => Err(StatusError::not_found(GanetiInstance::PLURAL, name)),
        Err(e) => {
            tracing::debug!(error = %e, "reading a VM before its patch failed; planning on the listed state");
            Ok(listed.clone())
        }
    }
}

/// `POST ganetiinstances/{name}/{start|shutdown|reboot|migrate|console}`.
pub(super) async fn act(
    State(state): State<Arc<ComputeState>>,
    Path((name, subresource)): Path<(String, String)>,
    Proxied(caller): Proxied,
    body: Bytes,
) -> Result<Response, StatusError> {
    let action = match subresource.as_str() {
        "start" => Action::Startup,
        "shutdown" => Action::Shutdown,
        "reboot" => Action::Reboot,
        "migrate" => Action::Migrate,
        "console" => return console(&state, caller, &name).await,
        _ => return Err(StatusError::not_found_path()),
    };
    let (cluster, o) = visible_instance(&state, &caller, &name)?;
    let mut answer = run(&state, &caller, &cluster, &o, action, &body).await?;
    answer["apiVersion"] = json!(GROUP_VERSION);
    answer["kind"] = json!("GanetiInstanceAction");
    Ok(json_answer(answer, false))
}

/// A console ticket for the browser page, as `POST /api/v1/.../console` gives.
async fn console(
    state: &ComputeState,
    caller: crate::server::api::Caller,
    name: &str,
) -> Result<Response, StatusError> {
    let (cluster, o) = visible_instance(state, &caller, name)?;
    crate::server::console::issue_ticket(
        State(state.api.clone()),
        Path((cluster.to_string(), o.status.instance_name.clone())),
        caller,
    )
    .await
    .map_err(|e| StatusError::from(e).about(GanetiInstance::PLURAL, name))
}

/// `GET ganetiinstances/{name}/vnc`: a websocket carrying RFB to the VM's VNC server,
/// in Kubernetes' channel framing when the client asks for it (kube clients do),
/// raw otherwise.
pub(super) async fn vnc(
    State(state): State<Arc<ComputeState>>,
    Path((name, subresource)): Path<(String, String)>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
    upgrade: WebSocketUpgrade,
) -> Result<Response, StatusError> {
    if subresource != crate::compute::discovery::VNC {
        return Err(StatusError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{subresource} is POSTed, not read"),
        ));
    }
    let (cluster, o) = visible_instance(&state, &caller, &name)?;
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let framing = if CHANNEL_PROTOCOLS.iter().any(|p| offered.iter().any(|o| o == p)) {
        Framing::Channel
    } else {
        Framing::Raw
    };
    let vm = VmRef {
        cluster: &cluster,
        name: &o.status.instance_name,
        uuid: (!o.status.uuid.is_empty()).then_some(o.status.uuid.as_str()),
    };
    let tcp = crate::server::console::connect_vnc(&state.api, &caller, vm)
        .await
        .map_err(|(code, why)| StatusError::new(code, why).about(GanetiInstance::PLURAL, &name))?;
    let session = relay::Session {
        user: caller.identity.user.clone(),
        cluster: cluster.to_string(),
        instance: o.status.instance_name.clone(),
        uuid: o.status.uuid.clone(),
    };
    let upgrade = match framing {
        Framing::Channel => upgrade.protocols(CHANNEL_PROTOCOLS),
        Framing::Raw => upgrade.protocols(["binary"]),
    };
    Ok(upgrade.on_upgrade(move |socket| relay::relay(socket, tcp, session, framing)))
}
