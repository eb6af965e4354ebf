//! The JSON API under `/api/v1`: a user's VMs and the actions on them.
//!
//! Every request carries a bearer token (TokenReview, see [`super::auth`]). Listings
//! are decided on the inventory and the watched roles and bindings
//! ([`crate::access::rules`]); every action, console ticket and confirmation link is
//! decided by [`crate::access`] on the VM as Ganeti has it at that moment and pinned
//! to its UUID. Plain actions (startup, shutdown, reboot, migrate, replace-disks,
//! export) submit a Ganeti job at once; fatal ones (rename, reinstall, destroy) answer
//! 202 and mail a confirmation link. Every attempt, allowed or not, leaves an audit
//! line (target `audit`) and a Kubernetes Event on the GanetiCluster whose `related`
//! object is the VM, with its UUID (see [`timeline::audit_event`]); `GET /events` reads
//! them back as the caller's timeline.
//!
//! Every replica serves the API: the leader's GanetiCluster controller and a follower's
//! read-only reader fill the same inventory and RAPI clients. A replica answers 503
//! only until its first read of a cluster. Who may follow a job is read from the job
//! itself (the `reason=` we submit names the user), so any replica answers for jobs
//! submitted through any other.

pub(in crate::server) mod actions;
mod clusters;
mod events;
mod jobs;
mod links;
mod timeline;
mod views;

use super::auth::{Authenticator, Identity, bearer};
use super::ratelimit::Limiter;
use super::spent::SpentTokens;
use crate::access::rules::Rules;
use crate::access::{self, Pinned, Refusal, VmRef};
use crate::api::role::VmRight;
use crate::authz::Principal;
use crate::profile::seen::LastSeen;
use crate::rapi::{RapiClient, RapiError};
use crate::shared::Shared;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
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
/// At most one refusal mail per user and VM in this time: the admins hear of an
/// attempt, not of every retry of a script.
const REFUSAL_MAIL_EVERY: Duration = Duration::from_secs(3600);
/// Where the Events of cluster-scoped objects (GanetiClusters) go, as kube's Recorder
/// puts them.
const CLUSTER_EVENTS_NAMESPACE: &str = "default";
/// The 503 of a replica whose first read of the clusters is under way.
const NO_INVENTORY_YET: &str = "no cluster inventory on this replica yet: its first read is under way";

/// The OpenAPI document of this API (hand-written; a test checks it against the routes).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the API handlers share.
pub struct ApiState {
    /// Inventory, RAPI clients, keys, settings: built in `main`.
    pub(super) shared: Shared,
    /// Roles and bindings from watches (the snapshot in `shared`).
    pub(super) rules: Rules,
    auth: Authenticator,
    limiter: Mutex<Limiter>,
    /// Followed confirmation links, in the API server: once across replicas and restarts.
    pub(super) spent: SpentTokens,
    /// Told of refused attempts on VMs the caller does not own (ganetimgr does this).
    refusal_mail_to: Vec<String>,
    /// When each (user, cluster, VM) last caused a refusal mail.
    refusals_mailed: Mutex<HashMap<(String, String, String), Instant>>,
    /// Writes `lastSeen` of the users it authenticates (here, the console, the aggregated API).
    seen: LastSeen,
}

impl ApiState {
    pub fn new(shared: Shared, token_audiences: Vec<String>, refusal_mail_to: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            refusal_mail_to,
            auth: Authenticator::new(shared.client.clone(), token_audiences),
            limiter: Mutex::new(Limiter::new(RATE_BURST, RATE_EVERY)),
            spent: SpentTokens::new(shared.client.clone(), &shared.config.secrets_namespace),
            refusals_mailed: Mutex::default(),
            seen: LastSeen::new(shared.client.clone()),
            rules: shared.rules.clone(),
            shared,
        })
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/instances", get(views::list_instances))
        .route("/instances/{cluster}/{name}", get(views::show_instance))
        .route("/instances/{cluster}/{name}/{action}", post(actions::act))
        .route(
            "/instances/{cluster}/{name}/console",
            post(super::console::issue_ticket),
        )
        .route("/clusters", get(clusters::list_clusters))
        .route("/clusters/{cluster}/nodes", get(clusters::list_nodes))
        .route("/clusters/{cluster}/tags", post(clusters::cluster_tags))
        .route("/jobs/{cluster}/{id}", get(jobs::show_job))
        .route("/events", get(events::list_events))
        .route("/confirm", get(links::confirm_page).post(links::confirm_action))
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
        .shared
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), class.as_str()])
        .inc();
    response
}

async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
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

