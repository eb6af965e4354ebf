//! Errors as `metav1.Status`, which kubectl and client libraries print.

use super::super::api::ApiError;
use crate::compute::GROUP;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct StatusError {
    pub code: StatusCode,
    pub message: String,
    /// (resource, name) the error is about.
    pub details: Option<(&'static str, String)>,
    /// The field an `Invalid` is about and what is wrong with it (kubectl prints it).
    pub cause: Option<(&'static str, String)>,
}

impl StatusError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            cause: None,
        }
    }

    pub fn about(mut self, resource: &'static str, name: &str) -> Self {
        self.details = Some((resource, name.to_string()));
        self
    }

    /// 422: `field` cannot be what the request says.
    pub fn invalid(resource: &'static str, name: &str, field: &'static str, message: String) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{resource} \"{name}\" is invalid: {field}: {message}"),
        )
        .about(resource, name);
        e.cause = Some((field, message));
        e
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Kubernetes' words for a missing object (also what a hidden one answers).
    pub fn not_found(resource: &'static str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("{resource}.{GROUP} \"{name}\" not found"),
        )
        .about(resource, name)
    }

    pub fn not_found_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
        )
    }

    fn reason(&self) -> &'static str {
        match self.code.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason(), "code": self.code.as_u16(),
        });
        if let Some((kind, name)) = &self.details {
            status["details"] = json!({"name": name, "group": GROUP, "kind": kind});
            if let Some((field, message)) = &self.cause {
                status["details"]["causes"] =
                    json!([{"reason": "FieldValueInvalid", "message": message, "field": field}]);
            }
        }
        status
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        (
            self.code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.to_json().to_string(),
        )
            .into_response()
    }
}

impl From<ApiError> for StatusError {
    fn from(e: ApiError) -> Self {
        Self::new(e.0, e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_kubernetes_reasons() {
        let s = StatusError::not_found("ganetiinstances", "lab.vm1").to_json();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(
            s["message"],
            "ganetiinstances.compute.ganeti.dev \"lab.vm1\" not found"
        );
        assert_eq!(s["details"]["name"], "lab.vm1");
        assert_eq!(
            StatusError::new(StatusCode::FORBIDDEN, "no").to_json()["reason"],
            "Forbidden"
        );
        assert_eq!(
            StatusError::new(StatusCode::GONE, "old").to_json()["reason"],
            "Expired"
        );
        let invalid = StatusError::invalid(
            "ganetiinstances",
            "lab.vm1",
            "spec.cluster",
            "cannot change".into(),
        )
        .to_json();
        assert_eq!(invalid["reason"], "Invalid");
        assert_eq!(invalid["details"]["causes"][0]["field"], "spec.cluster");
    }
}
