//! Errors of the RAPI client: HTTP-level refusals, transport failures and failures
//! reported inside a Ganeti job, each of a typed [`ErrorKind`] whose fixed string
//! (`category()`) labels metrics and conditions.

use serde::Deserialize;
use std::fmt;

/// Everything that can go wrong talking to RAPI.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RapiError {
    /// 401: wrong user name or password.
    #[error("RAPI refused the credentials (401)")]
    Unauthorized,
    /// 403: the user lacks the right (e.g. a read-only user writing).
    #[error("RAPI forbids this request (403): the user lacks the write right")]
    Forbidden,
    /// 404, or a job Ganeti no longer knows.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// 400: Ganeti rejected a parameter.
    #[error("bad request: {message}")]
    BadRequest { message: String },
    /// 502/503/504: master daemon unreachable, queue full/drained, console unavailable,
    /// master timeout. Transient for reads.
    #[error("RAPI unavailable ({status}): {message}")]
    Unavailable { status: u16, message: String },
    /// Any other non-2xx answer.
    #[error("RAPI answered {status}: {message}")]
    Http { status: u16, message: String },
    /// The request (or the job wait) ran out of time.
    #[error("RAPI request timed out")]
    Timeout,
    /// TCP-level failure: refused, unreachable, reset, DNS.
    #[error("cannot reach RAPI: {detail}")]
    Connect { detail: String },
    /// TLS handshake failure (certificate not trusted, pin mismatch, ...), or a CA
    /// bundle that cannot be used.
    #[error("TLS error: {detail}")]
    Tls { detail: String },
    /// The answer is not what the RAPI version we speak returns.
    #[error("cannot decode RAPI answer: {detail}")]
    Decode { detail: String },
    /// The request was accepted but its job failed inside Ganeti.
    #[error("Ganeti job failed: {0}")]
    JobFailed(GanetiFailure),
    /// The client was configured wrongly (bad URL, ...).
    #[error("invalid RAPI client configuration: {detail}")]
    Config { detail: String },
    /// A write on a read-only client (an observed-only cluster): refused before
    /// anything was sent.
    #[error(
        "not sent: the cluster is observed only (managementPolicy: Observe), so the operator never writes to it"
    )]
    ReadOnly,
}

/// What kind of failure a [`RapiError`] is, for callers to match on instead of
/// comparing strings. [`ErrorKind::as_str`] gives the fixed label metrics and
/// condition reasons carry; never derived from server text, so label cardinality
/// stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 401: [`RapiError::Unauthorized`].
    AuthFailed,
    /// 403: [`RapiError::Forbidden`].
    Forbidden,
    /// 404, or an unknown job: [`RapiError::NotFound`].
    NotFound,
    /// 400: [`RapiError::BadRequest`].
    BadRequest,
    /// 502/503/504: [`RapiError::Unavailable`].
    Unavailable,
    /// Any other non-2xx answer: [`RapiError::Http`].
    Http,
    /// [`RapiError::Timeout`].
    Timeout,
    /// TCP-level failure: [`RapiError::Connect`].
    Unreachable,
    /// [`RapiError::Tls`].
    Tls,
    /// [`RapiError::Decode`].
    Decode,
    /// A job failed inside Ganeti: [`RapiError::JobFailed`].
    JobFailed,
    /// [`RapiError::Config`].
    Config,
    /// [`RapiError::ReadOnly`].
    ReadOnly,
}

impl ErrorKind {
    /// Every kind, e.g. to register metric labels up front.
    pub const ALL: [Self; 13] = [
        Self::AuthFailed,
        Self::Forbidden,
        Self::NotFound,
        Self::BadRequest,
        Self::Unavailable,
        Self::Http,
        Self::Timeout,
        Self::Unreachable,
        Self::Tls,
        Self::Decode,
        Self::JobFailed,
        Self::Config,
        Self::ReadOnly,
    ];

    /// The label of this kind in metrics and condition reasons (stable: dashboards
    /// and alerts use these strings).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthFailed => "auth_failed",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::BadRequest => "bad_request",
            Self::Unavailable => "unavailable",
            Self::Http => "http_error",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls_error",
            Self::Decode => "decode_error",
            Self::JobFailed => "ganeti_error",
            Self::Config => "config_error",
            Self::ReadOnly => "read_only",
        }
    }
}