impl From<&Refusal> for ApiError {
    fn from(r: &Refusal) -> Self {
        let status = match r {
            Refusal::NotFound { .. } => StatusCode::NOT_FOUND,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Replaced { .. } | Refusal::ObservedOnly { .. } => StatusCode::CONFLICT,
        };
        Self::new(status, r.to_string())
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
    /// Who Kubernetes says the caller is (what tickets and links carry).
    pub identity: Identity,
    /// The authenticated groups plus the caller's profile groups: what decides.
    pub groups: Vec<String>,
    pub source: String,
}

impl Caller {
    pub fn new(identity: Identity, source: String, rules: &crate::access::rules::Snapshot) -> Self {
        let groups = rules.effective_groups(&identity.user, &identity.groups);
        Self {
            identity,
            groups,
            source,
        }
    }

    pub(super) fn principal(&self) -> Principal<'_> {
        Principal::new(&self.identity.user, &self.groups)
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
            Some(identity) => Ok(state.caller(identity, source)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Kubernetes API server does not accept this token for this service",
            )),
        }
    }
}

// --- the decision, and audit -------------------------------------------------------

impl ApiState {
    /// The caller of a request the operator authenticated (a token, a console ticket,
    /// the front proxy), recorded as seen.
    pub(in crate::server) fn caller(&self, identity: Identity, source: String) -> Caller {
        let rules = self.rules.current();
        // Before the first list an empty profile list means "unknown", not "none".
        if rules.listed {
            self.seen.saw(&identity.user, &rules.profiles);
        }
        Caller::new(identity, source, &rules)
    }

