//! The Notification controller: resolves the recipients once, mails each address one
//! personalised message, and keeps the status as the archive of what was sent.
//!
//! observe (a fresh read of the Notification; profiles, GanetiClusters and the inventory
//! when resolving) -> plan (`plan::next`, `recipients::resolve`, `render`; pure) ->
//! apply (one status write per transition, each before what depends on it).
//!
//! # Delivery guarantee
//! Each recipient's mail goes through two status writes around the SMTP commit point:
//! 1. the server accepts the sender, the recipient and `DATA` (every refusal that
//!    depends on the recipient comes here, before anything is recorded);
//! 2. the recipient is written as `Sending` (with optimistic locking: a stale view of
//!    the Notification cannot win);
//! 3. the content and the final dot go out, the point at which the server takes the
//!    mail, and its answer is read;
//! 4. the result (`Sent`, `Failed`, or back to `Pending` for a transient refusal) is
//!    written before the next recipient is started.
//!
//! Only the process whose conditional write of `Sending` succeeded sends that mail, so
//! two operators working at once cannot both send it either. A process that finds a
//! recipient in `Sending` older than `plan::SETTLE_AFTER` (left by a crash between 2
//! and 4; a younger mark may be a live process's) records it as sent, with a note, and
//! never mails it again.
//!
//! The guarantee: no address is mailed twice by the operator, whatever crashes when.
//! An address misses its mail only if the process dies between the end of step 2 and
//! the moment step 3 has written the content to the socket: microseconds of CPU work,
//! no network round trip (with a plain send-then-record, the duplicate window would be
//! the whole status write after the server's answer). A connection lost after the
//! content went out, or no answer within `COMMIT_TIMEOUT`, is treated the same way:
//! recorded as sent with a note, not resent. Every mail carries a Message-ID derived
//! from the Notification's uid and the address, so copies a relay might make can be
//! folded by mail clients.
//!
//! Recipients are resolved once and frozen in status; editing a Notification after that
//! changes neither who gets it nor re-sends anything (a template fixed after an error
//! that sent nothing is used, since nothing was frozen).

pub mod plan;
pub mod recipients;
pub mod render;

use super::Context;
use super::harness::{self, Error};
use crate::api::cluster::GanetiCluster;
use crate::api::notification::{DeliveryResult, Notification, NotificationStatus};
use crate::api::profile::UserProfile;
use crate::fault;
use crate::mail::{CommitError, Mail, MailError, Mailer};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::Next;
use recipients::{Directory, parse_instance_label};
use render::{InstanceInfo, MailContext, Templates, UserInfo};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CONTROLLER: &str = "notification";
/// How long a Notification waits for GanetiClusters that were never read before it is
/// resolved without them (their VMs then count as none; `status.skipped` says so).
const INVENTORY_WAIT: Duration = Duration::from_secs(300);
/// How often a Notification blocked on the SMTP settings looks again.
const SETTINGS_RETRY: Duration = Duration::from_secs(30);
/// Longest wait for the server's answer to a mail's content; then the outcome counts
/// as unknown (and the mail as sent, never resent). Well inside `plan::SETTLE_AFTER`.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Crash point: the SMTP server took a mail; its result is not recorded yet.
pub const CRASH_AFTER_SMTP_ACCEPT: &str = "notification-after-smtp-accept";

struct State {
    ctx: Arc<Context>,
    /// Cancelled on shutdown: a batch stops between two recipients.
    stop: CancellationToken,
}

/// Runs the controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let state = Arc::new(State {
        ctx: ctx.clone(),
        stop: stop.clone(),
    });
    let api: Api<Notification> = Api::all(ctx.shared.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let shutdown = super::once_listed(controller.store(), stop.clone().cancelled_owned());
    let results = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state);
    harness::drive(CONTROLLER, results, |_| {}).await;
}