impl RapiError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unauthorized => ErrorKind::AuthFailed,
            Self::Forbidden => ErrorKind::Forbidden,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::BadRequest { .. } => ErrorKind::BadRequest,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Http { .. } => ErrorKind::Http,
            Self::Timeout => ErrorKind::Timeout,
            Self::Connect { .. } => ErrorKind::Unreachable,
            Self::Tls { .. } => ErrorKind::Tls,
            Self::Decode { .. } => ErrorKind::Decode,
            Self::JobFailed(_) => ErrorKind::JobFailed,
            Self::Config { .. } => ErrorKind::Config,
            Self::ReadOnly => ErrorKind::ReadOnly,
        }
    }

    /// A small, fixed set of labels for metrics and condition reasons: the string of
    /// [`Self::kind`]. Prefer matching on `kind()` to comparing these.
    pub fn category(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether a read (GET) may be retried: the failure is transient and a GET changes
    /// nothing. Writes are never retried because a write may already have been applied.
    pub fn is_retryable_read(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Connect { .. } | Self::Unavailable { .. }
        )
    }

    /// The error for a non-2xx answer, from its status and body.
    pub fn from_status(status: u16, body: &[u8]) -> Self {
        let message = ErrorBody::parse(body)
            .map(|b| b.message)
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(500).collect());
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound { message },
            400 => Self::BadRequest { message },
            502..=504 => Self::Unavailable { status, message },
            _ => Self::Http { status, message },
        }
    }

    /// Classifies a transport error from reqwest. TLS failures are told apart from
    /// other connect failures by finding a rustls error in the source chain: the
    /// controller reports them differently (TLSError vs Unreachable).
    pub fn from_reqwest(err: &reqwest::Error) -> Self {
        if let Some(detail) = tls_error_in_chain(err) {
            return Self::Tls { detail };
        }
        if err.is_timeout() {
            return Self::Timeout;
        }
        if err.is_decode() {
            return Self::Decode {
                detail: chain_text(err),
            };
        }
        if err.is_builder() {
            return Self::Config {
                detail: chain_text(err),
            };
        }
        Self::Connect {
            detail: chain_text(err),
        }
    }
}

/// The first rustls error found in the source chain, as text.
fn tls_error_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error::source() skips the error it wraps, so look inside explicitly.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls.to_string());
            }
            if let Some(found) = tls_error_in_chain(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// "outer: inner: innermost", without the URL (noise; the caller knows it).
fn chain_text(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    let mut current = std::error::Error::source(err);
    while let Some(e) = current {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text = format!("{text}: {part}");
        }
        current = e.source();
    }
    text
}

/// RAPI's error body: `{"code", "message", "explain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    pub code: Option<u16>,
    pub message: String,
    #[serde(default)]
    pub explain: Option<String>,
}

impl ErrorBody {
    /// Parses the body; Ganeti HTML-escapes the message (`&#x27;`, `&quot;`), which is
    /// undone here.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let mut parsed: ErrorBody = serde_json::from_slice(body).ok()?;
        parsed.message = html_unescape(&parsed.message);
        parsed.explain = parsed.explain.map(|e| html_unescape(&e));
        Some(parsed)
    }
}

/// Undoes Python's `html.escape` (the only entities Ganeti's HTTP server produces).
fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Ganeti's error codes (`errors.ECODE_*`), the second element of an error's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ResolverError,
    InsufficientResources,
    TempInsufficientResources,
    WrongInput,
    WrongState,
    UnknownEntity,
    AlreadyExists,
    ResourceNotUnique,
    InternalError,
    EnvironmentError,
    Other(String),
}

impl ErrorCode {
    pub fn parse(s: &str) -> Self {
        match s {
            "resolver_error" => Self::ResolverError,
            "insufficient_resources" => Self::InsufficientResources,
            "temp_insufficient_resources" => Self::TempInsufficientResources,
            "wrong_input" => Self::WrongInput,
            "wrong_state" => Self::WrongState,
            "unknown_entity" => Self::UnknownEntity,
            "already_exists" => Self::AlreadyExists,
            "resource_not_unique" => Self::ResourceNotUnique,
            "internal_error" => Self::InternalError,
            "environment_error" => Self::EnvironmentError,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::ResolverError => "resolver_error",
            Self::InsufficientResources => "insufficient_resources",
            Self::TempInsufficientResources => "temp_insufficient_resources",
            Self::WrongInput => "wrong_input",
            Self::WrongState => "wrong_state",
            Self::UnknownEntity => "unknown_entity",
            Self::AlreadyExists => "already_exists",
            Self::ResourceNotUnique => "resource_not_unique",
            Self::InternalError => "internal_error",
            Self::EnvironmentError => "environment_error",
            Self::Other(s) => s,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::TempInsufficientResources | Self::ResolverError)
    }
}

