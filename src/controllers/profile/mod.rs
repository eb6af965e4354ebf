//! The UserProfile controller: checks SSH keys (fingerprints and `KeysValid` in
//! status) and verifies email addresses with a mailed single-use link.
//!
//! observe (a fresh read of the profile) -> plan (`plan`, pure) -> apply: a new link is
//! recorded in status before it is mailed, so the link in the mail is always one the
//! status knows; following it (src/server/verify.rs) consumes the recorded nonce.

pub mod keys;
pub mod link;
pub mod plan;

use super::{Context, Error, FIELD_MANAGER, observe};
use crate::api::profile::{UserProfile, UserProfileStatus};
use crate::mail::{Mail, MailError, Mailer};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::{EmailStep, MailNote};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTROLLER: &str = "userprofile";
/// Where the operator's HTTP server takes verification links.
pub const VERIFY_PATH: &str = "/verify-email";
/// How soon a failed verification mail is tried again.
const MAIL_RETRY: Duration = Duration::from_secs(15);

/// The link a user follows: `<public URL>/verify-email?token=...`.
pub fn verify_url(public_url: &str, token: &str) -> String {
    format!("{}{VERIFY_PATH}?token={token}", public_url.trim_end_matches('/'))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let api: Api<UserProfile> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let shutdown = super::once_listed(controller.store(), shutdown);
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "userprofile reconcile event");
            }
        })
        .await;
}

fn error_policy(p: Arc<UserProfile>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(profile = %p.name_any(), error = %error, category = error.category(), "UserProfile reconcile failed");
    if error.category() == "conflict" {
        return Action::requeue(Duration::from_millis(200));
    }
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(p: Arc<UserProfile>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&p.name_any(), &ctx).await;
    observe(&ctx.metrics, CONTROLLER, started, result.as_ref().err());
    result
}