fn error_policy(n: Arc<Notification>, error: &Error, _state: Arc<State>) -> Action {
    harness::retry(CONTROLLER, &n.name_any(), error, Duration::from_secs(5))
}

async fn reconcile(n: Arc<Notification>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let name = n.name_any();
    let work = reconcile_inner(&name, &state);
    harness::reconcile(CONTROLLER, &ctx.shared.metrics, &ctx.recorder, &*n, work).await
}

/// Writes the whole status, on the condition that the object is still the one `n`
/// was read as (optimistic locking via the resourceVersion in the apply patch).
async fn write(
    api: &Api<Notification>,
    n: &Notification,
    status: &NotificationStatus,
    ctx: &Context,
) -> Result<Notification, Error> {
    let written = crate::status::apply_if_unchanged(api, n, status).await?;
    ctx.shared
        .metrics
        .status_writes
        .with_label_values(&[CONTROLLER])
        .inc();
    Ok(written)
}

/// [`write`] of recipient `i`'s result, tried a few times: giving up leaves the
/// recipient in `Sending` (settled as sent by a later pass). If the object changed
/// meanwhile (an edit of the spec, another operator's write), only this recipient's
/// result is carried over to the new version.
async fn write_result(
    api: &Api<Notification>,
    n: &Notification,
    status: &NotificationStatus,
    i: usize,
    ctx: &Context,
) -> Result<Notification, Error> {
    let mut n = n.clone();
    let mut status = status.clone();
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        match write(api, &n, &status, ctx).await {
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 && tries < 10 => {
                let ours = status.recipients[i].clone();
                let sent_time = status.sent_time.clone();
                n = api.get(&n.name_any()).await?;
                status = n.status.clone().unwrap_or_default();
                match status.recipients.get_mut(i) {
                    Some(r) if r.address == ours.address => *r = ours,
                    _ => return Err(Error::Invalid(format!("recipient {i} changed under us"))),
                }
                status.sent_time = status.sent_time.max(sent_time);
            }
            Err(e) if tries < 5 && !matches!(&e, Error::Kube(kube::Error::Api(s)) if s.code == 409) => {
                tracing::warn!(notification = %n.name_any(), error = %e, "recording a delivery failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

async fn reconcile_inner(name: &str, state: &State) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let api: Api<Notification> = Api::all(ctx.shared.client.clone());
    // The watch cache may lag behind our own last write; deciding whom to mail on a
    // stale copy could mail someone twice. Read from the API server.
    let Some(mut n) = api.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    if n.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut mailer: Option<Mailer> = None;
    let mut templates: Option<Templates> = None;
    let mut profiles: Option<Vec<Arc<UserProfile>>> = None;
    loop {
        let generation = n.metadata.generation;
        let now = Timestamp::now();
        match plan::next(&n) {
            Next::Idle => return Ok(Action::await_change()),
            Next::Resolve => match resolve(&n, ctx).await? {
                Resolution::Wait(message, after) => {
                    let status = plan::waiting(&n, &message, now);
                    if n.status.as_ref() != Some(&status) {
                        write(&api, &n, &status, ctx).await?;
                    }
                    return Ok(Action::requeue(after));
                }
                Resolution::Status(status) => n = write(&api, &n, &status, ctx).await?,
            },
            Next::Settle => {
                let mut status = n.status.clone().unwrap_or_default();
                if let Some(wait) = plan::settle_wait(&status, now) {
                    return Ok(Action::requeue(wait));
                }
                plan::settle(&mut status, now);
                tracing::warn!(notification = %name, "recipients left in Sending by a stopped process recorded as sent");
                n = write(&api, &n, &status, ctx).await?;
            }
            Next::Finish => {
                let mut status = n.status.clone().unwrap_or_default();
                plan::finish(&mut status, generation, now);
                write(&api, &n, &status, ctx).await?;
                tracing::info!(notification = %name, phase = ?status.phase, "notification done");
                return Ok(Action::await_change());
            }
            Next::Send(i) => {
                if state.stop.is_cancelled() {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                let m = match &mailer {
                    Some(m) => m.clone(),
                    None => match mailer_for(ctx).await {
                        Ok(m) => mailer.insert(m).clone(),
                        Err((reason, message)) => {
                            let mut status = n.status.clone().unwrap_or_default();
                            plan::blocked(&mut status, generation, reason, message, now);
                            if n.status.as_ref() != Some(&status) {
                                write(&api, &n, &status, ctx).await?;
                            }
                            return Ok(Action::requeue(SETTINGS_RETRY));
                        }
                    },
                };
                if templates.is_none() {
                    match Templates::compile(&n.spec.subject, &n.spec.body) {
                        Ok(t) => templates = Some(t),
                        Err(e) => {
                            write(&api, &n, &plan::template_failed(&n, &e, now), ctx).await?;
                            return Ok(Action::await_change());
                        }
                    }
                }
                let t = templates.as_ref().expect("compiled above");
                if profiles.is_none() {
                    // Once per pass: the mails name the instances with their facts
                    // from the inventory, so a process that just started waits for
                    // the clusters they are on.
                    let unread = unread_clusters(ctx).await?;
                    let pending_on = |c: &String| {
                        n.status.iter().flat_map(|s| &s.recipients).any(|r| {
                            r.result == DeliveryResult::Pending
                                && r.instances.iter().any(|l| l.starts_with(&format!("{c}/")))
                        })
                    };
                    if unread.iter().any(pending_on) {
                        return Ok(Action::requeue(Duration::from_secs(2)));
                    }
                    // For the recipients' full names.
                    let list = Api::<UserProfile>::all(ctx.shared.client.clone())
                        .list(&ListParams::default())
                        .await?;
                    profiles = Some(list.items.into_iter().map(Arc::new).collect());
                }
                let mail = match render_for(&n, i, t, profiles.as_deref().unwrap_or_default(), ctx) {
                    Ok(mail) => mail,
                    Err(e) => {
                        write(&api, &n, &plan::template_failed(&n, &e, now), ctx).await?;
                        return Ok(Action::await_change());
                    }
                };
                match send_one(&api, n, i, &m, &mail, ctx).await? {
                    Sent::Next(written) => n = *written,
                    Sent::RetryAfter(delay) => return Ok(Action::requeue(delay)),
                }
            }
        }
    }
}

/// GanetiClusters that are ready but this process has not read yet (it will within
/// seconds of its start). Clusters that are not ready are not waited for: they will
/// not be read soon, and `status.skipped` names them when a selector does.
async fn unread_clusters(ctx: &Context) -> Result<Vec<String>, Error> {
    let clusters = Api::<GanetiCluster>::all(ctx.shared.client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(clusters
        .items
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| crate::api::conditions::is_true(&s.conditions, "Ready"))
        })
        .map(|c| c.name_any())
        .filter(|c| ctx.shared.inventory.get(c).is_none())
        .collect())
}

enum Resolution {
    /// Not yet: why, and when to look again.
    Wait(String, Duration),
    /// The status to write: frozen recipients, or a failure before sending.
    Status(NotificationStatus),
}

/// Resolves the recipients and checks that every mail renders.
async fn resolve(n: &Notification, ctx: &Context) -> Result<Resolution, Error> {
    let now = Timestamp::now();
    let templates = match Templates::compile(&n.spec.subject, &n.spec.body) {
        Ok(t) => t,
        Err(e) => return Ok(Resolution::Status(plan::template_failed(n, &e, now))),
    };
    let profiles = Api::<UserProfile>::all(ctx.shared.client.clone())
        .list(&ListParams::default())
        .await?;
    // Right after a start of the operator, resolving without clusters not read yet
    // would leave their owners out: wait (a while) for them.
    let unread = unread_clusters(ctx).await?;
    let age = n
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    if !unread.is_empty() && age < INVENTORY_WAIT {
        return Ok(Resolution::Wait(
            format!(
                "waiting for the first read of GanetiCluster(s) {}",
                unread.join(", ")
            ),
            Duration::from_secs(2),
        ));
    }
    // Taken after the check: every cluster found read above is in this snapshot.
    let inventories = ctx.shared.inventory.all();
    let profiles: Vec<Arc<UserProfile>> = profiles.items.into_iter().map(Arc::new).collect();
    let dir = Directory::new(&profiles, &inventories);
    let resolution = recipients::resolve(&n.spec.recipients, &dir, ctx.shared.config.mail_unverified);
    // Render every mail before freezing: a template that fails for anyone sends nothing.
    let frozen = plan::freeze(n, &resolution, now);
    for (i, r) in frozen.recipients.iter().enumerate() {
        let mail_ctx = mail_context(n, r, &dir, ctx);
        if let Err(e) = templates.render(&mail_ctx) {
            let e = format!("{e} (rendering for {}, recipient {})", r.address, i + 1);
            return Ok(Resolution::Status(plan::template_failed(n, &e, now)));
        }
    }
    tracing::info!(
        notification = %n.name_any(),
        recipients = frozen.recipients.len(),
        skipped = frozen.skipped.len(),
        "recipients resolved"
    );
    Ok(Resolution::Status(frozen))
}

/// The variables of one recipient's mail.
fn mail_context(
    n: &Notification,
    r: &crate::api::notification::RecipientStatus,
    dir: &Directory<'_>,
    ctx: &Context,
) -> MailContext {
    let username = r.user.clone().unwrap_or_else(|| r.address.clone());
    let profile = dir.profile(&username);
    let user = UserInfo {
        name: profile
            .and_then(|p| p.spec.full_name.clone())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| username.clone()),
        username,
        email: r.address.clone(),
    };
    let instances: Vec<InstanceInfo> = r
        .instances
        .iter()
        .filter_map(|label| parse_instance_label(label))
        .map(|(cluster, name)| {
            ctx.shared
                .inventory
                .get(&cluster)
                .and_then(|inv| {
                    inv.instance(&name)
                        .map(|i| InstanceInfo::from((cluster.as_str(), i)))
                })
                .unwrap_or_else(|| InstanceInfo {
                    name,
                    cluster,
                    status: "unknown".into(),
                    ..Default::default()
                })
        })
        .collect();
    let cluster = match n.spec.recipients.clusters.as_slice() {
        [only] => only.clone(),
        _ => {
            let mut on: Vec<&str> = instances.iter().map(|i| i.cluster.as_str()).collect();
            on.dedup();
            match on.as_slice() {
                [only] => only.to_string(),
                _ => String::new(),
            }
        }
    };
    MailContext {
        user,
        instances,
        cluster,
    }
}

/// Renders recipient `i`'s mail.
fn render_for(
    n: &Notification,
    i: usize,
    t: &Templates,
    profiles: &[Arc<UserProfile>],
    ctx: &Context,
) -> Result<Mail, String> {
    let r = &n.status.as_ref().expect("frozen").recipients[i];
    let dir = Directory::new(profiles, &[]);
    let mail_ctx = mail_context(n, r, &dir, ctx);
    t.render(&mail_ctx).map(|(subject, body)| Mail {
        to: r.address.clone(),
        subject,
        body,
    })
}

/// The mailer, or why there is none: (condition reason, message).
async fn mailer_for(ctx: &Context) -> Result<Mailer, (&'static str, String)> {
    let Some(secret) = &ctx.shared.config.smtp_secret else {
        return Err((
            "SmtpNotConfigured",
            "the operator runs without SMTP settings (--smtp-secret): nothing can be mailed".into(),
        ));
    };
    Mailer::from_secret_ref(&ctx.shared.client, &ctx.shared.config.secrets_namespace, secret)
        .await
        .map_err(|e| match e {
            MailError::Config(m) => ("SmtpSettingsInvalid", m),
            other => ("SmtpSettingsUnreadable", other.to_string()),
        })
}

/// Stable across retries and restarts, so copies of one mail share it.
fn message_id(n: &Notification, address: &str, m: &Mailer) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, address.to_ascii_lowercase().as_bytes());
    let hash: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let uid = n.uid().unwrap_or_default();
    format!("<notification.{uid}.{hash}@{}>", m.from().email.domain())
}

