//! What a client is built from: the cluster's URL, credentials, TLS mode and
//! timeouts, and the observer that receives every request's duration for metrics.

use crate::rapi::tls::TlsMode;
use secrecy::SecretString;
use std::fmt;
use std::time::Duration;

/// RAPI user and password, from a Kubernetes Secret. Debug never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Receives the duration and outcome of every RAPI request, for metrics.
/// `outcome` is `"ok"` or a `RapiError::category()`.
pub trait RapiObserver: Send + Sync {
    fn observe(&self, op: &'static str, outcome: &'static str, seconds: f64);

    /// Every write the client is asked for, on the cluster it was built for (its
    /// `RapiConfig::cluster`): `sent`, or refused unsent by a read-only client. What
    /// proves that an observed-only cluster sees no writes.
    fn write(&self, _cluster: &str, _op: &'static str, _sent: bool) {}
}

/// The default observer: records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RapiObserver for NoopObserver {
    fn observe(&self, _: &'static str, _: &'static str, _: f64) {}
}

/// How to reach one cluster.
#[derive(Debug, Clone)]
pub struct RapiConfig {
    /// e.g. `https://cluster.example.org:5080`.
    pub base_url: String,
    pub credentials: Credentials,
    pub tls: TlsMode,
    pub connect_timeout: Duration,
    /// Per request.
    pub request_timeout: Duration,
    /// For one `/2/jobs/<id>/wait` long-poll (Ganeti holds it up to 10 s).
    pub wait_timeout: Duration,
    /// Extra attempts for reads that failed transiently.
    pub read_retries: usize,
    /// Refuse every write before sending it (an observed-only cluster).
    pub read_only: bool,
    /// The GanetiCluster this client is for, as metrics name it (may be empty).
    pub cluster: String,
}

impl RapiConfig {
    pub fn new(base_url: impl Into<String>, credentials: Credentials, tls: TlsMode) -> Self {
        Self {
            base_url: base_url.into(),
            credentials,
            tls,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(40),
            read_retries: 3,
            read_only: false,
            cluster: String::new(),
        }
    }
}
