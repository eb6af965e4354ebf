//! The JSON API under `/api/v1`: a user's VMs and the actions on them.
//!
//! Every request carries a bearer token (TokenReview, see [`super::auth`]); the
//! authorization engine decides with the roles, bindings and inventory of the moment.
//! Plain actions (startup, shutdown, reboot, migrate, replace-disks, export) submit a
//! Ganeti job at once; fatal ones (rename, reinstall, destroy) answer 202 and mail a
//! confirmation link. Every attempt, allowed or not, leaves an audit line (target
//! `audit`) and a Kubernetes Event on the GanetiCluster whose `related` object is the VM
//! (see [`timeline::audit_event`]); `GET /events` reads them back as the caller's timeline.
//!
//! Every replica serves the API: the leader's GanetiCluster controller and a follower's
//! read-only reader (`controllers::cluster::follow`) fill the same inventory and RAPI
//! clients. A replica answers 503 only until its first read of a cluster. Who may
//! follow a job is read from the job itself (the `reason=` we submit names the user),
//! so any replica answers for jobs submitted through any other.

use super::auth::{Authenticator, Identity, bearer};
use super::confirm::{self, Claims, ConfirmKey, LinkError};
use super::page::{escape, page};
use super::ratelimit::Limiter;
use super::spent::{SpendError, SpentTokens};
use crate::api::role::{SystemRight, VmRight};
use crate::api::{InstanceApplication, Role, RoleBinding, UserProfile};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::controllers::Context;
use crate::inventory::Instance;
use crate::rapi::{
    InstanceExport, InstanceMigrate, InstanceReinstall, InstanceReplaceDisks, Job, JobId, MigrationMode,
    RapiClient, RapiError, RebootType, ReplaceDisksMode,
};
use crate::signed::now_secs;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, RawQuery, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod timeline;

/// Where the routes below are mounted.
pub const PREFIX: &str = "/api/v1";
/// Actions per user: a burst of this many, then one per [`RATE_EVERY`].
const RATE_BURST: u32 = 10;
const RATE_EVERY: Duration = Duration::from_secs(6);
/// Where the Events of cluster-scoped objects (GanetiClusters) go, as kube's Recorder
/// puts them.
const CLUSTER_EVENTS_NAMESPACE: &str = "default";
/// The 503 of a replica whose first read of the clusters is under way.
const NO_INVENTORY_YET: &str = "no cluster inventory on this replica yet: its first read is under way";

/// The OpenAPI document of this API (hand-written; a test checks it against the routes).
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the API handlers share.
pub struct ApiState {
    pub(super) ctx: Arc<Context>,
    auth: Authenticator,
    limiter: Mutex<Limiter>,
    confirm_key: ConfirmKey,
    /// Signs and checks console tickets (see [`super::console`]).
    pub(super) ticket_key: crate::signed::SigningKey,
    /// Followed confirmation links, in the API server: once across replicas and restarts.
    pub(super) spent: SpentTokens,
    /// Told of refused attempts on VMs the caller does not own (ganetimgr does this).
    refusal_mail_to: Vec<String>,
}

impl ApiState {
    pub fn new(ctx: Arc<Context>, refusal_mail_to: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            refusal_mail_to,
            auth: Authenticator::new(ctx.client.clone()),
            limiter: Mutex::new(Limiter::new(RATE_BURST, RATE_EVERY)),
            confirm_key: ConfirmKey::derive(&ctx.config.link_key),
            ticket_key: super::console::ticket_key(&ctx.config.link_key),
            spent: SpentTokens::new(ctx.client.clone(), &ctx.config.secrets_namespace),
            ctx,
        })
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/instances", get(list_instances))
        .route("/instances/{cluster}/{name}", get(show_instance))
        .route("/instances/{cluster}/{name}/{action}", post(act))
        .route(
            "/instances/{cluster}/{name}/console",
            post(super::console::issue_ticket),
        )
        .route("/jobs/{cluster}/{id}", get(show_job))
        .route("/events", get(list_events))
        .route("/confirm", get(confirm_page).post(confirm_action))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts requests by route template (never the concrete path: bounded labels).
async fn count(
    State(state): State<Arc<ApiState>>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_string()).unwrap_or_default();
    let response = next.run(request).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    state
        .ctx
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), class.as_str()])
        .inc();
    response
}

// --- errors ------------------------------------------------------------------------

/// An error answer: `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(super) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        tracing::warn!(error = %e, "Kubernetes API call of the console endpoint failed");
        Self::unavailable("the Kubernetes API server did not answer; try again")
    }
}

pub(super) fn rapi_error(e: &RapiError) -> ApiError {
    match e {
        RapiError::NotFound { message } => ApiError::new(StatusCode::NOT_FOUND, message.clone()),
        _ => {
            tracing::warn!(error = %e, "RAPI call of the console endpoint failed");
            ApiError::new(StatusCode::BAD_GATEWAY, format!("Ganeti refused or failed: {e}"))
        }
    }
}

// --- the caller --------------------------------------------------------------------

/// The authenticated caller and where the request came from.
pub struct Caller {
    pub identity: Identity,
    pub source: String,
}

impl Caller {
    fn principal(&self) -> Principal<'_> {
        Principal::new(&self.identity.user, &self.identity.groups)
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(token) = bearer(header) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <Kubernetes token>)",
            ));
        };
        match state.auth.authenticate(token).await? {
            Some(identity) => Ok(Caller { identity, source }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Kubernetes API server does not accept this token",
            )),
        }
    }
}

// --- authorization and audit -------------------------------------------------------

