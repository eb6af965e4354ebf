//! The JSON API under `/api/v1`: a user's VMs and the actions on them.
//!
//! Every request carries a bearer token (TokenReview, see [`super::auth`]); the
//! authorization engine decides with the roles, bindings and inventory of the moment.
//! Plain actions (startup, shutdown, reboot) submit a Ganeti job at once; fatal ones
//! (rename, reinstall, destroy) answer 202 and mail a confirmation link. Every attempt,
//! allowed or not, leaves an audit line (target `audit`) and a Kubernetes Event on the
//! GanetiCluster.
//!
//! The inventory and RAPI clients are the controllers': a replica that is not the leader
//! has none and answers 503 (route the API to the leader, or retry).

use super::auth::{Authenticator, Identity, bearer};
use super::confirm::{self, Claims, ConfirmKey, LinkError, UsedNonces};
use super::ratelimit::Limiter;
use crate::api::role::{SystemRight, VmRight};
use crate::api::{Role, RoleBinding, UserProfile};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::controllers::{Context, FIELD_MANAGER};
use crate::inventory::Instance;
use crate::rapi::{InstanceReinstall, JobId, RapiClient, RapiError, RebootType};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the routes below are mounted.
pub const PREFIX: &str = "/api/v1";
/// Actions per user: a burst of this many, then one per [`RATE_EVERY`].
const RATE_BURST: u32 = 10;
const RATE_EVERY: Duration = Duration::from_secs(6);
/// Jobs remembered as submitted by whom (who may follow them without `system.jobs`).
const MAX_JOBS_REMEMBERED: usize = 10_000;

/// The OpenAPI document of this API (hand-written; a test checks it against the routes).
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the API handlers share.
pub struct ApiState {
    ctx: Arc<Context>,
    auth: Authenticator,
    limiter: Mutex<Limiter>,
    confirm_key: ConfirmKey,
    used: Mutex<UsedNonces>,
    /// (cluster, job id) → the user who submitted it.
    jobs: Mutex<HashMap<(String, u64), String>>,
    recorder: Recorder,
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
            used: Mutex::default(),
            jobs: Mutex::default(),
            recorder: Recorder::new(ctx.client.clone(), Reporter::from(FIELD_MANAGER.to_string())),
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
        .route("/jobs/{cluster}/{id}", get(show_job))
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
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn unavailable(message: impl Into<String>) -> Self {
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

fn rapi_error(e: &RapiError) -> ApiError {
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
    async fn index(&self) -> Result<AuthzIndex, ApiError> {
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
    fn instance(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<(Instance, Option<crate::api::Subject>), ApiError> {
        let Some(inv) = self.ctx.inventory.get(cluster) else {
            if self.ctx.inventory.all().is_empty() {
                return Err(ApiError::unavailable(
                    "no cluster inventory on this replica yet (it is not the leader, or the first read is under way)",
                ));
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

    fn client(&self, cluster: &str) -> Result<Arc<RapiClient>, ApiError> {
        self.ctx
            .clusters
            .client(cluster)
            .ok_or_else(|| ApiError::unavailable(format!("no RAPI client for {cluster} on this replica yet")))
    }

    /// One audit line and one Event per attempt.
    fn audit(&self, caller: &Caller, attempt: &Attempt<'_>, outcome: &Outcome) {
        let (allowed, why) = match outcome {
            Outcome::Done { .. } => (true, "allowed".to_string()),
            Outcome::Mailed => (true, "confirmation link mailed".to_string()),
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
        let note = match job {
            Some(j) => format!(
                "{} {} {}: job {j}",
                caller.identity.user, attempt.action, attempt.vm
            ),
            None => format!(
                "{} {} {}: {why}",
                caller.identity.user, attempt.action, attempt.vm
            ),
        };
        let event = Event {
            type_: if allowed {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: if allowed {
                "VmActionAllowed"
            } else {
                "VmActionRefused"
            }
            .into(),
            // Event notes are limited to 1 kB.
            note: Some(note.chars().take(1000).collect()),
            action: "VmAction".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
            kind: Some("GanetiCluster".into()),
            name: Some(attempt.cluster.to_string()),
            ..Default::default()
        };
        let recorder = self.recorder.clone();
        // The answer does not wait for the Event.
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
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

    fn remember_job(&self, cluster: &str, job: u64, user: &str) {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if jobs.len() >= MAX_JOBS_REMEMBERED {
            // Oldest first would need more bookkeeping; job ids grow, so drop the lower half.
            let mut ids: Vec<u64> = jobs.keys().map(|(_, id)| *id).collect();
            ids.sort_unstable();
            let cut = ids[ids.len() / 2];
            jobs.retain(|(_, id), _| *id >= cut);
        }
        jobs.insert((cluster.to_string(), job), user.to_string());
    }
}

struct Attempt<'a> {
    action: &'a str,
    cluster: &'a str,
    vm: &'a str,
}

enum Outcome {
    Done { job: u64 },
    Mailed,
    Refused(String),
}

/// Refuses with 403 naming the missing right, after auditing; `Ok` when allowed.
fn check(
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
        return Err(ApiError::unavailable(
            "no cluster inventory on this replica yet (it is not the leader, or the first read is under way)",
        ));
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
    Rename,
    Reinstall,
    Destroy,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Self::Startup,
        Self::Shutdown,
        Self::Reboot,
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
            Self::Rename => VmRight::Rename,
            Self::Reinstall => VmRight::Reinstall,
            Self::Destroy => VmRight::Destroy,
        }
    }

    /// Needs a mailed confirmation.
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Rename | Self::Reinstall | Self::Destroy)
    }
}

/// The optional JSON body of an action.
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
}

/// What to run, with its parameters checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Startup,
    Shutdown(Option<Duration>),
    Reboot(RebootType),
    Rename(String),
    Reinstall(Option<String>),
    Destroy,
}

/// Checks an action's parameters (400 material). Pure.
pub fn plan(action: Action, body: &[u8]) -> Result<Plan, String> {
    let params: ActionParams = if body.iter().all(u8::is_ascii_whitespace) {
        ActionParams::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| format!("the body is not valid JSON for {}: {e}", action.as_str()))?
    };
    let unexpected = |field: &str| Err(format!("{} takes no {field}", action.as_str()));
    if params.reboot_type.is_some() && action != Action::Reboot {
        return unexpected("type");
    }
    if params.timeout_seconds.is_some() && action != Action::Shutdown {
        return unexpected("timeoutSeconds");
    }
    if params.new_name.is_some() && action != Action::Rename {
        return unexpected("newName");
    }
    if params.os.is_some() && action != Action::Reinstall {
        return unexpected("os");
    }
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
        Action::Rename => {
            let name = params.new_name.ok_or("rename needs newName")?;
            if !is_hostname(&name) {
                return Err(format!("newName {name:?} is not a valid host name"));
            }
            Plan::Rename(name)
        }
        Action::Reinstall => {
            if let Some(os) = &params.os
                && (os.is_empty()
                    || os.len() > 128
                    || !os
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c)))
            {
                return Err(format!("os {os:?} is not a valid OS name"));
            }
            Plan::Reinstall(params.os)
        }
        Action::Destroy => Plan::Destroy,
    })
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
            state.remember_job(&cluster, job.0, &caller.identity.user);
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

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

