//! `/confirm`: the mailed confirmation links of fatal actions (rename, reinstall,
//! destroy). A link names the VM by name *and* UUID; following it decides again on the
//! VM as Ganeti has it now (a renamed, replaced or reused name does nothing) and
//! submits the job pinned to that UUID. A link is spent for good once its job may have
//! reached Ganeti; it is given back only when nothing was sent.

use super::actions::{check_rename, submit};
use super::{ApiError, ApiState, Attempt, Outcome, PREFIX};
use crate::access::{Action, Plan, VmRef};
use crate::rapi::RapiError;
use crate::server::auth::Identity;
use crate::server::confirm::{self, LinkError};
use crate::server::page::{escape, page};
use crate::server::spent::SpendError;
use crate::signed::now_secs;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// The confirmation links' records in [`crate::server::spent::SpentTokens`].
const SPENT_PURPOSE: &str = "confirm";

#[derive(Deserialize)]
pub(super) struct TokenParam {
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
pub(super) async fn confirm_page(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<TokenParam>,
) -> Response {
    let claims = match confirm::verify(&state.shared.keys.confirm_links, &q.token, now_secs()) {
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
            "<p>{what} on cluster {} (Ganeti UUID <code>{}</code>)?</p><form method=\"post\" action=\"{PREFIX}/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\"><button type=\"submit\">Confirm</button></form>",
            escape(&claims.cluster),
            escape(&claims.uuid),
            escape(&q.token)
        ),
    )
}

/// Whether a failed submission certainly sent nothing to Ganeti's job queue: RAPI
/// answered with a refusal, or the connection never opened. Anything else (a timeout,
/// a 5xx, an answer we could not read) may hide a job that runs. Pure.
pub fn certainly_not_submitted(e: &RapiError) -> bool {
    matches!(
        e,
        RapiError::Unauthorized
            | RapiError::Forbidden
            | RapiError::NotFound { .. }
            | RapiError::BadRequest { .. }
            | RapiError::Connect { .. }
            | RapiError::Tls { .. }
            | RapiError::Config { .. }
    )
}

/// POST runs the action: once, if the user still holds the right on the same VM.
pub(super) async fn confirm_action(
    State(state): State<Arc<ApiState>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(q): Form<TokenParam>,
) -> Response {
    let claims = match confirm::verify(&state.shared.keys.confirm_links, &q.token, now_secs()) {
        Ok(c) => c,
        Err(e) => return link_refused(&e),
    };
    // The groups are those the API server authenticated when the action was asked
    // for, at most CONFIRM_TTL_SECS ago: Kubernetes tells a user's groups only to
    // the holder of a credential, which a followed link is not. Profile groups, roles,
    // bindings, tags and the VM itself are read anew.
    let caller = state.caller(
        Identity {
            user: claims.user.clone(),
            groups: claims.groups.clone(),
        },
        connect
            .map(|c| c.0.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
    );
    let Some(action) = Action::parse(&claims.action).filter(|a| a.is_fatal()) else {
        return link_refused(&LinkError::Malformed);
    };
    let attempt = Attempt {
        action: action.as_str(),
        cluster: &claims.cluster,
        vm: &claims.instance,
        uuid: Some(&claims.uuid),
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
    let plan = match (action, &claims.new_name) {
        (Action::Rename, Some(n)) => Plan::Rename(n.clone()),
        (Action::Reinstall, _) => Plan::Reinstall(claims.os.clone()),
        (Action::Destroy, _) => Plan::Destroy,
        _ => return link_refused(&LinkError::Malformed),
    };
    let vm = VmRef {
        cluster: &claims.cluster,
        name: &claims.instance,
        uuid: Some(&claims.uuid),
    };
    // Before the submission: a refusal here sent nothing, so the link may be tried
    // again unless the same answer would come back (no right, another VM).
    let checked = async {
        let (pinned, client) = state
            .authorize(&caller, vm, action.as_str(), action.right())
            .await?;
        check_rename(&client, &pinned, &plan).await.inspect_err(|e| {
            state.audit(&caller, &attempt, &Outcome::Refused(e.1.clone()));
        })?;
        Ok::<_, ApiError>((pinned, client))
    }
    .await;
    let (pinned, client) = match checked {
        Ok(ok) => ok,
        Err(ApiError(status, message)) => {
            let lasting = matches!(
                status,
                StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::CONFLICT
            );
            if !lasting {
                refund(&state, &claims.nonce).await;
            }
            return page(status, "Not done", &format!("<p>{}</p>", escape(&message)));
        }
    };
    match submit(&client, &pinned, &claims.user, action, &plan).await {
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
        Err(e) => {
            state.audit(&caller, &attempt, &Outcome::Refused(format!("Ganeti: {e}")));
            let again = certainly_not_submitted(&e) && !matches!(e, RapiError::NotFound { .. });
            if again {
                refund(&state, &claims.nonce).await;
            }
            let ApiError(status, message) = super::rapi_error(&e);
            let tail = if again {
                "Nothing was sent to Ganeti; the link works again once the problem is solved."
            } else {
                "The job may have reached Ganeti, so this link is spent: check the VM, and ask again if nothing happened."
            };
            page(
                status,
                "Not done",
                &format!("<p>{}</p><p>{tail}</p>", escape(&message)),
            )
        }
    }
}

async fn refund(state: &ApiState, nonce: &str) {
    if let Err(e) = state.spent.refund(SPENT_PURPOSE, nonce).await {
        tracing::warn!(error = %e, "giving a confirmation link back failed: it stays used");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_given_back_only_when_nothing_was_sent() {
        assert!(certainly_not_submitted(&RapiError::BadRequest {
            message: "x".into()
        }));
        assert!(certainly_not_submitted(&RapiError::Connect {
            detail: "refused".into()
        }));
        assert!(!certainly_not_submitted(&RapiError::Timeout));
        assert!(!certainly_not_submitted(&RapiError::Unavailable {
            status: 504,
            message: "master timeout".into()
        }));
        assert!(!certainly_not_submitted(&RapiError::Http {
            status: 500,
            message: "x".into()
        }));
        assert!(!certainly_not_submitted(&RapiError::Decode {
            detail: "x".into()
        }));
    }
}