impl ApiState {
    /// The authorization index of this moment: roles and bindings from the API server,
    /// tags and owners from the inventory.
    pub(super) async fn index(&self) -> Result<AuthzIndex, ApiError> {
        let roles = Api::<Role>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await?;
        let bindings = Api::<RoleBinding>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await?;
        let inventories = self.ctx.inventory.all();
        let mut builder = AuthzIndex::builder()
            .roles(&roles.items)
            .bindings(&bindings.items);
        for inv in &inventories {
            builder = builder.cluster(inv, &inv.tag_prefix);
        }
        Ok(builder.build())
    }

    /// The VM, or why not: 503 while no inventory is loaded, else 404.
    pub(super) fn instance(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<(Instance, Option<crate::api::Subject>), ApiError> {
        let Some(inv) = self.ctx.inventory.get(cluster) else {
            if self.ctx.inventory.all().is_empty() {
                return Err(ApiError::unavailable(NO_INVENTORY_YET));
            }
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no cluster {cluster}"),
            ));
        };
        let instance = inv
            .instance(name)
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no VM {name} on {cluster}")))?;
        let owner = inv.owner_of(&instance);
        Ok((instance, owner))
    }

    pub(super) fn client(&self, cluster: &str) -> Result<Arc<RapiClient>, ApiError> {
        self.ctx
            .clusters
            .client(cluster)
            .ok_or_else(|| ApiError::unavailable(format!("no RAPI client for {cluster} on this replica yet")))
    }

    /// One audit line and one Event per attempt.
    pub(super) fn audit(&self, caller: &Caller, attempt: &Attempt<'_>, outcome: &Outcome) {
        let (allowed, why) = match outcome {
            Outcome::Done { .. } => (true, "allowed".to_string()),
            Outcome::Mailed => (true, "confirmation link mailed".to_string()),
            Outcome::Granted(what) => (true, what.to_string()),
            Outcome::Refused(why) => (false, why.clone()),
        };
        let job = match outcome {
            Outcome::Done { job } => Some(*job),
            _ => None,
        };
        tracing::info!(
            target: "audit",
            user = %caller.identity.user,
            groups = ?caller.identity.groups,
            source = %caller.source,
            action = attempt.action,
            cluster = attempt.cluster,
            vm = attempt.vm,
            // Absent when no job was submitted.
            job,
            allowed,
            reason = %why,
            "VM action {}",
            if allowed { "allowed" } else { "refused" }
        );
        let event = timeline::audit_event(
            &caller.identity.user,
            attempt,
            job,
            allowed,
            &why,
            Timestamp::now(),
        );
        let events: Api<Event> = Api::namespaced(self.ctx.client.clone(), CLUSTER_EVENTS_NAMESPACE);
        // The answer does not wait for the Event.
        tokio::spawn(async move {
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "publishing a VM action Event failed");
            }
        });
    }

    /// Mails the refusal to `refusal_mail_to`, in the background (the answer does not
    /// wait). The rate limit on actions bounds how many such mails one user causes.
    fn mail_refusal(&self, caller: &Caller, attempt: &Attempt<'_>, why: &str) {
        let Some(smtp) = self.ctx.config.smtp_secret.clone() else {
            return;
        };
        if self.refusal_mail_to.is_empty() {
            return;
        }
        let (user, action, vm) = (&caller.identity.user, attempt.action, attempt.vm);
        let subject = format!("Refused: {user} {action} {vm}");
        let body = format!(
            "{user} (groups: {groups}) from {source} tried to {action} {vm} on cluster {cluster}, \
             a VM they do not own, and was refused:\n\n{why}\n",
            groups = caller.identity.groups.join(", "),
            source = caller.source,
            cluster = attempt.cluster,
        );
        let mails: Vec<crate::mail::Mail> = self
            .refusal_mail_to
            .iter()
            .map(|to| crate::mail::Mail {
                to: to.clone(),
                subject: subject.clone(),
                body: body.clone(),
            })
            .collect();
        let (client, namespace) = (self.ctx.client.clone(), self.ctx.config.secrets_namespace.clone());
        tokio::spawn(async move {
            let mailer = match crate::mail::Mailer::from_secret_ref(&client, &namespace, &smtp).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "mailing a refused VM action: no mailer");
                    return;
                }
            };
            for mail in &mails {
                if let Err(e) = mailer.send(mail).await {
                    tracing::warn!(error = %e, "mailing a refused VM action failed");
                }
            }
        });
    }
}

pub(super) struct Attempt<'a> {
    pub(super) action: &'a str,
    pub(super) cluster: &'a str,
    pub(super) vm: &'a str,
}

pub(super) enum Outcome {
    Done {
        job: u64,
    },
    Mailed,
    /// Allowed, no job: what was granted.
    Granted(&'static str),
    Refused(String),
}

/// Refuses with 403 naming the missing right, after auditing; `Ok` when allowed.
pub(super) fn check(
    state: &ApiState,
    index: &AuthzIndex,
    caller: &Caller,
    attempt: &Attempt<'_>,
    right: VmRight,
) -> Result<(), ApiError> {
    let decision = index.decide(
        &caller.principal(),
        &Request::Vm {
            cluster: attempt.cluster,
            instance: attempt.vm,
            right,
        },
    );
    if decision.allowed {
        return Ok(());
    }
    let why = format!(
        "missing right vms.{right} on {}/{}: {}",
        attempt.cluster,
        attempt.vm,
        index.describe(&decision)
    );
    state.audit(caller, attempt, &Outcome::Refused(why.clone()));
    let p = caller.principal();
    if !index.owners(attempt.cluster, attempt.vm).any(|owner| p.is(owner)) {
        state.mail_refusal(caller, attempt, &why);
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, why))
}

