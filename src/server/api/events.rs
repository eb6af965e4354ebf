//! `GET /events`: the caller's timeline (see [`super::timeline`]), or with `system.audit`
//! the audit trail of everyone's. Bounded: at most
//! [`EVENTS_SCANNED`] Events of each kind are read per request, in pages, and at most
//! [`super::timeline::MAX_LIMIT`] are answered.

use super::{ApiError, ApiState, CLUSTER_EVENTS_NAMESPACE, Caller, timeline};
use crate::api::InstanceApplication;
use crate::api::role::{SystemRight, VmRight};
use crate::authz::Request;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use std::sync::Arc;

/// Events are listed in pages; past this many of one kind the rest is not looked at
/// (Events expire after an hour by default, so a busy cluster rarely has more).
pub const EVENTS_SCANNED: usize = 5_000;
const PAGE: u32 = 500;

async fn list_events_matching(api: Api<Event>, selector: &str) -> Result<Vec<Event>, ApiError> {
    let mut params = ListParams::default().fields(selector).limit(PAGE);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() && out.len() < EVENTS_SCANNED => {
                params = params.continue_token(&token);
            }
            _ => return Ok(out),
        }
    }
}

/// The caller's timeline.
pub(super) async fn list_events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limit = timeline::limit(query.as_deref()).map_err(ApiError::bad_request)?;
    let client = &state.shared.client;
    let (vm_events, application_events, applications) = tokio::try_join!(
        list_events_matching(
            Api::namespaced(client.clone(), CLUSTER_EVENTS_NAMESPACE),
            timeline::VM_EVENTS_SELECTOR
        ),
        list_events_matching(Api::all(client.clone()), timeline::APPLICATION_EVENTS_SELECTOR),
        async {
            let list = Api::<InstanceApplication>::all(client.clone())
                .list(&ListParams::default().limit(EVENTS_SCANNED as u32))
                .await?;
            Ok(list.items)
        },
    )?;
    state.rules_loaded().await?;
    let snapshot = state.rules.current();
    let index = &snapshot.index;
    let p = caller.principal();
    let may_view = |cluster: &str, instance: &str| {
        index
            .decide(
                &p,
                &Request::Vm {
                    cluster,
                    instance,
                    right: VmRight::View,
                },
            )
            .allowed
    };
    // The audit trail: every VM action and application Event, for holders of system.audit.
    let audit = index.decide(&p, &Request::System(SystemRight::Audit)).allowed;
    let entries = timeline::timeline(
        &vm_events,
        &application_events,
        &applications,
        &p,
        audit,
        may_view,
        limit,
    );
    Ok(Json(json!({ "events": entries })).into_response())
}