enum Sent {
    /// Recorded; go on with the (re-read) object.
    Next(Box<Notification>),
    /// A transient failure: the whole batch waits.
    RetryAfter(Duration),
}

/// One recipient, through the steps of the module's delivery guarantee.
async fn send_one(
    api: &Api<Notification>,
    n: Notification,
    i: usize,
    m: &Mailer,
    mail: &Mail,
    ctx: &Context,
) -> Result<Sent, Error> {
    let name = n.name_any();
    let generation = n.metadata.generation;
    let mut status = n.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    plan::attempt(&mut status, i, now);
    let attempts = status.recipients[i].attempts;
    let prepared = match m.prepare(mail, Some(&message_id(&n, &mail.to, m))).await {
        Ok(p) => p,
        Err(MailError::Permanent(msg)) => {
            tracing::info!(notification = %name, to = %mail.to, error = %msg, "recipient refused");
            plan::failed(&mut status, i, now, msg);
            plan::progress(&mut status, generation, now);
            return Ok(Sent::Next(Box::new(write(api, &n, &status, ctx).await?)));
        }
        Err(e @ (MailError::Transient(_) | MailError::Config(_))) => {
            let delay = plan::retry_delay(attempts);
            tracing::info!(notification = %name, to = %mail.to, error = %e, retry_in = ?delay, "mail not sent; will retry");
            plan::retry_later(&mut status, i, generation, now, e.to_string(), delay);
            write(api, &n, &status, ctx).await?;
            return Ok(Sent::RetryAfter(delay));
        }
    };
    plan::sending(&mut status, i, Timestamp::now());
    let n = match write(api, &n, &status, ctx).await {
        Ok(written) => written,
        Err(e) => {
            // Not recorded as Sending: the mail must not go out.
            prepared.abort().await;
            return Err(e);
        }
    };
    let outcome = match tokio::time::timeout(COMMIT_TIMEOUT, prepared.commit()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CommitError::Unknown(format!(
            "no answer to the mail's content within {}s",
            COMMIT_TIMEOUT.as_secs()
        ))),
    };
    let now = Timestamp::now();
    match outcome {
        Ok(()) => {
            fault::point(CRASH_AFTER_SMTP_ACCEPT);
            tracing::debug!(notification = %name, to = %mail.to, "mail sent");
            plan::sent(&mut status, i, now, None);
        }
        Err(CommitError::Refused(MailError::Permanent(msg))) => plan::failed(&mut status, i, now, msg),
        Err(CommitError::Refused(e)) => {
            let delay = plan::retry_delay(attempts);
            plan::retry_later(&mut status, i, generation, now, e.to_string(), delay);
            write_result(api, &n, &status, i, ctx).await?;
            return Ok(Sent::RetryAfter(delay));
        }
        Err(CommitError::Unknown(msg)) => {
            tracing::warn!(notification = %name, to = %mail.to, error = %msg, "connection lost after the mail was handed over; not resending");
            plan::sent(
                &mut status,
                i,
                now,
                Some(format!(
                    "the connection failed after the mail was handed over ({msg}); most likely delivered, not sent again so that no one gets two copies"
                )),
            );
        }
    }
    plan::progress(&mut status, generation, now);
    Ok(Sent::Next(Box::new(
        write_result(api, &n, &status, i, ctx).await?,
    )))
}
