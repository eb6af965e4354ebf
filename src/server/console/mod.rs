//! The VNC console in the browser.
//!
//! 1. `POST /api/v1/instances/{cluster}/{name}/console` (bearer token, right
//!    `vms.console`) returns a ticket: signed, bound to the user and the VM, valid
//!    [`TICKET_TTL_SECS`], single use.
//! 2. `/console/{cluster}/{name}?ticket=...` serves a page with noVNC (from the
//!    configured directory, served under `/novnc/`) and a paste box.
//! 3. The page opens `/console/ws?ticket=...`: the ticket is spent, the right checked
//!    again, and the websocket carries RFB to exactly the VNC host and port Ganeti
//!    reports for that VM. Nothing from the browser chooses where the proxy connects.
//!
//! Tickets are stateless (any replica checks any replica's), spent in the API server
//! (see [`super::spent`]), so a ticket works once across replicas and restarts. A
//! ticket names the VM by name and Ganeti UUID: the websocket decides again on the VM
//! as Ganeti has it then ([`crate::access`]), so a VM renamed or replaced since the
//! ticket was issued is not opened. The proxy connects only to an address of one of
//! the cluster's nodes, and a session ends after [`IDLE_TIMEOUT`] without traffic or
//! after [`MAX_SESSION`] in all.

use super::api::{ApiError, ApiState, Attempt, Caller, Outcome};
use super::auth::Identity;
use super::spent::SpendError;
use crate::access::VmRef;
use crate::api::role::VmRight;
use crate::inventory::{Instance, Node};
use crate::rapi::{Console, RapiClient};
use crate::signed::{self, Expiring, SigningKey, TokenError};
use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a ticket may wait before its websocket opens.
pub const TICKET_TTL_SECS: i64 = 60;
/// Where the noVNC files are served.
pub const NOVNC_PATH: &str = "/novnc";
const PURPOSE: &str = "console";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A console session with no traffic either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// No console session lasts longer than this; the user asks for a new ticket.
pub const MAX_SESSION: Duration = Duration::from_secs(8 * 3600);

/// What a ticket vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    #[serde(rename = "u")]
    pub user: String,
    /// For the audit line of the websocket (the right is checked again with them).
    #[serde(rename = "g")]
    pub groups: Vec<String>,
    #[serde(rename = "c")]
    pub cluster: String,
    #[serde(rename = "i")]
    pub instance: String,
    /// The VM's Ganeti UUID when the ticket was issued: the ticket opens that VM only.
    #[serde(rename = "id")]
    pub uuid: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "x")]
    pub expires: i64,
}

impl Expiring for Ticket {
    fn expires(&self) -> i64 {
        self.expires
    }
}

/// What the console routes share.
pub struct ConsoleState {
    api: Arc<ApiState>,
    /// Debian's `novnc` package puts it in /usr/share/novnc; `None`: the page answers 503.
    novnc_dir: Option<PathBuf>,
}

impl ConsoleState {
    pub fn new(api: Arc<ApiState>, novnc_dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self { api, novnc_dir })
    }
}

