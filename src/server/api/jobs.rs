//! `GET /jobs/{cluster}/{id}`: a job the caller submitted, or any job with `system.jobs`.

use super::{ApiError, ApiState, Caller, rapi_error};
use crate::access::action::submitted_by;
use crate::api::role::SystemRight;
use crate::authz::Request;
use crate::rapi::JobId;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

pub(super) async fn show_job(
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
        state.rules_loaded().await?;
        let snapshot = state.rules.current();
        let index = &snapshot.index;
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