/// Why a Ganeti job failed: from a failed opcode's result
/// `[error_type, [message, ecode]]` (e.g. `["OpPrereqError", ["... already in the cluster", "already_exists"]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GanetiFailure {
    /// Ganeti's exception class, e.g. `OpPrereqError`, `OpExecError`.
    pub error_type: String,
    pub message: String,
    pub ecode: Option<ErrorCode>,
}

impl GanetiFailure {
    /// Parses one opcode result of a failed opcode. Other shapes (Ganeti sometimes
    /// passes only a message, or several arguments) are kept as text.
    pub fn from_opresult(value: &serde_json::Value) -> Option<Self> {
        let arr = value.as_array()?;
        let error_type = arr.first()?.as_str()?.to_owned();
        let (message, ecode) = match arr.get(1) {
            Some(serde_json::Value::Array(args)) => {
                let message = match args.first() {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let ecode = args.get(1).and_then(|c| c.as_str()).map(ErrorCode::parse);
                (message, ecode)
            }
            Some(serde_json::Value::String(s)) => (s.clone(), None),
            Some(other) => (other.to_string(), None),
            None => (String::new(), None),
        };
        Some(Self {
            error_type,
            message,
            ecode,
        })
    }
}

impl fmt::Display for GanetiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)?;
        if let Some(code) = &self.ecode {
            write!(f, " ({})", code.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_as_the_testbed_sends_them() {
        // Captured from Ganeti 3.0.2: the message is HTML-escaped.
        let body = br#"{"code": 400, "message": "Invalid body parameters: (&quot;Parameter &#x27;OP_INSTANCE_REBOOT.reboot_type&#x27; fails validation&quot;, &#x27;wrong_input&#x27;)", "explain": "Bad request syntax or unsupported method"}"#;
        let err = RapiError::from_status(400, body);
        match &err {
            RapiError::BadRequest { message } => assert_eq!(
                message,
                "Invalid body parameters: (\"Parameter 'OP_INSTANCE_REBOOT.reboot_type' fails validation\", 'wrong_input')"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::BadRequest);

        let body = br#"{"code": 401, "message": "Unauthorized", "explain": "No permission -- see authorization schemes"}"#;
        assert!(matches!(
            RapiError::from_status(401, body),
            RapiError::Unauthorized
        ));
        let body = br#"{"code": 403, "message": "Forbidden", "explain": "Request forbidden -- authorization will not help"}"#;
        assert_eq!(RapiError::from_status(403, body).kind(), ErrorKind::Forbidden);
        let body = br#"{"code": 404, "message": "Not Found", "explain": "Nothing matches the given URI"}"#;
        assert!(
            matches!(RapiError::from_status(404, body), RapiError::NotFound { message } if message == "Not Found")
        );
        let body = br#"{"code": 503, "message": "Instance console unavailable", "explain": ""}"#;
        let err = RapiError::from_status(503, body);
        assert!(
            matches!(&err, RapiError::Unavailable { status: 503, message } if message == "Instance console unavailable")
        );
        let err = RapiError::from_status(500, br#"{"code": 500, "message": "Can&#x27;t load job file", "explain": "Server got itself in trouble"}"#);
        assert!(matches!(&err, RapiError::Http { status: 500, message } if message == "Can't load job file"));
        // A proxy's HTML page instead of JSON still yields a message.
        let err = RapiError::from_status(502, b"<html>Bad Gateway</html>");
        assert!(
            matches!(&err, RapiError::Unavailable { status: 502, message } if message.contains("Bad Gateway"))
        );
    }

    #[test]
    fn only_transient_failures_are_retried_for_reads() {
        assert!(RapiError::Timeout.is_retryable_read());
        assert!(
            RapiError::Connect {
                detail: "refused".into()
            }
            .is_retryable_read()
        );
        for status in [502, 503, 504] {
            assert!(
                RapiError::from_status(status, b"{}").is_retryable_read(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 415, 500, 501] {
            assert!(
                !RapiError::from_status(status, b"{}").is_retryable_read(),
                "{status}"
            );
        }
        assert!(!RapiError::Tls { detail: "x".into() }.is_retryable_read());
        assert!(!RapiError::Decode { detail: "x".into() }.is_retryable_read());
    }

    #[test]
    fn categories_are_a_small_fixed_set() {
        let all = [
            RapiError::Unauthorized,
            RapiError::Forbidden,
            RapiError::NotFound {
                message: String::new(),
            },
            RapiError::BadRequest {
                message: String::new(),
            },
            RapiError::Unavailable {
                status: 503,
                message: String::new(),
            },
            RapiError::Http {
                status: 500,
                message: String::new(),
            },
            RapiError::Timeout,
            RapiError::Connect {
                detail: String::new(),
            },
            RapiError::Tls {
                detail: String::new(),
            },
            RapiError::Decode {
                detail: String::new(),
            },
            RapiError::JobFailed(GanetiFailure {
                error_type: String::new(),
                message: String::new(),
                ecode: None,
            }),
            RapiError::Config {
                detail: String::new(),
            },
            RapiError::ReadOnly,
        ];
        let mut cats: Vec<_> = all.iter().map(RapiError::category).collect();
        cats.sort();
        cats.dedup();
        assert_eq!(cats.len(), all.len());
        assert_eq!(all.each_ref().map(RapiError::kind), ErrorKind::ALL);
    }

    #[test]
    fn error_kinds_keep_their_labels_and_map_from_status() {
        // The labels metrics and conditions have always carried.
        let labels = [
            (ErrorKind::AuthFailed, "auth_failed"),
            (ErrorKind::Forbidden, "forbidden"),
            (ErrorKind::NotFound, "not_found"),
            (ErrorKind::BadRequest, "bad_request"),
            (ErrorKind::Unavailable, "unavailable"),
            (ErrorKind::Http, "http_error"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::Unreachable, "unreachable"),
            (ErrorKind::Tls, "tls_error"),
            (ErrorKind::Decode, "decode_error"),
            (ErrorKind::JobFailed, "ganeti_error"),
            (ErrorKind::Config, "config_error"),
            (ErrorKind::ReadOnly, "read_only"),
        ];
        assert_eq!(labels.map(|(k, _)| k), ErrorKind::ALL);
        for (kind, label) in labels {
            assert_eq!(kind.as_str(), label);
        }
        let unique: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(unique.len(), ErrorKind::ALL.len(), "every kind has its own label");

        for (status, kind) in [
            (401, ErrorKind::AuthFailed),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (400, ErrorKind::BadRequest),
            (503, ErrorKind::Unavailable),
            (500, ErrorKind::Http),
        ] {
            let err = RapiError::from_status(status, b"{}");
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.category(), kind.as_str(), "{status}");
        }
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        #[derive(Debug, thiserror::Error)]
        #[error("connect")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(io);
        assert!(tls_error_in_chain(&outer).unwrap().contains("UnknownIssuer"));
        let plain = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(tls_error_in_chain(&plain), None);
    }

    #[test]
    fn failures_parse_from_real_opresults() {
        // The testbed's answer to creating an instance whose name exists.
        let v = json!([
            "OpPrereqError",
            [
                "Instance 'probe1.ganeti.test' is already in the cluster",
                "already_exists"
            ]
        ]);
        let f = GanetiFailure::from_opresult(&v).unwrap();
        assert_eq!(f.error_type, "OpPrereqError");
        assert_eq!(
            f.message,
            "Instance 'probe1.ganeti.test' is already in the cluster"
        );
        assert_eq!(f.ecode, Some(ErrorCode::AlreadyExists));
        // OpExecError carries only a message.
        let f = GanetiFailure::from_opresult(&json!(["OpExecError", ["Could not start instance"]])).unwrap();
        assert_eq!(f.ecode, None);
        assert_eq!(f.message, "Could not start instance");
        assert_eq!(
            ErrorCode::parse("something_new"),
            ErrorCode::Other("something_new".into())
        );
        assert_eq!(ErrorCode::parse("unknown_entity").as_str(), "unknown_entity");
        assert!(GanetiFailure::from_opresult(&json!(["node1"])).is_some());
        assert!(GanetiFailure::from_opresult(&json!(null)).is_none());
    }
}
