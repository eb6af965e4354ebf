//! The UserProfile controller: checks SSH keys (fingerprints and `KeysValid` in
//! status) and verifies email addresses with a mailed single-use link.
//!
//! observe (a fresh read of the profile) -> plan (`plan`, pure) -> apply: a new link is
//! recorded in status before it is mailed, so the link in the mail is always one the
//! status knows; following it (src/server/verify.rs) consumes the recorded nonce.

use super::Context;
use super::harness::{self, Error};
use crate::api::profile::{UserProfile, UserProfileStatus};
use crate::mail::{Mail, MailError, Mailer};
use crate::profile::{link, plan, verify_url, write_status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::{EmailStep, MailNote};
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "userprofile";
/// How soon a failed verification mail is tried again.
const MAIL_RETRY: Duration = Duration::from_secs(15);

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let api: Api<UserProfile> = Api::all(ctx.shared.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let shutdown = super::once_listed(controller.store(), shutdown);
    let results = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    harness::drive(CONTROLLER, results, |_| {}).await;
}

fn error_policy(p: Arc<UserProfile>, error: &Error, _ctx: Arc<Context>) -> Action {
    harness::retry(CONTROLLER, &p.name_any(), error, Duration::from_secs(5))
}

async fn reconcile(p: Arc<UserProfile>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = p.name_any();
    let work = reconcile_inner(&name, &ctx);
    harness::reconcile(CONTROLLER, &ctx.shared.metrics, &ctx.recorder, &*p, work).await
}

/// Why the operator cannot mail links, if it cannot.
fn cannot_mail(ctx: &Context) -> Option<String> {
    if ctx.shared.config.smtp_secret.is_none() {
        return Some("the operator has no SMTP settings (--smtp-secret); ask an admin".into());
    }
    if ctx.shared.config.public_url.is_none() {
        return Some("the operator has no public URL for links (--public-url); ask an admin".into());
    }
    None
}

async fn reconcile_inner(name: &str, ctx: &Context) -> Result<Action, Error> {
    let api: Api<UserProfile> = Api::all(ctx.shared.client.clone());
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
                p = write_status(&ctx.shared.client, &p, &status).await?;
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
        write_status(&ctx.shared.client, &p, &status).await?;
        ctx.shared
            .metrics
            .status_writes
            .with_label_values(&[CONTROLLER])
            .inc();
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
    let token = link::sign(&ctx.shared.keys.email_links, &claims);
    let base = ctx
        .shared
        .config
        .public_url
        .as_deref()
        .expect("checked by cannot_mail");
    let (subject, body) = plan::mail_text(p, &verify_url(base, &token));
    let secret = ctx
        .shared
        .config
        .smtp_secret
        .as_deref()
        .expect("checked by cannot_mail");
    let mailer =
        Mailer::from_secret_ref(&ctx.shared.client, &ctx.shared.config.secrets_namespace, secret).await?;
    mailer
        .send(&Mail {
            to: pending.email.clone(),
            subject,
            body,
        })
        .await
}
