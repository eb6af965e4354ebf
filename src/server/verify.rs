//! `/verify-email`: where the link in a verification mail leads.
//!
//! `GET` only shows a page with a button; `POST` (the button) verifies. Mail scanners
//! and link previews fetch URLs from mails with GET, and a GET that consumed the
//! single-use link would use it up before the user ever clicked.

use super::AppState;
use super::page::{escape, page};
use crate::api::profile::UserProfile;
use crate::profile::{self, link, plan};
use crate::signed::TokenError;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct TokenParam {
    #[serde(default)]
    token: String,
}

fn count(state: &AppState, status: StatusCode) {
    let class = format!("{}xx", status.as_u16() / 100);
    state
        .metrics
        .http_requests
        .with_label_values(&[profile::VERIFY_PATH, class.as_str()])
        .inc();
}

fn refused(e: TokenError) -> Response {
    let status = match e {
        TokenError::Malformed => StatusCode::BAD_REQUEST,
        TokenError::BadSignature => StatusCode::FORBIDDEN,
        TokenError::Expired => StatusCode::GONE,
    };
    page(
        status,
        "Link not accepted",
        &format!("<p>{}.</p>", escape(&e.to_string())),
    )
}

fn not_configured() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Not available",
        "<p>Email verification is not configured.</p>",
    )
}

/// 503: `why` (HTML), and that a retry may work.
fn try_again(why: &str) -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        &format!("<p>{why}; try again in a moment.</p>"),
    )
}

/// The confirmation page.
pub async fn show(State(state): State<AppState>, Query(q): Query<TokenParam>) -> Response {
    let response = match state.keys.as_deref().map(|k| &k.email_links) {
        None => not_configured(),
        Some(key) => match link::verify(key, &q.token, Timestamp::now()) {
            Err(e) => refused(e),
            Ok(claims) => page(
                StatusCode::OK,
                "Confirm your email address",
                &format!(
                    "<p>Confirm <b>{email}</b> as the address of the Ganeti VM service profile <b>{profile}</b>?</p>\
                     <form method=\"post\" action=\"{path}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
                     <button type=\"submit\">Confirm</button></form>",
                    email = escape(&claims.email),
                    profile = escape(&claims.profile),
                    path = profile::VERIFY_PATH,
                    token = escape(&q.token),
                ),
            ),
        },
    };
    count(&state, response.status());
    response
}

/// Verifies: the profile's status records the address, and the link's nonce is gone.
pub async fn confirm(State(state): State<AppState>, Form(q): Form<TokenParam>) -> Response {
    let response = confirm_inner(&state, &q.token).await;
    count(&state, response.status());
    response
}

async fn confirm_inner(state: &AppState, token: &str) -> Response {
    let Some(key) = state.keys.as_deref().map(|k| &k.email_links) else {
        return not_configured();
    };
    let claims = match link::verify(key, token, Timestamp::now()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let api: Api<UserProfile> = Api::all(state.client.clone());
    // Two tries: a conflict means the profile changed meanwhile (the controller wrote,
    // or the same link was followed twice at once); the second read decides.
    for _ in 0..2 {
        let p = match api.get_opt(&claims.profile).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return page(
                    StatusCode::NOT_FOUND,
                    "Link not accepted",
                    "<p>The profile no longer exists.</p>",
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a profile to verify its address failed");
                return try_again("The service is busy");
            }
        };
        let status = match plan::verify(&p, &claims, Timestamp::now()) {
            Ok(s) => s,
            Err(refusal) => {
                let code = match refusal {
                    plan::Refusal::AddressChanged => StatusCode::CONFLICT,
                    plan::Refusal::AlreadyUsed | plan::Refusal::Superseded => StatusCode::GONE,
                };
                return page(
                    code,
                    "Link not accepted",
                    &format!("<p>{}.</p>", escape(&refusal.to_string())),
                );
            }
        };
        match profile::write_status(&state.client, &p, &status).await {
            Ok(_) => {
                tracing::info!(profile = %claims.profile, "email address verified");
                return page(
                    StatusCode::OK,
                    "Address verified",
                    &format!(
                        "<p><b>{}</b> is verified. You can close this page.</p>",
                        escape(&claims.email)
                    ),
                );
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                tracing::warn!(error = %e, "recording a verified address failed");
                return try_again("The service is busy");
            }
        }
    }
    try_again("The profile is changing")
}
