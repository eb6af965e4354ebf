//! Mails to the applicant about the phase the application reached.

use super::{State, plan, write_status};
use crate::api::application::InstanceApplication;
use crate::api::profile::UserProfile;
use crate::controllers::Error;
use crate::mail::{Mail, Mailer, address_for};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use plan::MailKind;
use std::time::Duration;

/// Mails the applicant about the current phase. `Some(delay)`: SMTP failed transiently,
/// try again after it.
pub(super) async fn mail_applicant(
    app: &mut InstanceApplication,
    kind: MailKind,
    state: &State,
) -> Result<Option<Duration>, Error> {
    let applicant = app.spec.applicant.clone().unwrap_or_default();
    let config = &state.ctx.shared.config;
    let now = Timestamp::now();
    let Some(secret) = config.smtp_secret.as_deref() else {
        let status = plan::notified(
            app,
            kind,
            false,
            "mail is not configured (--smtp-secret)".into(),
            now,
        );
        write_status(app, state, status).await?;
        return Ok(None);
    };
    // A user may have several profiles (holders of system.users keep anyone's): the
    // first that yields an address wins, as for confirmation links.
    let profiles = Api::<UserProfile>::all(state.ctx.shared.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let address = profiles
        .iter()
        .filter(|p| p.spec.username == applicant)
        .find_map(|p| address_for(&applicant, Some(p), config.mail_unverified))
        .or_else(|| address_for(&applicant, None, config.mail_unverified));
    let Some(to) = address else {
        let message = format!("no verified address for {applicant}: add an email to their UserProfile");
        let status = plan::notified(app, kind, false, message, now);
        write_status(app, state, status).await?;
        return Ok(None);
    };
    let (subject, body) = plan::mail_text(app, kind);
    let sent =
        match Mailer::from_secret_ref(&state.ctx.shared.client, &config.secrets_namespace, secret).await {
            Ok(mailer) => {
                mailer
                    .send(&Mail {
                        to: to.clone(),
                        subject,
                        body,
                    })
                    .await
            }
            Err(e) => Err(e),
        };
    let status = match sent {
        Ok(()) => plan::notified(app, kind, true, format!("mailed {to}"), now),
        Err(e) if e.is_transient() => {
            tracing::warn!(application = %app.key(), error = %e, "mailing the applicant failed; retrying");
            return Ok(Some(Duration::from_secs(30)));
        }
        Err(e) => plan::notified(app, kind, false, format!("mail to {to} failed: {e}"), now),
    };
    write_status(app, state, status).await?;
    Ok(None)
}