// --- views -------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceView<'a> {
    cluster: &'a str,
    name: &'a str,
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
    }
}

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Every VM the caller may view.
async fn list_instances(State(state): State<Arc<ApiState>>, caller: Caller) -> Result<Response, ApiError> {
    let inventories = state.ctx.inventory.all();
    if inventories.is_empty() {
        return Err(ApiError::unavailable(NO_INVENTORY_YET));
    }
    let index = state.index().await?;
    let p = caller.principal();
    let mut out = Vec::new();
    for inv in &inventories {
        for i in &inv.instances {
            let allowed = index
                .decide(
                    &p,
                    &Request::Vm {
                        cluster: &inv.cluster,
                        instance: &i.name,
                        right: VmRight::View,
                    },
                )
                .allowed;
            if allowed {
                let owner = inv.owner_of(i);
                out.push(view(
                    &inv.cluster,
                    i,
                    owner,
                    index.is_locked(&inv.cluster, &i.name),
                ));
            }
        }
    }
    Ok(Json(json!({ "instances": out })).into_response())
}

async fn show_instance(
    State(state): State<Arc<ApiState>>,
    Path((cluster, name)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (instance, owner) = state.instance(&cluster, &name)?;
    let index = state.index().await?;
    let decision = index.decide(
        &caller.principal(),
        &Request::Vm {
            cluster: &cluster,
            instance: &name,
            right: VmRight::View,
        },
    );
    if !decision.allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "missing right vms.view on {cluster}/{name}: {}",
                index.describe(&decision)
            ),
        ));
    }
    let locked = index.is_locked(&cluster, &name);
    Ok(Json(view(&cluster, &instance, owner, locked)).into_response())
}

// --- actions -----------------------------------------------------------------------

/// An action on a VM, as named in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Startup,
    Shutdown,
    Reboot,
    Migrate,
    ReplaceDisks,
    Export,
    Rename,
    Reinstall,
    Destroy,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Self::Startup,
        Self::Shutdown,
        Self::Reboot,
        Self::Migrate,
        Self::ReplaceDisks,
        Self::Export,
        Self::Rename,
        Self::Reinstall,
        Self::Destroy,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Shutdown => "shutdown",
            Self::Reboot => "reboot",
            Self::Migrate => "migrate",
            Self::ReplaceDisks => "replace-disks",
            Self::Export => "export",
            Self::Rename => "rename",
            Self::Reinstall => "reinstall",
            Self::Destroy => "destroy",
        }
    }

    pub fn right(self) -> VmRight {
        match self {
            Self::Startup => VmRight::Start,
            Self::Shutdown => VmRight::Shutdown,
            Self::Reboot => VmRight::Reboot,
            Self::Migrate => VmRight::Migrate,
            Self::ReplaceDisks => VmRight::ReplaceDisks,
            Self::Export => VmRight::Export,
            Self::Rename => VmRight::Rename,
            Self::Reinstall => VmRight::Reinstall,
            Self::Destroy => VmRight::Destroy,
        }
    }

    /// Needs a mailed confirmation.
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Rename | Self::Reinstall | Self::Destroy)
    }

    /// The body fields the action takes (camelCase, as in [`ActionParams`]).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Startup | Self::Destroy => &[],
            Self::Shutdown => &["timeoutSeconds"],
            Self::Reboot => &["type"],
            Self::Migrate => &["mode", "cleanup", "targetNode"],
            Self::ReplaceDisks => &["mode", "remoteNode", "iallocator", "disks"],
            Self::Export => &["targetNode", "mode", "shutdown", "removeInstance"],
            Self::Rename => &["newName"],
            Self::Reinstall => &["os"],
        }
    }
}

/// The optional JSON body of an action; which fields each action takes is
/// [`Action::fields`].
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParams {
    /// reboot: soft (default), hard or full.
    #[serde(default, rename = "type")]
    pub reboot_type: Option<String>,
    /// shutdown: seconds before Ganeti forces the VM off.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// rename: the new name.
    #[serde(default)]
    pub new_name: Option<String>,
    /// reinstall: the OS (default: the current one).
    #[serde(default)]
    pub os: Option<String>,
    /// migrate: live or non-live (default: the hypervisor's); replace-disks: one of
    /// Ganeti's four modes (default replace_auto); export: local (the default; remote
    /// exports are not offered).
    #[serde(default)]
    pub mode: Option<String>,
    /// migrate: clean up after a failed migration instead of migrating.
    #[serde(default)]
    pub cleanup: Option<bool>,
    /// migrate: the node to migrate to (instances on shared or no storage); export:
    /// the node that keeps the export (required).
    #[serde(default)]
    pub target_node: Option<String>,
    /// replace-disks with replace_new_secondary: the new secondary node...
    #[serde(default)]
    pub remote_node: Option<String>,
    /// ...or the allocator that chooses it.
    #[serde(default)]
    pub iallocator: Option<String>,
    /// replace-disks on primary or secondary: the disk indices (default: all).
    #[serde(default)]
    pub disks: Option<Vec<u8>>,
    /// export: shut the VM down first (Ganeti's default: yes).
    #[serde(default)]
    pub shutdown: Option<bool>,
    /// export: must not be true here (removing the VM is destroy, confirmed by mail).
    #[serde(default)]
    pub remove_instance: Option<bool>,
}

/// What to run, with its parameters checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Startup,
    Shutdown(Option<Duration>),
    Reboot(RebootType),
    Migrate(InstanceMigrate),
    ReplaceDisks(InstanceReplaceDisks),
    Export(InstanceExport),
    Rename(String),
    Reinstall(Option<String>),
    Destroy,
}