/// The routes outside `/api/v1`: the page, the websocket and the noVNC files.
pub fn router(state: Arc<ConsoleState>) -> Router {
    let router = Router::new()
        .route("/console/ws", get(websocket))
        .route("/console/{cluster}/{name}", get(page))
        .with_state(state.clone());
    match &state.novnc_dir {
        Some(dir) => router.nest_service(NOVNC_PATH, tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}

// --- the ticket --------------------------------------------------------------------

/// `POST /api/v1/instances/{cluster}/{name}/console`.
pub(in crate::server) async fn issue_ticket(
    State(state): State<Arc<ApiState>>,
    Path((cluster, name)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let vm = VmRef {
        cluster: &cluster,
        name: &name,
        uuid: None,
    };
    let (pinned, _) = state.authorize(&caller, vm, "console", VmRight::Console).await?;
    let attempt = Attempt {
        action: "console",
        cluster: &cluster,
        vm: &name,
        uuid: Some(&pinned.uuid),
    };
    let ticket = Ticket {
        user: caller.identity.user.clone(),
        groups: caller.identity.groups.clone(),
        cluster: cluster.clone(),
        instance: name.clone(),
        uuid: pinned.uuid.clone(),
        nonce: signed::nonce(),
        expires: signed::now_secs() + TICKET_TTL_SECS,
    };
    let token = signed::sign(&state.shared.keys.console_tickets, &ticket);
    state.audit(&caller, &attempt, &Outcome::Granted("console ticket issued"));
    let page = page_path(&cluster, &name, &token);
    let base = state
        .shared
        .config
        .public_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    Ok(Json(json!({
        "ticket": token,
        "expiresInSeconds": TICKET_TTL_SECS,
        "url": format!("{base}{page}"),
        "websocket": format!("/console/ws?ticket={token}"),
    }))
    .into_response())
}

fn page_path(cluster: &str, name: &str, ticket: &str) -> String {
    format!(
        "/console/{}/{}?ticket={ticket}",
        url::form_urlencoded::byte_serialize(cluster.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    )
}

/// Why a ticket is not accepted, as an HTTP status and a sentence.
fn refusal(e: &TokenError) -> (StatusCode, &'static str) {
    match e {
        TokenError::Malformed => (StatusCode::BAD_REQUEST, "the console ticket is damaged"),
        TokenError::BadSignature => (StatusCode::FORBIDDEN, "the console ticket is not valid"),
        TokenError::Expired => (
            StatusCode::GONE,
            "the console ticket expired: ask for a new one (tickets last a minute)",
        ),
    }
}

/// The ticket, if it is valid and for this VM (the page and websocket may name one).
fn accept(
    key: &SigningKey,
    token: &str,
    vm: Option<(&str, &str)>,
    now: i64,
) -> Result<Ticket, (StatusCode, String)> {
    let ticket: Ticket = signed::verify(key, token, now).map_err(|e| {
        let (status, why) = refusal(&e);
        (status, why.to_string())
    })?;
    if let Some((cluster, name)) = vm
        && (cluster != ticket.cluster || name != ticket.instance)
    {
        return Err((
            StatusCode::FORBIDDEN,
            format!("this console ticket is for another VM, not {cluster}/{name}"),
        ));
    }
    Ok(ticket)
}

// --- the page ----------------------------------------------------------------------

#[derive(Deserialize)]
struct TicketParam {
    #[serde(default)]
    ticket: String,
}

/// The console page. It checks the ticket without spending it: the websocket does.
async fn page(
    State(state): State<Arc<ConsoleState>>,
    Path((cluster, name)): Path<(String, String)>,
    Query(q): Query<TicketParam>,
) -> Response {
    if state.novnc_dir.is_none() {
        return super::page::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Console not available",
            "<p>The console page needs noVNC: install Debian's <code>novnc</code> package and start the operator with <code>--novnc-dir</code>.</p>",
        );
    }
    if let Err((status, why)) = accept(
        &state.api.shared.keys.console_tickets,
        &q.ticket,
        Some((&cluster, &name)),
        signed::now_secs(),
    ) {
        return super::page::page(
            status,
            "Console ticket not accepted",
            &format!("<p>{}.</p>", super::page::escape(&why)),
        );
    }
    let html = CONSOLE_PAGE
        .replace("{{NOVNC}}", NOVNC_PATH)
        .replace("{{TITLE}}", &super::page::escape(&format!("{name} ({cluster})")))
        .replace("{{CLUSTER}}", &js_string(&cluster))
        .replace("{{NAME}}", &js_string(&name))
        .replace("{{TICKET}}", &js_string(&q.ticket));
    (
        [
            // The ticket is in the URL: keep it out of other sites' Referer headers.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

/// A JSON string literal, safe inside an inline script (no `</script>` breakout).
fn js_string(s: &str) -> String {
    serde_json::to_string(s)
        .expect("strings serialize")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const CONSOLE_PAGE: &str = include_str!("console.html");

// --- the websocket -----------------------------------------------------------------

#[derive(Deserialize)]
struct SocketParams {
    #[serde(default)]
    ticket: String,
    /// The VM the page was opened for; when given it must be the ticket's.
    cluster: Option<String>,
    instance: Option<String>,
}

async fn websocket(
    State(state): State<Arc<ConsoleState>>,
    Query(q): Query<SocketParams>,
    headers: HeaderMap,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let source = connect
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    match open(&state, &q, &headers, source.clone()).await {
        Ok((tcp, ticket)) => upgrade.protocols(["binary"]).on_upgrade(move |socket| {
            let session = relay::Session {
                user: ticket.user,
                cluster: ticket.cluster,
                instance: ticket.instance,
                uuid: ticket.uuid,
            };
            relay::relay(socket, tcp, session, relay::Framing::Raw)
        }),
        Err((status, why)) => {
            // Refusals after the ticket was read are audited with its user; this line
            // also covers the ones before (bad ticket, foreign origin).
            tracing::info!(target: "audit", %source, status = status.as_u16(), reason = %why, "console websocket refused");
            (status, Json(json!({ "error": why }))).into_response()
        }
    }
}

/// Everything before the upgrade: the ticket, the right, and a connected VNC socket,
/// so a refusal is an HTTP status the browser can show.
async fn open(
    state: &ConsoleState,
    q: &SocketParams,
    headers: &HeaderMap,
    source: String,
) -> Result<(TcpStream, Ticket), (StatusCode, String)> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, state.api.shared.config.public_url.as_deref()) {
        // A page of another site must not drive a user's console (CSWSH).
        return Err((
            StatusCode::FORBIDDEN,
            "the console websocket is only for the operator's own console page".into(),
        ));
    }
    let vm = match (&q.cluster, &q.instance) {
        (Some(c), Some(i)) => Some((c.as_str(), i.as_str())),
        _ => None,
    };
    let ticket = accept(
        &state.api.shared.keys.console_tickets,
        &q.ticket,
        vm,
        signed::now_secs(),
    )?;
    let caller = state.api.caller(
        Identity {
            user: ticket.user.clone(),
            groups: ticket.groups.clone(),
        },
        source,
    );
    let attempt = Attempt {
        action: "console",
        cluster: &ticket.cluster,
        vm: &ticket.instance,
        uuid: Some(&ticket.uuid),
    };
    let refuse = |status: StatusCode, why: String| {
        state.api.audit(&caller, &attempt, &Outcome::Refused(why.clone()));
        (status, why)
    };
    match state
        .api
        .spent
        .spend(PURPOSE, &ticket.nonce, ticket.expires)
        .await
    {
        Ok(()) => {}
        Err(SpendError::AlreadySpent) => {
            return Err(refuse(
                StatusCode::GONE,
                "this console ticket was already used: ask for a new one".into(),
            ));
        }
        Err(e @ SpendError::Store(_)) => {
            tracing::warn!(error = %e, "spending a console ticket failed");
            return Err((StatusCode::SERVICE_UNAVAILABLE, "try again".into()));
        }
    }
    // Rights may have changed since the ticket was issued, and the name may now be
    // another VM's: decided again on the VM as Ganeti has it now.
    let vm = VmRef {
        cluster: &ticket.cluster,
        name: &ticket.instance,
        uuid: Some(&ticket.uuid),
    };
    let tcp = connect_vnc(&state.api, &caller, vm).await?;
    Ok((tcp, ticket))
}

/// Decides `vms.console` on the VM as Ganeti has it now and connects to its VNC
/// server; audits the outcome. Shared by the browser's websocket and the aggregated
/// API's `vnc` subresource.
pub(in crate::server) async fn connect_vnc(
    api: &ApiState,
    caller: &Caller,
    vm: VmRef<'_>,
) -> Result<TcpStream, (StatusCode, String)> {
    let (cluster, name) = (vm.cluster.to_string(), vm.name.to_string());
    let (pinned, client) = api
        .authorize(caller, vm, "console", VmRight::Console)
        .await
        .map_err(|ApiError(status, why)| (status, why))?;
    let attempt = Attempt {
        action: "console",
        cluster: &cluster,
        vm: &name,
        uuid: Some(&pinned.uuid),
    };
    let refuse = |status: StatusCode, why: String| {
        api.audit(caller, &attempt, &Outcome::Refused(why.clone()));
        (status, why)
    };
    let nodes = api
        .shared
        .inventory
        .get(&cluster)
        .map(|inv| inv.nodes.clone())
        .unwrap_or_default();
    let target = match locate(&client, &pinned.instance, &nodes).await {
        Ok(t) => t,
        Err(why) => return Err(refuse(StatusCode::BAD_GATEWAY, why)),
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((target.0.as_str(), target.1)))
        .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(refuse(
                StatusCode::BAD_GATEWAY,
                format!("the VM's VNC server at {}:{} refused: {e}", target.0, target.1),
            ));
        }
        Err(_) => {
            return Err(refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the VM's VNC server at {}:{} did not answer", target.0, target.1),
            ));
        }
    };
    let _ = tcp.set_nodelay(true);
    api.audit(caller, &attempt, &Outcome::Granted("console opened"));
    Ok(tcp)
}

/// Same-origin only: a browser always sends `Origin` on websockets; its host must be
/// this server's (as the browser reached it, or the configured public URL). Clients
/// that are not browsers send none and are let through (the ticket is what counts).
fn origin_allowed(origin: Option<&str>, host: Option<&str>, public_url: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let origin_authority = match (origin.host_str(), origin.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    if host.is_some_and(|h| h.eq_ignore_ascii_case(&origin_authority)) {
        return true;
    }
    public_url
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| u.origin() == origin.origin())
}

/// Where the VM's VNC server listens: Ganeti's console answer when it is VNC, else
/// (Ganeti 3.0's console call fails for kvm, and a kvm VM with Ganeti's default
/// `serial_console` is answered as `ssh`) the instance's `network_port` and
/// `vnc_bind_address`. Either way the address must be one of the cluster's nodes.
async fn locate(client: &RapiClient, instance: &Instance, nodes: &[Node]) -> Result<(String, u16), String> {
    match client.console(&instance.name).await {
        Ok(console) => {
            if let Some(found) = from_console(&console, &instance.name, &instance.primary_node, nodes)? {
                return Ok(found);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, instance = %instance.name, "console info failed; using the instance's VNC port")
        }
    }
    from_instance(
        instance.vnc_bind_address.as_deref(),
        instance.network_port,
        &instance.primary_node,
        nodes,
    )
}

/// From `GET /2/instances/<n>/console`: `Ok(None)` when it names no VNC server (a
/// serial console: the instance's own VNC port is used then).
fn from_console(
    console: &Console,
    name: &str,
    primary_node: &str,
    nodes: &[Node],
) -> Result<Option<(String, u16)>, String> {
    let answered_for = match console {
        Console::Msg { instance, .. }
        | Console::Ssh { instance, .. }
        | Console::Vnc { instance, .. }
        | Console::Spice { instance, .. } => instance,
    };
    if answered_for != name {
        return Err(format!(
            "Ganeti answered the console of {answered_for}, not of {name}: refused"
        ));
    }
    match console {
        Console::Vnc { host, port, .. } => {
            from_instance(Some(host), Some(*port), primary_node, nodes).map(Some)
        }
        Console::Msg { message, .. } => Err(format!(
            "this VM has no graphical console{}",
            message
                .as_deref()
                .map(|m| format!(" (Ganeti: {m})"))
                .unwrap_or_default()
        )),
        Console::Ssh { .. } | Console::Spice { .. } => Ok(None),
    }
}

/// From the VNC bind address and port: a wildcard address means the primary node's
/// primary IP; a node's name means its primary IP; any other address must be a node's
/// own. Nothing else is ever a target: the proxy is no tunnel to anywhere.
fn from_instance(
    bind: Option<&str>,
    port: Option<u16>,
    primary_node: &str,
    nodes: &[Node],
) -> Result<(String, u16), String> {
    let Some(port) = port.filter(|p| *p > 0) else {
        return Err("Ganeti reports no VNC port for this VM (is it a kvm VM with VNC?)".into());
    };
    let bind = bind.unwrap_or("").trim();
    if bind.is_empty() {
        return Err("the VM has no VNC server (vnc_bind_address is empty)".into());
    }
    let ip: Option<std::net::IpAddr> = bind.parse().ok();
    let node_ip = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| n.primary_ip.clone())
    };
    match ip {
        Some(ip) if ip.is_unspecified() => match node_ip(primary_node) {
            Some(node) => Ok((node, port)),
            None => {
                Err("the VM's VNC listens on all addresses of its node, whose IP is not known yet".into())
            }
        },
        Some(ip) if ip.is_loopback() => Err(format!(
            "the VM's VNC listens on {bind}, its node's loopback, out of reach: set the kvm vnc_bind_address to 0.0.0.0 or the node's IP"
        )),
        Some(_) if nodes.iter().any(|n| n.primary_ip.as_deref() == Some(bind)) => {
            Ok((bind.to_string(), port))
        }
        None if node_ip(bind).is_some() => Ok((node_ip(bind).unwrap_or_default(), port)),
        _ => Err(format!(
            "the VM's VNC address {bind} is not one of the cluster's nodes: refused"
        )),
    }
}

pub(in crate::server) mod relay;
#[cfg(test)]
mod tests;