    /// 503 while this replica has read no cluster yet, 404 for a cluster it does not know.
    pub(super) fn known_cluster(
        &self,
        cluster: &str,
    ) -> Result<Arc<crate::inventory::ClusterInventory>, ApiError> {
        match self.shared.inventory.get(cluster) {
            Some(inv) => Ok(inv),
            None if self.shared.inventory.all().is_empty() => Err(ApiError::unavailable(NO_INVENTORY_YET)),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no cluster {cluster}"),
            )),
        }
    }

    /// 503 until the watches have listed the roles and bindings once (before that an
    /// empty list means "unknown", not "none").
    pub(super) async fn rules_loaded(&self) -> Result<(), ApiError> {
        if self.rules.ready().await {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "roles and bindings are not loaded yet on this replica; try again",
            ))
        }
    }

    pub(super) fn client(&self, cluster: &str) -> Result<Arc<RapiClient>, ApiError> {
        self.shared
            .clusters
            .client(cluster)
            .ok_or_else(|| ApiError::unavailable(format!("no RAPI client for {cluster} on this replica yet")))
    }

    /// "May this caller do this to this VM, now": reads the VM from Ganeti by exact
    /// name and decides on it ([`access::authorize`]). A refusal is audited (and
    /// mailed to the admins when the VM is not the caller's) before it is returned.
    pub(super) async fn authorize(
        &self,
        caller: &Caller,
        vm: VmRef<'_>,
        action: &str,
        right: VmRight,
    ) -> Result<(Pinned, Arc<RapiClient>), ApiError> {
        let attempt = Attempt {
            action,
            cluster: vm.cluster,
            vm: vm.name,
            uuid: vm.uuid,
        };
        let refuse = |e: ApiError| {
            self.audit(caller, &attempt, &Outcome::Refused(e.1.clone()));
            e
        };
        let inv = self.known_cluster(vm.cluster).map_err(refuse)?;
        let client = self.client(vm.cluster).map_err(refuse)?;
        self.rules_loaded().await.map_err(refuse)?;
        let fresh = access::read_exact(&client, vm.name)
            .await
            .map_err(|e| refuse(rapi_error(&e)))?;
        let snapshot = self.rules.current();
        let principal = caller.principal();
        match access::authorize(
            &snapshot.rules(),
            &principal,
            &vm,
            fresh.as_ref(),
            inv.reader(),
            right,
        )
        // Every user's write to a VM (JSON API, aggregated API, confirmation links)
        // passes here: an observed-only cluster refuses it with words; its read-only
        // client would refuse it anyway.
        .and_then(|pinned| {
            access::writable(vm.cluster, inv.observed || client.is_read_only(), right)?;
            Ok(pinned)
        }) {
            Ok(pinned) => Ok((pinned, client)),
            Err(refusal) => {
                let e = ApiError::from(&refusal);
                // The log line and the admins' mail say why; the answer and the Event
                // (which the caller's timeline shows) only what the caller may know.
                let detail = match &refusal {
                    Refusal::NotFound {
                        hidden: Some(why), ..
                    }
                    | Refusal::Forbidden(why) => Some(why.as_str()),
                    _ => None,
                };
                self.audit_with(caller, &attempt, &Outcome::Refused(e.1.clone()), detail);
                // An attempt on an existing VM the caller does not own is worth a mail.
                if let (Some(why), Some(instance)) = (detail, &fresh) {
                    let owned = inv.owner_of(instance).is_some_and(|o| principal.is(&o));
                    if !owned {
                        self.mail_refusal(caller, &attempt, why);
                    }
                }
                Err(e)
            }
        }
    }

    /// One audit line and one Event per attempt.
    pub(super) fn audit(&self, caller: &Caller, attempt: &Attempt<'_>, outcome: &Outcome) {
        self.audit_with(caller, attempt, outcome, None);
    }

    /// As [`Self::audit`]; `detail`, when given, is the log line's reason (for admins)
    /// while the Event keeps the outcome's words.
    fn audit_with(&self, caller: &Caller, attempt: &Attempt<'_>, outcome: &Outcome, detail: Option<&str>) {
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
            groups = ?caller.groups,
            source = %caller.source,
            action = attempt.action,
            cluster = attempt.cluster,
            vm = attempt.vm,
            vm_uuid = attempt.uuid,
            // Absent when no job was submitted.
            job,
            allowed,
            reason = %detail.unwrap_or(&why),
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
        let events: Api<Event> = Api::namespaced(self.shared.client.clone(), CLUSTER_EVENTS_NAMESPACE);
        // The answer does not wait for the Event.
        tokio::spawn(async move {
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "publishing a VM action Event failed");
            }
        });
    }

    /// Whether a refusal mail for this user and VM is due now (at most one per
    /// [`REFUSAL_MAIL_EVERY`]); records it when it is.
    fn refusal_mail_due(&self, user: &str, cluster: &str, vm: &str, now: Instant) -> bool {
        let mut mailed = self.refusals_mailed.lock().expect("refusal mail lock");
        if mailed.len() >= 10_000 {
            mailed.retain(|_, at| now.saturating_duration_since(*at) < REFUSAL_MAIL_EVERY);
        }
        let key = (user.to_string(), cluster.to_string(), vm.to_string());
        match mailed.get(&key) {
            Some(at) if now.saturating_duration_since(*at) < REFUSAL_MAIL_EVERY => false,
            _ => {
                mailed.insert(key, now);
                true
            }
        }
    }

    /// Mails the refusal to `refusal_mail_to`, in the background (the answer does not
    /// wait), at most once per user and VM an hour.
    fn mail_refusal(&self, caller: &Caller, attempt: &Attempt<'_>, why: &str) {
        let Some(smtp) = self.shared.config.smtp_secret.clone() else {
            return;
        };
        if self.refusal_mail_to.is_empty()
            || !self.refusal_mail_due(&caller.identity.user, attempt.cluster, attempt.vm, Instant::now())
        {
            return;
        }
        let (user, action, vm) = (&caller.identity.user, attempt.action, attempt.vm);
        let subject = format!("Refused: {user} {action} {vm}");
        let body = format!(
            "{user} (groups: {groups}) from {source} tried to {action} {vm} on cluster {cluster}, \
             a VM they do not own, and was refused:\n\n{why}\n\n(Further attempts by {user} on this VM \
             within the hour are not mailed; the audit log has them all.)\n",
            groups = caller.groups.join(", "),
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
        let (client, namespace) = (
            self.shared.client.clone(),
            self.shared.config.secrets_namespace.clone(),
        );
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

    /// Takes one of the caller's action tokens; without one, the 429 to answer (audited).
    fn rate_limited(&self, caller: &Caller, attempt: &Attempt<'_>) -> Option<Response> {
        self.take_action_token(caller, attempt)
            .err()
            .map(|wait| too_many(wait, "too many actions"))
    }

    /// Takes one of the caller's action tokens, or tells how long to wait (audited).
    pub(super) fn take_action_token(&self, caller: &Caller, attempt: &Attempt<'_>) -> Result<(), Duration> {
        let Err(wait) = self
            .limiter
            .lock()
            .expect("limiter lock")
            .take(&caller.identity.user, Instant::now())
        else {
            return Ok(());
        };
        self.audit(caller, attempt, &Outcome::Refused("rate limited".into()));
        Err(wait)
    }
}

/// 429 with `Retry-After`.
pub(crate) fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs() + 1;
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{what}; try again in {secs} s"),
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    r
}

pub(super) struct Attempt<'a> {
    pub(super) action: &'a str,
    pub(super) cluster: &'a str,
    pub(super) vm: &'a str,
    /// The VM's Ganeti UUID, once known.
    pub(super) uuid: Option<&'a str>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
            ("/clusters", "get"),
            ("/clusters/{cluster}/nodes", "get"),
            ("/clusters/{cluster}/tags", "post"),
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
        assert_eq!(paths.len(), 11, "openapi.json documents a route the router lacks");
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
        let known: Vec<&str> = access::Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(actions, known);
    }
}