/// Checks an action's parameters (400 material). Pure.
pub fn plan(action: Action, body: &[u8]) -> Result<Plan, String> {
    let name = action.as_str();
    let object = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => return Err(format!("the body of {name} is a JSON object")),
            Err(e) => return Err(format!("the body is not valid JSON for {name}: {e}")),
        }
    };
    if let Some(key) = object.keys().find(|k| !action.fields().contains(&k.as_str())) {
        return Err(match action.fields() {
            [] => format!("{name} takes no {key}"),
            fields => format!("{name} takes no {key}; it takes {}", fields.join(", ")),
        });
    }
    let params: ActionParams = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("bad parameters for {name}: {e}"))?;
    let node = |field: &str, value: Option<String>| match value {
        Some(n) if !is_hostname(&n) => Err(format!("{field} {n:?} is not a valid node name")),
        v => Ok(v),
    };
    Ok(match action {
        Action::Startup => Plan::Startup,
        Action::Shutdown => match params.timeout_seconds {
            Some(t) if t > 3600 => return Err("timeoutSeconds is at most 3600".into()),
            t => Plan::Shutdown(t.map(Duration::from_secs)),
        },
        Action::Reboot => Plan::Reboot(match params.reboot_type.as_deref() {
            None | Some("soft") => RebootType::Soft,
            Some("hard") => RebootType::Hard,
            Some("full") => RebootType::Full,
            Some(other) => return Err(format!("type {other:?} is not one of soft, hard, full")),
        }),
        Action::Migrate => Plan::Migrate(InstanceMigrate {
            mode: match params.mode.as_deref() {
                None => None,
                Some("live") => Some(MigrationMode::Live),
                Some("non-live") => Some(MigrationMode::NonLive),
                Some(other) => return Err(format!("mode {other:?} is not one of live, non-live")),
            },
            cleanup: params.cleanup,
            target_node: node("targetNode", params.target_node)?,
        }),
        Action::ReplaceDisks => plan_replace_disks(params)?,
        Action::Export => {
            if let Some(mode) = params.mode.as_deref().filter(|m| *m != "local") {
                return Err(format!(
                    "mode {mode:?}: only local exports are offered (a remote one needs Ganeti's \
                     X509 handshake between clusters)"
                ));
            }
            if params.remove_instance == Some(true) {
                return Err(
                    "removeInstance cannot be true here: removing the VM is destroy, confirmed by mail"
                        .into(),
                );
            }
            let target = node("targetNode", params.target_node)?.ok_or("export needs targetNode")?;
            Plan::Export(InstanceExport::local(target, params.shutdown))
        }
        Action::Rename => {
            let name = params.new_name.ok_or("rename needs newName")?;
            if !is_hostname(&name) {
                return Err(format!("newName {name:?} is not a valid host name"));
            }
            Plan::Rename(name)
        }
        Action::Reinstall => {
            if let Some(os) = &params.os
                && !is_ganeti_name(os)
            {
                return Err(format!("os {os:?} is not a valid OS name"));
            }
            Plan::Reinstall(params.os)
        }
        Action::Destroy => Plan::Destroy,
    })
}

/// replace-disks: Ganeti's own argument checks (LUInstanceReplaceDisks), so a mistake is
/// a 400 rather than a failed job.
fn plan_replace_disks(params: ActionParams) -> Result<Plan, String> {
    let mode = match params.mode.as_deref() {
        None => ReplaceDisksMode::ReplaceAuto,
        Some(m) => ReplaceDisksMode::ALL
            .into_iter()
            .find(|x| x.as_str() == m)
            .ok_or_else(|| {
                let known: Vec<&str> = ReplaceDisksMode::ALL.iter().map(|x| x.as_str()).collect();
                format!("mode {m:?} is not one of {}", known.join(", "))
            })?,
    };
    if let Some(n) = params.remote_node.as_deref().filter(|n| !is_hostname(n)) {
        return Err(format!("remoteNode {n:?} is not a valid node name"));
    }
    if let Some(a) = params.iallocator.as_deref().filter(|a| !is_ganeti_name(a)) {
        return Err(format!("iallocator {a:?} is not a valid allocator name"));
    }
    let new_secondary = mode == ReplaceDisksMode::ReplaceNewSecondary;
    match (&params.remote_node, &params.iallocator) {
        (Some(_), Some(_)) => return Err("give remoteNode or iallocator, not both".into()),
        (None, None) if new_secondary => {
            return Err("replace_new_secondary needs remoteNode or iallocator".into());
        }
        (Some(_), _) | (_, Some(_)) if !new_secondary => {
            return Err("remoteNode and iallocator go with mode replace_new_secondary only".into());
        }
        _ => {}
    }
    let mut disks = params.disks.unwrap_or_default();
    if !disks.is_empty()
        && matches!(
            mode,
            ReplaceDisksMode::ReplaceAuto | ReplaceDisksMode::ReplaceNewSecondary
        )
    {
        return Err(format!(
            "mode {} replaces every disk: give no disks",
            mode.as_str()
        ));
    }
    // Ganeti's limit is 16 disks (indices 0 to 15).
    if let Some(d) = disks.iter().find(|d| **d >= 16) {
        return Err(format!("disk index {d} is out of range (0 to 15)"));
    }
    disks.sort_unstable();
    disks.dedup();
    Ok(Plan::ReplaceDisks(InstanceReplaceDisks {
        mode,
        disks,
        remote_node: params.remote_node,
        iallocator: params.iallocator,
    }))
}

