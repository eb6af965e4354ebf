//! The HTTP servers: the users' one (health, readiness, email verification, the JSON
//! API and the console), and `/metrics` on a listener of its own, so the chart can keep
//! it away from users (it names every cluster and VM) and give it to Prometheus only.

pub mod api;
pub mod auth;
pub mod compute;
pub mod confirm;
pub mod console;
pub mod listen;
pub mod page;
pub mod ratelimit;
pub mod spent;
pub mod verify;
pub mod webhook;

use crate::metrics::Metrics;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    client: kube::Client,
    metrics: Arc<Metrics>,
    /// Checks email verification links; `None`: `/verify-email` answers 503.
    keys: Option<Arc<crate::keys::Keys>>,
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
            keys: None,
            api: None,
            console: None,
        }
    }

    /// The keys verification links are checked with.
    pub fn with_keys(mut self, keys: Arc<crate::keys::Keys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Serves the JSON API on the shared pieces; tokens are reviewed for
    /// `token_audiences` (empty: the API server's own); refused attempts on VMs the
    /// caller does not own are mailed to `refusal_mail_to`.
    pub fn with_api(
        mut self,
        shared: crate::shared::Shared,
        token_audiences: Vec<String>,
        refusal_mail_to: Vec<String>,
    ) -> Self {
        self.api = Some(api::ApiState::new(shared, token_audiences, refusal_mail_to));
        self
    }

    /// The JSON API's state (what the aggregated API decides and acts through).
    pub fn api(&self) -> Option<Arc<api::ApiState>> {
        self.api.clone()
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

/// Requests per client address before anything else (authentication included): a
/// burst of this many, then one per [`CLIENT_RATE_EVERY`].
const CLIENT_RATE_BURST: u32 = 300;
const CLIENT_RATE_EVERY: Duration = Duration::from_millis(50);

/// The users' server. Every route but the probes is rate-limited per client address
/// before it authenticates anyone, so a flood of bad tokens costs the API server no
/// TokenReviews.
pub fn router(state: AppState) -> Router {
    let api = state.api.clone();
    let console = state.console.clone();
    let limited = Router::new()
        .route(
            crate::profile::VERIFY_PATH,
            get(verify::show).post(verify::confirm),
        )
        .with_state(state.clone());
    let limited = match api {
        Some(api_state) => limited.nest(api::PREFIX, api::router(api_state)),
        None => limited,
    };
    let limited = match console {
        Some(console_state) => limited.merge(console::router(console_state)),
        None => limited,
    };
    let limiter = Arc::new(Mutex::new(ratelimit::Limiter::new(
        CLIENT_RATE_BURST,
        CLIENT_RATE_EVERY,
    )));
    let limited = limited.layer(axum::middleware::from_fn_with_state(limiter, per_client));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(limited)
}

/// The metrics server: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// 429 for a client address past its budget.
async fn per_client(
    State(limiter): State<Arc<Mutex<ratelimit::Limiter>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let verdict = limiter
        .lock()
        .expect("client limiter lock")
        .take(&client, std::time::Instant::now());
    match verdict {
        Ok(()) => next.run(request).await,
        Err(wait) => api::too_many(wait, "too many requests from your address"),
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
    // Rendered off the runtime's workers (100k instances take a few hundred ms) and
    // streamed: a scrape holds a few chunks in memory, not the whole text.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<String>(2);
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || {
        metrics.render_chunks(|chunk| chunks.blocking_send(chunk).is_ok());
    });
    let body = futures::stream::poll_fn(move |cx| {
        received
            .poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        axum::body::Body::from_stream(body),
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
    serve_router(addr, router(state), "HTTP server", shutdown).await
}

/// Serves `/metrics` on its own address until `shutdown` resolves.
pub async fn serve_metrics(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_router(addr, metrics_router(state), "metrics server", shutdown).await
}

async fn serve_router(
    addr: SocketAddr,
    router: Router,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listen::plain(addr).await?;
    tracing::info!(%addr, "{what} listening");
    // The peer address feeds the audit log and the per-client rate limit.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
