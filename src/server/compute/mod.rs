//! The aggregated API `compute.ganeti.dev/v1alpha1`, served over TLS to the
//! kube-apiserver's front proxy (see [`auth`]): Ganeti instances, nodes and jobs as
//! Kubernetes objects, live from the inventory ([`crate::compute`]), with get, list,
//! watch and `kubectl get` tables ([`read`]), and a VM's declarative spec and its
//! actions, console ticket and VNC stream ([`write`]).
//!
//! Kubernetes RBAC lets users reach these resources at all; every object is then
//! decided by the operator's engine, through the same decision point as the JSON
//! API: a VM one may not view answers 404 as one that does not exist, an action one
//! may not take on a VM one may view answers 403.

pub mod auth;
mod read;
mod status;
mod write;

use super::api::{ApiState, Caller};
use crate::compute::catalog::Catalog;
use crate::compute::{GROUP_VERSION, discovery};
use auth::RequestHeader;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use status::StatusError;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Where and with which certificate the aggregated API listens.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the handlers share.
pub struct ComputeState {
    api: Arc<ApiState>,
    catalog: Arc<Catalog>,
    requestheader: RequestHeader,
}

impl ComputeState {
    pub fn new(api: Arc<ApiState>, catalog: Arc<Catalog>, requestheader: RequestHeader) -> Arc<Self> {
        Arc::new(Self {
            api,
            catalog,
            requestheader,
        })
    }
}

pub fn router(state: Arc<ComputeState>) -> Router {
    let base = format!("/apis/{GROUP_VERSION}");
    Router::new()
        .route("/apis", get(|| async { Json(discovery::api_group_list()) }))
        .route(
            &format!("/apis/{}", crate::compute::GROUP),
            get(|| async { Json(discovery::api_group()) }),
        )
        .route(&base, get(|| async { Json(discovery::api_resource_list()) }))
        .route("/openapi/v2", get(|| async { Json(discovery::openapi_v2()) }))
        .route(
            "/openapi/v3",
            get(|| async { Json(discovery::openapi_v3_index(&OPENAPI_V3)) }),
        )
        .route(
            &format!("/openapi/v3/apis/{GROUP_VERSION}"),
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI_V3.as_str(),
                )
            }),
        )
        .route(&format!("{base}/ganetiinstances"), get(read::list_instances))
        .route(
            &format!("{base}/ganetiinstances/{{name}}"),
            get(read::get_instance).patch(write::patch_instance),
        )
        .route(
            &format!("{base}/ganetiinstances/{{name}}/{{subresource}}"),
            get(write::vnc).post(write::act),
        )
        .route(&format!("{base}/ganetinodes"), get(read::list_nodes))
        .route(&format!("{base}/ganetinodes/{{name}}"), get(read::get_node))
        .route(&format!("{base}/ganetijobs"), get(read::list_jobs))
        .route(&format!("{base}/ganetijobs/{{name}}"), get(read::get_job))
        .fallback(|| async { StatusError::not_found_path() })
        .with_state(state)
}

static OPENAPI_V3: LazyLock<String> = LazyLock::new(|| discovery::openapi_v3().to_string());

/// The caller as the front proxy names them, with their profile groups.
pub(super) struct Proxied(pub Caller);

impl FromRequestParts<Arc<ComputeState>> for Proxied {
    type Rejection = StatusError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ComputeState>) -> Result<Self, StatusError> {
        let tls = parts.extensions.get::<Arc<axum_server::tls::TlsInfo>>();
        let peer = tls.and_then(|t| t.peer_certificates.first()).map(Vec::as_slice);
        let headers = &parts.headers;
        let identity = state
            .requestheader
            .identity(peer, |name| {
                headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect()
            })
            .map_err(|why| {
                tracing::info!(target: "audit", reason = %why, "aggregated API request refused");
                StatusError::unauthorized(why)
            })?;
        // The aggregator forwards the client's address.
        let source = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .or_else(|| {
                parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Ok(Self(state.api.caller(identity, source)))
    }
}

/// Serves the aggregated API until `shutdown` resolves. Reads the requestheader
/// settings first (retrying: the API server may be starting too).
pub async fn serve(
    config: ComputeConfig,
    api: Arc<ApiState>,
    catalog: Arc<Catalog>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let requestheader = loop {
        match RequestHeader::load(&api.shared.client).await {
            Ok(rh) => break rh,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "aggregated API: cannot read the front proxy's settings; retrying in 10 s"
                );
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    };
    let (cert, key) = (
        std::fs::read(&config.cert).with_context(|| format!("reading {}", config.cert.display()))?,
        std::fs::read(&config.key).with_context(|| format!("reading {}", config.key.display()))?,
    );
    let tls = requestheader.server_config(&cert, &key)?;
    let state = ComputeState::new(api, catalog, requestheader);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Watches are long: they end with the process.
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    tracing::info!(addr = %config.listen, "aggregated API {GROUP_VERSION} listening (TLS, front proxy only)");
    super::listen::tls(
        config.listen,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle)
    .serve(router(state).into_make_service_with_connect_info::<SocketAddr>())
    .await
    .context("aggregated API server")
}

/// Whether the client asked for a `meta.k8s.io` Table (what `kubectl get` prints).
fn wants_table(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// A JSON answer, as a Table's content type when it is one.
fn json_answer(value: serde_json::Value, table: bool) -> Response {
    let content_type = if table {
        TABLE_CONTENT_TYPE
    } else {
        "application/json"
    };
    (
        [(axum::http::header::CONTENT_TYPE, content_type)],
        value.to_string(),
    )
        .into_response()
}