/// An OS or allocator name as Ganeti names them (`debootstrap+bookworm`, `hail`).
fn is_ganeti_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

/// An RFC 1123 host name (what Ganeti accepts as an instance name).
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The `reason` Ganeti records with the job.
fn reason(user: &str, action: Action) -> String {
    format!("ganeti-operator console endpoint: {} by {user}", action.as_str())
}

async fn submit(
    client: &RapiClient,
    instance: &str,
    user: &str,
    action: Action,
    plan: &Plan,
) -> Result<JobId, RapiError> {
    let why = reason(user, action);
    match plan {
        Plan::Startup => client.startup_instance(instance, &why).await,
        Plan::Shutdown(timeout) => client.shutdown_instance(instance, *timeout, &why).await,
        Plan::Reboot(kind) => client.reboot_instance(instance, *kind, &why).await,
        Plan::Migrate(req) => client.migrate_instance(instance, req, &why).await,
        Plan::ReplaceDisks(req) => client.replace_instance_disks(instance, req, &why).await,
        Plan::Export(req) => client.export_instance(instance, req, &why).await,
        Plan::Rename(new_name) => {
            client
                .rename_instance(instance, new_name, true, false, &why)
                .await
        }
        Plan::Reinstall(os) => {
            let req = InstanceReinstall {
                os: os.clone(),
                start: Some(true),
                osparams: None,
            };
            client.reinstall_instance(instance, &req, &why).await
        }
        Plan::Destroy => client.remove_instance(instance, &why).await,
    }
}

async fn act(
    State(state): State<Arc<ApiState>>,
    Path((cluster, name, action)): Path<(String, String, String)>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(action) = Action::parse(&action) else {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "unknown action {action:?}; one of {}",
            known.join(", ")
        )));
    };
    let attempt = Attempt {
        action: action.as_str(),
        cluster: &cluster,
        vm: &name,
    };
    let plan = plan(action, &body).map_err(ApiError::bad_request)?;
    if let Err(wait) = state
        .limiter
        .lock()
        .expect("limiter lock")
        .take(&caller.identity.user, Instant::now())
    {
        state.audit(&caller, &attempt, &Outcome::Refused("rate limited".into()));
        let secs = wait.as_secs() + 1;
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many actions; try again in {secs} s"),
        )
        .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
        return Ok(r);
    }
    if let Err(e) = state.instance(&cluster, &name) {
        state.audit(&caller, &attempt, &Outcome::Refused(e.1.clone()));
        return Err(e);
    }
    let index = state.index().await?;
    check(&state, &index, &caller, &attempt, action.right())?;
    if action.is_fatal() {
        return request_confirmation(&state, &caller, &attempt, action, plan).await;
    }
    let client = state.client(&cluster)?;
    match submit(&client, &name, &caller.identity.user, action, &plan).await {
        Ok(job) => {
            state.audit(&caller, &attempt, &Outcome::Done { job: job.0 });
            Ok(
                Json(
                    json!({ "job": job.0, "cluster": cluster, "instance": name, "action": action.as_str() }),
                )
                .into_response(),
            )
        }
        Err(e) => {
            state.audit(&caller, &attempt, &Outcome::Refused(format!("Ganeti: {e}")));
            Err(rapi_error(&e))
        }
    }
}

/// 202: a confirmation link is on its way to the caller.
async fn request_confirmation(
    state: &ApiState,
    caller: &Caller,
    attempt: &Attempt<'_>,
    action: Action,
    plan: Plan,
) -> Result<Response, ApiError> {
    let config = &state.ctx.config;
    let (Some(smtp), Some(public_url)) = (config.smtp_secret.as_deref(), config.public_url.as_deref()) else {
        return Err(ApiError::unavailable(
            "confirmation mails are not configured (--smtp-secret and --public-url)",
        ));
    };
    // A user may have several profiles (admins keep anyone's): the first that yields an
    // address wins, else the username when it is an address.
    let profiles = Api::<UserProfile>::all(state.ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let user = caller.identity.user.as_str();
    let address = profiles
        .iter()
        .filter(|p| p.spec.username == user)
        .find_map(|p| crate::mail::address_for(user, Some(p), config.mail_unverified))
        .or_else(|| crate::mail::address_for(user, None, config.mail_unverified));
    let Some(to) = address else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no verified email address for you: set and verify one in your UserProfile",
        ));
    };
    let (new_name, os) = match plan {
        Plan::Rename(n) => (Some(n), None),
        Plan::Reinstall(os) => (None, os),
        _ => (None, None),
    };
    let claims = Claims {
        user: caller.identity.user.clone(),
        groups: caller.identity.groups.clone(),
        cluster: attempt.cluster.to_string(),
        instance: attempt.vm.to_string(),
        action: action.as_str().to_string(),
        new_name,
        os,
        nonce: crate::controllers::profile::link::nonce(),
        expires: now_secs() + confirm::CONFIRM_TTL_SECS,
    };
    let link = format!(
        "{}{PREFIX}/confirm?token={}",
        public_url.trim_end_matches('/'),
        confirm::sign(&state.confirm_key, &claims)
    );
    let what = match &claims.new_name {
        Some(n) => format!("rename {} to {n}", attempt.vm),
        None => format!("{} {}", action.as_str(), attempt.vm),
    };
    let mail = crate::mail::Mail {
        to,
        subject: format!("Confirm: {what}"),
        body: format!(
            "You asked to {what} (cluster {}).\n\nTo go ahead, open this link within {} minutes:\n\n{link}\n\n\
             The link works once. If you did not ask for this, ignore this mail.\n",
            attempt.cluster,
            confirm::CONFIRM_TTL_SECS / 60
        ),
    };
    let mailer = crate::mail::Mailer::from_secret_ref(&state.ctx.client, &config.secrets_namespace, smtp)
        .await
        .map_err(|e| ApiError::unavailable(format!("mail is not available: {e}")))?;
    if let Err(e) = mailer.send(&mail).await {
        tracing::warn!(error = %e, "mailing a confirmation link failed");
        return Err(ApiError::unavailable(
            "the confirmation mail could not be sent; try again",
        ));
    }
    state.audit(caller, attempt, &Outcome::Mailed);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "message": format!("a confirmation link was mailed to you; it expires in {} minutes", confirm::CONFIRM_TTL_SECS / 60),
            "cluster": attempt.cluster, "instance": attempt.vm, "action": action.as_str(),
        })),
    )
        .into_response())
}

