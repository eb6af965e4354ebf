//! The async RAPI client: one per Ganeti cluster. This file holds the connection and
//! the request plumbing (URLs, timing, observing, retrying reads, sending writes once);
//! the requests themselves are grouped by resource: `cluster` (info and nodes),
//! `instances`, `jobs` and `tags`; `config` is what a client is built from.

mod cluster;
mod config;
mod instances;
mod jobs;
mod tags;

pub use config::{Credentials, NoopObserver, RapiConfig, RapiObserver};
pub use instances::Target;

use super::error::RapiError;
use super::tls::{self, TlsMode};
use super::types::{JobId, QueryAnswer};
use backon::{ExponentialBuilder, Retryable};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Typed client for Ganeti's RAPI v2. Cheap to clone.
#[derive(Clone)]
pub struct RapiClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    request_timeout: Duration,
    wait_timeout: Duration,
    read_retries: usize,
    insecure: bool,
    /// Writes are refused unsent: the one check every write path passes (defence in
    /// depth behind the planners, which check the policy to say why).
    read_only: bool,
    cluster: Arc<str>,
    observer: Arc<dyn RapiObserver>,
}

impl fmt::Debug for RapiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RapiClient")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A read: retried on transient failures.
    Read,
    /// Sent once: writes (they may have been applied), and reads whose "transient"
    /// answers are not (a stopped instance's console is 503), or that loop anyway.
    Once,
}