/// Writes the whole status (as this operator keeps it: `lastSeen` is left to whoever
/// records it) if the profile is still the version `p` was read as.
pub async fn write_status(
    client: &kube::Client,
    p: &UserProfile,
    status: &UserProfileStatus,
) -> Result<UserProfile, kube::Error> {
    let mut status = status.clone();
    status.last_seen = None;
    let patch = serde_json::json!({
        "apiVersion": "ganeti.dev/v1alpha1",
        "kind": "UserProfile",
        "metadata": {"name": p.name_any(), "resourceVersion": p.resource_version()},
        "status": status,
    });
    Api::<UserProfile>::all(client.clone())
        .patch_status(
            &p.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
}

/// Why the operator cannot mail links, if it cannot.
fn cannot_mail(ctx: &Context) -> Option<String> {
    if ctx.config.smtp_secret.is_none() {
        return Some("the operator has no SMTP settings (--smtp-secret); ask an admin".into());
    }
    if ctx.config.public_url.is_none() {
        return Some("the operator has no public URL for links (--public-url); ask an admin".into());
    }
    None
}

async fn reconcile_inner(name: &str, ctx: &Context) -> Result<Action, Error> {
    let api: Api<UserProfile> = Api::all(ctx.client.clone());
    // A verification may have just been recorded by the HTTP server; act on the
    // latest version, not the watch cache.
    let Some(mut p) = api.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    if p.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut on_server = p.status.clone();
    let now = Timestamp::now();
    let step = plan::email_step(&p, now);
    let mut note = MailNote::None;
    let mut action = match step {
        EmailStep::Wait { expires } => {
            let left = expires.duration_since(now).unsigned_abs();
            Action::requeue(left + Duration::from_secs(1))
        }
        _ => Action::await_change(),
    };
    if matches!(step, EmailStep::NewLink | EmailStep::Mail) {
        if let Some(why) = cannot_mail(ctx) {
            note = MailNote::CannotMail(why);
        } else {
            if step == EmailStep::NewLink {
                // On record before it is mailed: the mailed link is always one the
                // status knows, so it can be consumed exactly once.
                let mut status = p.status.clone().unwrap_or_default();
                status.pending_verification = Some(plan::new_link(&p, link::nonce(), now));
                let status = plan::status(
                    &UserProfile {
                        status: Some(status),
                        ..p.clone()
                    },
                    &MailNote::None,
                    now,
                );
                p = write_status(&ctx.client, &p, &status).await?;
                on_server = p.status.clone();
            }
            // `p` stays the version on the server (for the write's precondition); the
            // mail's outcome goes into `p.status` locally and is written below.
            match mail_link(&p, ctx).await {
                Ok(()) => {
                    let pending = p.status.as_mut().and_then(|s| s.pending_verification.as_mut());
                    let pending = pending.expect("recorded above");
                    pending.sent_time = Some(Time(Timestamp::now()));
                    tracing::info!(profile = %name, "verification link mailed");
                    let left = pending.expires.0.duration_since(now).unsigned_abs();
                    action = Action::requeue(left + Duration::from_secs(1));
                }
                Err(MailError::Permanent(m)) => {
                    let pending = p.status.as_mut().and_then(|s| s.pending_verification.as_mut());
                    pending.expect("recorded above").refused = Some(m);
                }
                Err(e) => {
                    tracing::info!(profile = %name, error = %e, "mailing the verification link failed");
                    note = MailNote::Failed(e.to_string());
                    action = Action::requeue(MAIL_RETRY);
                }
            }
        }
    }
    let status = plan::status(&p, &note, Timestamp::now());
    if on_server.as_ref().map(without_last_seen) != Some(without_last_seen(&status)) {
        write_status(&ctx.client, &p, &status).await?;
        ctx.metrics.status_writes.with_label_values(&[CONTROLLER]).inc();
    }
    Ok(action)
}

fn without_last_seen(s: &UserProfileStatus) -> UserProfileStatus {
    let mut s = s.clone();
    s.last_seen = None;
    s
}

/// Mails the link recorded in the profile's status.
async fn mail_link(p: &UserProfile, ctx: &Context) -> Result<(), MailError> {
    let pending = p
        .status
        .as_ref()
        .and_then(|s| s.pending_verification.as_ref())
        .expect("a link is recorded before it is mailed");
    let claims = link::Claims {
        profile: p.name_any(),
        email: pending.email.clone(),
        nonce: pending.nonce.clone(),
        expires: pending.expires.0.as_second(),
    };
    let token = link::sign(&ctx.config.link_key, &claims);
    let base = ctx.config.public_url.as_deref().expect("checked by cannot_mail");
    let (subject, body) = plan::mail_text(p, &verify_url(base, &token));
    let secret = ctx.config.smtp_secret.as_deref().expect("checked by cannot_mail");
    let mailer = Mailer::from_secret_ref(&ctx.client, &ctx.config.secrets_namespace, secret).await?;
    mailer
        .send(&Mail {
            to: pending.email.clone(),
            subject,
            body,
        })
        .await
}

/// Refuses a random per-process link key where replicas share the work: with leader
/// election on, a link or console ticket signed by one replica is checked by whichever
/// replica the next request reaches, so each must have the same key.
pub fn require_shared_link_key(
    leader_election: bool,
    secret: Option<&str>,
    raw: Option<&str>,
) -> Result<(), String> {
    if !leader_election || secret.is_some() || raw.is_some() {
        return Ok(());
    }
    Err(
        "leader election is on (several replicas) but no link key is configured: each replica would \
         sign console tickets and confirmation links with its own random key, and those checked by \
         another replica would fail. Give --link-key-secret (a Secret whose key `key` holds at least \
         32 random bytes; the Helm chart creates one), or run one replica with --leader-election=false"
            .into(),
    )
}

/// The key that signs verification links: from `--link-key` (at least 32 bytes), else
/// the key `key` of the Secret `--link-key-secret`, else a random one (links then
/// stop working when the operator restarts; only with one replica, see
/// [`require_shared_link_key`]).
pub async fn load_link_key(
    client: &kube::Client,
    namespace: &str,
    secret: Option<&str>,
    raw: Option<&str>,
) -> Result<link::LinkKey, String> {
    if let Some(raw) = raw {
        return link::LinkKey::new(raw.as_bytes());
    }
    let Some(name) = secret else {
        tracing::warn!(
            "no --link-key or --link-key-secret: verification links stop working when the operator restarts"
        );
        return Ok(link::LinkKey::random());
    };
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("reading the link key Secret {namespace}/{name}: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("key"))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key \"key\""))?;
    link::LinkKey::new(&bytes)
}

#[cfg(test)]
mod tests {
    use super::require_shared_link_key;

    #[test]
    fn several_replicas_need_a_configured_link_key() {
        let e = require_shared_link_key(true, None, None).unwrap_err();
        assert!(
            e.contains("--link-key-secret") && e.contains("--leader-election=false"),
            "{e}"
        );
        assert!(require_shared_link_key(true, Some("link-key"), None).is_ok());
        assert!(require_shared_link_key(true, None, Some("k")).is_ok());
        // One replica may keep a random key (links die with the process, nothing else).
        assert!(require_shared_link_key(false, None, None).is_ok());
    }
}