// --- confirmation links ------------------------------------------------------------

/// The confirmation links' records in [`SpentTokens`].
const SPENT_PURPOSE: &str = "confirm";

#[derive(Deserialize)]
struct TokenParam {
    #[serde(default)]
    token: String,
}

fn link_refused(e: &LinkError) -> Response {
    let status = match e {
        LinkError::Malformed => StatusCode::BAD_REQUEST,
        LinkError::BadSignature => StatusCode::FORBIDDEN,
        LinkError::Expired | LinkError::Used => StatusCode::GONE,
    };
    page(
        status,
        "Link not accepted",
        &format!("<p>{}.</p>", escape(&e.to_string())),
    )
}

/// GET shows a button only: mail scanners fetch links, and must not destroy VMs.
async fn confirm_page(State(state): State<Arc<ApiState>>, Query(q): Query<TokenParam>) -> Response {
    let claims = match confirm::verify(&state.confirm_key, &q.token, now_secs()) {
        Ok(c) => c,
        Err(e) => return link_refused(&e),
    };
    let what = match &claims.new_name {
        Some(n) => format!(
            "rename <b>{}</b> to <b>{}</b>",
            escape(&claims.instance),
            escape(n)
        ),
        None => format!("{} <b>{}</b>", escape(&claims.action), escape(&claims.instance)),
    };
    page(
        StatusCode::OK,
        "Confirm",
        &format!(
            "<p>{what} on cluster {}?</p><form method=\"post\" action=\"{PREFIX}/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\">Confirm</button></form>",
            escape(&claims.cluster),
            escape(&q.token)
        ),
    )
}

/// POST runs the action: once, if the user still holds the right.
async fn confirm_action(
    State(state): State<Arc<ApiState>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(q): Form<TokenParam>,
) -> Response {
    let claims = match confirm::verify(&state.confirm_key, &q.token, now_secs()) {
        Ok(c) => c,
        Err(e) => return link_refused(&e),
    };
    let caller = Caller {
        identity: Identity {
            user: claims.user.clone(),
            groups: claims.groups.clone(),
        },
        source: connect
            .map(|c| c.0.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
    };
    let Some(action) = Action::parse(&claims.action) else {
        return link_refused(&LinkError::Malformed);
    };
    let attempt = Attempt {
        action: action.as_str(),
        cluster: &claims.cluster,
        vm: &claims.instance,
    };
    match state
        .spent
        .spend(SPENT_PURPOSE, &claims.nonce, claims.expires)
        .await
    {
        Ok(()) => {}
        Err(SpendError::AlreadySpent) => {
            state.audit(
                &caller,
                &attempt,
                &Outcome::Refused("confirmation link reused".into()),
            );
            return link_refused(&LinkError::Used);
        }
        Err(e @ SpendError::Store(_)) => {
            tracing::warn!(error = %e, "recording a followed confirmation link failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not done",
                "<p>The link could not be checked just now; try again in a moment.</p>",
            );
        }
    }
    let result = async {
        state.instance(&claims.cluster, &claims.instance)?;
        let index = state.index().await?;
        check(&state, &index, &caller, &attempt, action.right())?;
        let client = state.client(&claims.cluster)?;
        let plan = match (action, &claims.new_name) {
            (Action::Rename, Some(n)) => Plan::Rename(n.clone()),
            (Action::Reinstall, _) => Plan::Reinstall(claims.os.clone()),
            _ => Plan::Destroy,
        };
        submit(&client, &claims.instance, &claims.user, action, &plan)
            .await
            .map_err(|e| {
                state.audit(&caller, &attempt, &Outcome::Refused(format!("Ganeti: {e}")));
                rapi_error(&e)
            })
    }
    .await;
    match result {
        Ok(job) => {
            state.audit(&caller, &attempt, &Outcome::Done { job: job.0 });
            page(
                StatusCode::OK,
                "Confirmed",
                &format!(
                    "<p>{} of <b>{}</b> submitted as Ganeti job <span id=\"job\">{}</span>.</p>",
                    escape(action.as_str()),
                    escape(&claims.instance),
                    job.0
                ),
            )
        }
        Err(ApiError(status, message)) => {
            // Nothing was submitted: the link stays good for another try, except when
            // the right is gone (the same answer would come again).
            if status != StatusCode::FORBIDDEN
                && let Err(e) = state.spent.refund(SPENT_PURPOSE, &claims.nonce).await
            {
                tracing::warn!(error = %e, "giving a confirmation link back failed: it stays used");
            }
            page(status, "Not done", &format!("<p>{}</p>", escape(&message)))
        }
    }
}

// --- jobs --------------------------------------------------------------------------

/// Whether `user` submitted the job through this API (through any replica): the
/// `reason=` we submit with names the user, and Ganeti keeps it in the job. Exact
/// matches only: an action name has no space, so `<action> by <user>` cannot be
/// forged by another user's name. Pure.
fn submitted_by(job: &Job, user: &str) -> bool {
    job.user_reasons()
        .any(|r| Action::ALL.iter().any(|a| r == reason(user, *a)))
}

/// A job the caller submitted, or any job with `system.jobs`.
async fn show_job(
    State(state): State<Arc<ApiState>>,
    Path((cluster, id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("job id {id:?} is not a number")))?;
    let client = state.client(&cluster)?;
    // Fetched first: whose job it is, is in the job. (Job ids count up: that a job
    // exists is no secret.)
    let job = client.job(JobId(id)).await.map_err(|e| rapi_error(&e))?;
    if !submitted_by(&job, &caller.identity.user) {
        let index = state.index().await?;
        let decision = index.decide(&caller.principal(), &Request::System(SystemRight::Jobs));
        if !decision.allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "missing right system.jobs (job {id} on {cluster} was not submitted by you): {}",
                    index.describe(&decision)
                ),
            ));
        }
    }
    let failure = job.failure().map(|f| f.to_string());
    Ok(Json(json!({
        "id": job.id,
        "cluster": cluster,
        "status": job.status,
        "summary": job.summary,
        "opstatus": job.opstatus,
        "final": job.status.is_final(),
        "failure": failure,
    }))
    .into_response())
}

