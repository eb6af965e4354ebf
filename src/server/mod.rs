//! The HTTP server: health, readiness, metrics, email verification and the JSON API.

pub mod api;
pub mod auth;
pub mod confirm;
pub mod console;
pub mod page;
pub mod ratelimit;
pub mod spent;
pub mod verify;
pub mod webhook;

use crate::metrics::Metrics;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    client: kube::Client,
    metrics: Arc<Metrics>,
    /// Checks email verification links; `None`: `/verify-email` answers 503.
    link_key: Option<Arc<crate::controllers::profile::link::LinkKey>>,
    /// The API under `/api/v1`; `None`: not served.
    api: Option<Arc<api::ApiState>>,
    /// The console page, its websocket and noVNC's files (needs the API).
    console: Option<Arc<console::ConsoleState>>,
}

impl AppState {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            metrics,
            link_key: None,
            api: None,
            console: None,
        }
    }

    /// The key the profile controller signs verification links with.
    pub fn with_link_key(mut self, key: Arc<crate::controllers::profile::link::LinkKey>) -> Self {
        self.link_key = Some(key);
        self
    }

    /// Serves the JSON API (it acts through the controllers' context); refused attempts
    /// on VMs the caller does not own are mailed to `refusal_mail_to`.
    pub fn with_api(mut self, ctx: Arc<crate::controllers::Context>, refusal_mail_to: Vec<String>) -> Self {
        self.api = Some(api::ApiState::new(ctx, refusal_mail_to));
        self
    }

    /// Serves the browser console (after [`Self::with_api`]); noVNC's files come from
    /// `novnc_dir` (without one the page answers 503).
    pub fn with_console(mut self, novnc_dir: Option<std::path::PathBuf>) -> Self {
        self.console = self
            .api
            .clone()
            .map(|api| console::ConsoleState::new(api, novnc_dir));
        self
    }
}

pub fn router(state: AppState) -> Router {
    let api = state.api.clone();
    let console = state.console.clone();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            crate::controllers::profile::VERIFY_PATH,
            get(verify::show).post(verify::confirm),
        )
        .with_state(state);
    let router = match api {
        Some(api_state) => router.nest(api::PREFIX, api::router(api_state)),
        None => router,
    };
    match console {
        Some(console_state) => router.merge(console::router(console_state)),
        None => router,
    }
}

/// Ready when the API server answers and every CRD is installed.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let outcome = match missing_crds(&state.client).await {
        Ok(missing) if missing.is_empty() => (StatusCode::OK, "ok".to_string()),
        Ok(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("CRDs not installed: {}", missing.join(", ")),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Kubernetes API server unreachable: {e}"),
        ),
    };
    state
        .metrics
        .http_requests
        .with_label_values(&["/readyz", if outcome.0.is_success() { "2xx" } else { "5xx" }])
        .inc();
    outcome
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .http_requests
        .with_label_values(&["/metrics", "2xx"])
        .inc();
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Names of this API's CRDs that the API server does not serve.
pub async fn missing_crds(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let resources = client
        .list_api_group_resources(&format!("{}/{}", crate::api::GROUP, crate::api::VERSION))
        .await;
    let served: Vec<String> = match resources {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(crate::api::crds()
        .into_iter()
        .map(|(_, crd)| crd.spec.names.plural)
        .filter(|plural| !served.contains(plural))
        .collect())
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP server listening");
    // The peer address feeds the audit log.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