// --- confirmation links ------------------------------------------------------------

#[derive(Deserialize)]
struct TokenParam {
    #[serde(default)]
    token: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    );
    (status, Html(html)).into_response()
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
    if let Err(e) = state.used.lock().expect("nonces lock").spend(&claims, now_secs()) {
        state.audit(
            &caller,
            &attempt,
            &Outcome::Refused("confirmation link reused".into()),
        );
        return link_refused(&e);
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
            state.remember_job(&claims.cluster, job.0, &claims.user);
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
            if status != StatusCode::FORBIDDEN {
                state.used.lock().expect("nonces lock").refund(&claims);
            }
            page(status, "Not done", &format!("<p>{}</p>", escape(&message)))
        }
    }
}

// --- jobs --------------------------------------------------------------------------

/// A job the caller submitted here, or any job with `system.jobs`.
async fn show_job(
    State(state): State<Arc<ApiState>>,
    Path((cluster, id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("job id {id:?} is not a number")))?;
    let own = state
        .jobs
        .lock()
        .expect("jobs lock")
        .get(&(cluster.clone(), id))
        .is_some_and(|u| *u == caller.identity.user);
    if !own {
        let index = state.index().await?;
        let decision = index.decide(&caller.principal(), &Request::System(SystemRight::Jobs));
        if !decision.allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "missing right system.jobs (job {id} on {cluster} was not submitted by you here): {}",
                    index.describe(&decision)
                ),
            ));
        }
    }
    let client = state.client(&cluster)?;
    let job = client.job(JobId(id)).await.map_err(|e| rapi_error(&e))?;
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
            ("/jobs/{cluster}/{id}", "get"),
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
        assert_eq!(paths.len(), 6, "openapi.json documents a route the router lacks");
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