// --- the timeline ------------------------------------------------------------------

/// Events are listed in pages; past this many the rest is not looked at (Events expire
/// after an hour by default, so a busy cluster rarely has more).
const EVENTS_SCANNED: usize = 20_000;

async fn list_events_matching(api: Api<Event>, selector: &str) -> Result<Vec<Event>, ApiError> {
    let mut params = ListParams::default().fields(selector).limit(500);
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

/// The caller's timeline: see [`timeline`].
async fn list_events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limit = timeline::limit(query.as_deref()).map_err(ApiError::bad_request)?;
    let client = &state.ctx.client;
    let (vm_events, application_events, applications, index) = tokio::try_join!(
        list_events_matching(
            Api::namespaced(client.clone(), CLUSTER_EVENTS_NAMESPACE),
            timeline::VM_EVENTS_SELECTOR
        ),
        list_events_matching(Api::all(client.clone()), timeline::APPLICATION_EVENTS_SELECTOR),
        async {
            let list = Api::<InstanceApplication>::all(client.clone())
                .list(&ListParams::default())
                .await?;
            Ok(list.items)
        },
        state.index(),
    )?;
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
    let entries = timeline::timeline(
        &vm_events,
        &application_events,
        &applications,
        &p,
        may_view,
        limit,
    );
    Ok(Json(json!({ "events": entries })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn actions_parse_and_map_to_rights() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("explode"), None);
        assert_eq!(Action::Startup.right(), VmRight::Start);
        assert!(Action::Destroy.is_fatal() && !Action::Reboot.is_fatal());
        assert_eq!(
            Action::parse("replace-disks").map(Action::right),
            Some(VmRight::ReplaceDisks)
        );
        assert!(!Action::Export.is_fatal() && !Action::Migrate.is_fatal());
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(plan(Action::Reboot, b""), Ok(Plan::Reboot(RebootType::Soft)));
        assert_eq!(
            plan(Action::Reboot, br#"{"type":"hard"}"#),
            Ok(Plan::Reboot(RebootType::Hard))
        );
        assert!(
            plan(Action::Reboot, br#"{"type":"gentle"}"#)
                .unwrap_err()
                .contains("gentle")
        );
        assert_eq!(
            plan(Action::Shutdown, br#"{"timeoutSeconds":30}"#),
            Ok(Plan::Shutdown(Some(Duration::from_secs(30))))
        );
        assert!(plan(Action::Shutdown, br#"{"timeoutSeconds":99999}"#).is_err());
        assert!(
            plan(Action::Startup, br#"{"timeoutSeconds":3}"#)
                .unwrap_err()
                .contains("takes no")
        );
        assert!(
            plan(Action::Startup, b"{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(plan(Action::Startup, br#"{"bogus":1}"#).is_err());
        assert!(plan(Action::Rename, b"").unwrap_err().contains("newName"));
        assert!(plan(Action::Rename, br#"{"newName":"bad name"}"#).is_err());
        assert_eq!(
            plan(Action::Rename, br#"{"newName":"vm2.example.org"}"#),
            Ok(Plan::Rename("vm2.example.org".into()))
        );
        assert_eq!(plan(Action::Reinstall, b"  "), Ok(Plan::Reinstall(None)));
        assert!(plan(Action::Reinstall, br#"{"os":"x;rm"}"#).is_err());
        assert_eq!(plan(Action::Destroy, b""), Ok(Plan::Destroy));
        assert!(plan(Action::Destroy, b"[]").unwrap_err().contains("JSON object"));
    }

    #[test]
    fn migrate_parameters() {
        assert_eq!(
            plan(Action::Migrate, b""),
            Ok(Plan::Migrate(InstanceMigrate::default()))
        );
        assert_eq!(
            plan(
                Action::Migrate,
                br#"{"mode":"non-live","cleanup":true,"targetNode":"node2.example.org"}"#
            ),
            Ok(Plan::Migrate(InstanceMigrate {
                mode: Some(MigrationMode::NonLive),
                cleanup: Some(true),
                target_node: Some("node2.example.org".into()),
            }))
        );
        assert!(
            plan(Action::Migrate, br#"{"mode":"teleport"}"#)
                .unwrap_err()
                .contains("live, non-live")
        );
        assert!(plan(Action::Migrate, br#"{"cleanup":"yes"}"#).is_err());
        assert!(plan(Action::Migrate, br#"{"targetNode":"no such node"}"#).is_err());
        // Another action's field is named as such.
        let e = plan(Action::Migrate, br#"{"remoteNode":"n2"}"#).unwrap_err();
        assert!(
            e.contains("migrate takes no remoteNode; it takes mode, cleanup, targetNode"),
            "{e}"
        );
    }

    #[test]
    fn replace_disks_parameters_follow_ganetis_rules() {
        let ok = |body: &[u8]| match plan(Action::ReplaceDisks, body) {
            Ok(Plan::ReplaceDisks(r)) => r,
            other => panic!("{other:?}"),
        };
        let auto = ok(b"");
        assert_eq!((auto.mode, auto.disks.len()), (ReplaceDisksMode::ReplaceAuto, 0));
        let secondary = ok(br#"{"mode":"replace_on_secondary","disks":[2,0,2]}"#);
        assert_eq!(
            (secondary.mode, secondary.disks),
            (ReplaceDisksMode::ReplaceOnSecondary, vec![0, 2])
        );
        let moved = ok(br#"{"mode":"replace_new_secondary","remoteNode":"node3.example.org"}"#);
        assert_eq!(moved.remote_node.as_deref(), Some("node3.example.org"));
        assert_eq!(
            ok(br#"{"mode":"replace_new_secondary","iallocator":"hail"}"#)
                .iallocator
                .as_deref(),
            Some("hail")
        );
        let err = |body: &[u8]| plan(Action::ReplaceDisks, body).unwrap_err();
        assert!(err(br#"{"mode":"replace_everything"}"#).contains("replace_on_primary"));
        assert!(err(br#"{"mode":"replace_new_secondary"}"#).contains("needs remoteNode or iallocator"));
        assert!(
            err(br#"{"mode":"replace_new_secondary","remoteNode":"n3","iallocator":"hail"}"#)
                .contains("not both")
        );
        assert!(
            err(br#"{"mode":"replace_on_primary","remoteNode":"n3"}"#).contains("replace_new_secondary only")
        );
        assert!(err(br#"{"disks":[0]}"#).contains("give no disks"));
        assert!(err(br#"{"mode":"replace_on_primary","disks":[16]}"#).contains("out of range"));
        assert!(err(br#"{"mode":"replace_on_primary","disks":[-1]}"#).contains("bad parameters"));
        assert!(err(br#"{"mode":"replace_new_secondary","iallocator":"ha il"}"#).contains("allocator"));
    }

    #[test]
    fn export_parameters() {
        assert_eq!(
            plan(
                Action::Export,
                br#"{"targetNode":"node2.example.org","shutdown":false}"#
            ),
            Ok(Plan::Export(InstanceExport::local(
                "node2.example.org",
                Some(false)
            )))
        );
        assert_eq!(
            plan(
                Action::Export,
                br#"{"targetNode":"n2","mode":"local","removeInstance":false}"#
            ),
            Ok(Plan::Export(InstanceExport::local("n2", None)))
        );
        let err = |body: &[u8]| plan(Action::Export, body).unwrap_err();
        assert!(err(b"").contains("needs targetNode"));
        assert!(err(br#"{"targetNode":"n2","mode":"remote"}"#).contains("only local"));
        assert!(err(br#"{"targetNode":"n2","removeInstance":true}"#).contains("destroy"));
        assert!(err(br#"{"targetNode":"n2","cleanup":true}"#).contains("export takes no cleanup"));
    }

    #[test]
    fn a_job_is_the_users_whose_name_its_reason_carries() {
        let job = |reason: &str| -> Job {
            serde_json::from_value(json!({"id": 1, "status": "success",
                "ops": [{"reason": [["gnt:user", reason, 1], ["gnt:library:rlib2:instances_name_reboot", "", 2]]}]}))
            .unwrap()
        };
        let alices = job(&reason("alice", Action::Reboot));
        assert!(submitted_by(&alices, "alice"));
        assert!(!submitted_by(&alices, "bob"));
        assert!(!submitted_by(&alices, "ali"));
        // A user named to look like the tail of someone else's reason is still themselves.
        let tricky = job(&reason("x by alice", Action::Migrate));
        assert!(submitted_by(&tricky, "x by alice"));
        assert!(!submitted_by(&tricky, "alice"));
        // Another tool's reason, even naming alice, is not ours.
        assert!(!submitted_by(&job("console endpoint: reboot by alice"), "alice"));
        let untagged: Job = serde_json::from_value(json!({"id": 2, "status": "running"})).unwrap();
        assert!(!submitted_by(&untagged, "alice"));
    }

    #[test]
    fn the_reason_names_the_user() {
        assert_eq!(
            reason("alice", Action::Reboot),
            "ganeti-operator console endpoint: reboot by alice"
        );
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let expected = [
            ("/instances", "get"),
            ("/instances/{cluster}/{name}", "get"),
            ("/instances/{cluster}/{name}/{action}", "post"),
            ("/instances/{cluster}/{name}/console", "post"),
            ("/jobs/{cluster}/{id}", "get"),
            ("/events", "get"),
            ("/confirm", "get"),
            ("/confirm", "post"),
            ("/openapi.json", "get"),
        ];
        for (path, method) in expected {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing from openapi.json"
            );
        }
        assert_eq!(paths.len(), 8, "openapi.json documents a route the router lacks");
        let actions: Vec<&str> = doc["paths"]["/instances/{cluster}/{name}/{action}"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "action")
            .unwrap()["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(actions, known);
    }
}