impl RapiClient {
    pub fn new(config: RapiConfig) -> Result<Self, RapiError> {
        let mut base = Url::parse(&config.base_url).map_err(|e| RapiError::Config {
            detail: format!("base URL {:?}: {e}", config.base_url),
        })?;
        if base.scheme() != "https" {
            return Err(RapiError::Config {
                detail: "RAPI base URL must use https".into(),
            });
        }
        if base.cannot_be_a_base() {
            return Err(RapiError::Config {
                detail: "RAPI base URL cannot carry paths".into(),
            });
        }
        base.set_query(None);
        let builder = match &config.tls {
            TlsMode::SystemRoots => reqwest::Client::builder().use_rustls_tls(),
            mode => reqwest::Client::builder().use_preconfigured_tls(tls::client_config(mode)?),
        };
        let http = builder
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("ganeti-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RapiError::Config {
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials,
            request_timeout: config.request_timeout,
            wait_timeout: config.wait_timeout,
            read_retries: config.read_retries,
            insecure: config.tls == TlsMode::Insecure,
            read_only: config.read_only,
            cluster: config.cluster.into(),
            observer: Arc::new(NoopObserver),
        })
    }

    /// Plugs a metrics observer in.
    pub fn with_observer(mut self, observer: Arc<dyn RapiObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Whether certificate checks are off (the caller reports a warning condition).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Whether every write is refused unsent (an observed-only cluster).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// `base` + `/2/...` path segments (each percent-encoded) + query.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        {
            // cannot_be_a_base was rejected in new(), so this cannot fail.
            let mut path = url.path_segments_mut().expect("base URL");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// One request: timed, observed, retried with jittered backoff if it is a read and
    /// failed transiently.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &'static str,
        kind: Kind,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T, RapiError> {
        let attempt = || async {
            let started = Instant::now();
            let result = self
                .attempt::<T>(method.clone(), url.clone(), body, timeout)
                .await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.category(),
            };
            self.observer
                .observe(op, outcome, started.elapsed().as_secs_f64());
            result
        };
        match kind {
            Kind::Once => attempt().await,
            Kind::Read => {
                attempt
                    .retry(read_backoff(self.read_retries))
                    .when(RapiError::is_retryable_read)
                    .notify(|e, after| {
                        tracing::debug!(op, error = %e, retry_in = ?after, "retrying RAPI read");
                    })
                    .await
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T, RapiError> {
        let mut req = self.http.request(method, url).timeout(timeout).basic_auth(
            &self.credentials.username,
            Some(self.credentials.password.expose_secret()),
        );
        if let Some(body) = body {
            // RAPI answers 415 to a body without this content type; .json() sets it.
            req = req.json(body);
        }
        let mut resp = req.send().await.map_err(|e| RapiError::from_reqwest(&e))?;
        let status = resp.status();
        // Chunks go straight into one buffer sized by Content-Length: collecting them
        // first and then joining them would hold a bulk answer (~16 MB at 10k
        // instances) twice.
        let expected = resp.content_length().unwrap_or(0).min(MAX_PRESIZE);
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await.map_err(|e| RapiError::from_reqwest(&e))? {
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(RapiError::from_status(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| RapiError::Decode {
            detail: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, RapiError> {
        let url = self.url(segments, query);
        self.call(op, Kind::Read, Method::GET, url, None, self.request_timeout)
            .await
    }

    /// `PUT /2/query/<resource>` with a body of fields and a filter: a query, safe to
    /// repeat, so retried like a read although it is a PUT.
    async fn query(&self, op: &'static str, resource: &str, body: &Value) -> Result<QueryAnswer, RapiError> {
        let url = self.url(&["2", "query", resource], &[]);
        self.call(op, Kind::Read, Method::PUT, url, Some(body), self.request_timeout)
            .await
    }

    /// A write: carries `reason` (which Kubernetes object and user caused it) into
    /// Ganeti's reason trail, and is sent once.
    async fn write(
        &self,
        op: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        self.observer.write(&self.cluster, op, !self.read_only);
        if self.read_only {
            tracing::warn!(op, cluster = %self.cluster, "a write to an observed-only cluster was refused unsent");
            return Err(RapiError::ReadOnly);
        }
        let mut q = query.to_vec();
        q.push(("reason", reason));
        let url = self.url(segments, &q);
        self.call(op, Kind::Once, method, url, body, self.request_timeout)
            .await
    }

    /// A write whose body is a typed request.
    async fn write_body(
        &self,
        op: &'static str,
        method: Method,
        segments: &[&str],
        req: &impl Serialize,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(op, method, segments, &[], Some(&body), reason).await
    }
}

/// Most a response's Content-Length reserves up front (a bigger answer still arrives,
/// growing the buffer as it goes).
const MAX_PRESIZE: u64 = 256 << 20;

/// Jittered exponential backoff for reads: 200 ms, 400 ms, 800 ms, ... capped at 5 s.
fn read_backoff(retries: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_max_times(retries)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rapi::ErrorKind;

    fn client(url: &str) -> RapiClient {
        RapiClient::new(RapiConfig::new(
            url,
            Credentials::new("u", "s3cret-pw"),
            TlsMode::Insecure,
        ))
        .unwrap()
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = client("https://ganeti.example:5080");
        let text = format!("{c:?} {:?}", c.credentials);
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn urls_are_built_and_encoded() {
        let c = client("https://ganeti.example:5080/");
        let url = c.url(
            &["2", "instances", "vm1.example", "tags"],
            &[
                ("tag", "a:b"),
                ("tag", "c d"),
                ("reason", "VM ns/x by alice@example"),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://ganeti.example:5080/2/instances/vm1.example/tags?tag=a%3Ab&tag=c+d&reason=VM+ns%2Fx+by+alice%40example"
        );
        // A name cannot smuggle path segments.
        let url = c.url(&["2", "instances", "../info"], &[]);
        assert_eq!(url.path(), "/2/instances/..%2Finfo");
        // A base with a prefix path keeps it.
        let c = client("https://proxy.example/ganeti");
        assert_eq!(
            c.url(&["2", "info"], &[]).as_str(),
            "https://proxy.example/ganeti/2/info"
        );
    }

    #[test]
    fn only_https_urls_are_accepted() {
        let err = RapiClient::new(RapiConfig::new(
            "http://x:5080",
            Credentials::new("u", "p"),
            TlsMode::Insecure,
        ))
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            RapiClient::new(RapiConfig::new(
                "not a url",
                Credentials::new("u", "p"),
                TlsMode::Insecure
            ))
            .is_err()
        );
    }

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(&'static str, &'static str)>>);
    impl RapiObserver for Recorder {
        fn observe(&self, op: &'static str, outcome: &'static str, _: f64) {
            self.0.lock().unwrap().push((op, outcome));
        }
    }

    #[derive(Default)]
    struct Writes(std::sync::Mutex<Vec<(String, &'static str, bool)>>);
    impl RapiObserver for Writes {
        fn observe(&self, _: &'static str, _: &'static str, _: f64) {}
        fn write(&self, cluster: &str, op: &'static str, sent: bool) {
            self.0.lock().unwrap().push((cluster.to_owned(), op, sent));
        }
    }

    #[tokio::test]
    async fn a_read_only_client_refuses_every_write_unsent_and_says_so() {
        // A port nobody listens on: a write that were sent would fail as unreachable.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut cfg = RapiConfig::new(
            format!("https://127.0.0.1:{port}"),
            Credentials::new("viewer", "p"),
            TlsMode::Insecure,
        );
        cfg.read_only = true;
        cfg.read_retries = 0;
        cfg.cluster = "lab".into();
        let writes = Arc::new(Writes::default());
        let c = RapiClient::new(cfg.clone())
            .unwrap()
            .with_observer(writes.clone());
        assert!(c.is_read_only());
        let err = c.startup_instance("vm", "test").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err:?}");
        assert!(err.to_string().contains("managementPolicy: Observe"), "{err}");
        let err = c.add_cluster_tags(&["a"], "test").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadOnly);
        // Reads still go out (and fail here only because nobody listens).
        assert_eq!(c.info().await.unwrap_err().kind(), ErrorKind::Unreachable);
        // A managed client sends (and reports) its writes.
        cfg.read_only = false;
        let m = RapiClient::new(cfg).unwrap().with_observer(writes.clone());
        assert_eq!(
            m.startup_instance("vm", "t").await.unwrap_err().kind(),
            ErrorKind::Unreachable
        );
        assert_eq!(
            *writes.0.lock().unwrap(),
            vec![
                ("lab".to_owned(), "instance_startup", false),
                ("lab".to_owned(), "cluster_tags_add", false),
                ("lab".to_owned(), "instance_startup", true),
            ]
        );
    }

    #[tokio::test]
    async fn reads_are_retried_on_connect_errors_and_writes_are_not() {
        // A port nobody listens on: connection refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let rec = Arc::new(Recorder::default());
        let mut cfg = RapiConfig::new(
            format!("https://127.0.0.1:{port}"),
            Credentials::new("u", "p"),
            TlsMode::Insecure,
        );
        cfg.read_retries = 2;
        let c = RapiClient::new(cfg).unwrap().with_observer(rec.clone());
        let err = c.info().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unreachable, "{err:?}");
        let err = c.startup_instance("vm", "test").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unreachable);
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("info", "unreachable"),
                ("info", "unreachable"),
                ("info", "unreachable"),
                ("instance_startup", "unreachable")
            ]
        );
    }
}
