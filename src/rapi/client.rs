//! The async RAPI client: one per Ganeti cluster.

use super::error::RapiError;
use super::tls::{self, TlsMode};
use super::types::*;
use crate::inventory::{self, NodeRole};
use backon::{ExponentialBuilder, Retryable};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

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
        }
    }
}

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
    observer: Arc<dyn RapiObserver>,
}

impl fmt::Debug for RapiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RapiClient")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
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

    // --- cluster -------------------------------------------------------------------

    /// `GET /2/info`.
    pub async fn info(&self) -> Result<Info, RapiError> {
        self.get("info", &["2", "info"], &[]).await
    }

    /// `GET /2/features`; the operator requires [`FEATURE_INSTANCE_CREATE_V1`].
    pub async fn features(&self) -> Result<Vec<String>, RapiError> {
        self.get("features", &["2", "features"], &[]).await
    }

    /// `GET /2/os`: the OS definitions valid on every node, with variants
    /// (`debootstrap+default`), as instance creation accepts them.
    pub async fn operating_systems(&self) -> Result<Vec<String>, RapiError> {
        self.get("os_list", &["2", "os"], &[]).await
    }

    /// `GET /2/tags`.
    pub async fn cluster_tags(&self) -> Result<Vec<String>, RapiError> {
        self.get("cluster_tags", &["2", "tags"], &[]).await
    }

    /// `PUT /2/tags?tag=...`: all tags in one job.
    pub async fn add_cluster_tags(&self, tags: &[&str], reason: &str) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write("cluster_tags_add", Method::PUT, &["2", "tags"], &q, None, reason)
            .await
    }

    /// `DELETE /2/tags?tag=...`.
    pub async fn remove_cluster_tags(&self, tags: &[&str], reason: &str) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "cluster_tags_remove",
            Method::DELETE,
            &["2", "tags"],
            &q,
            None,
            reason,
        )
        .await
    }

    // --- bulk reads ----------------------------------------------------------------

    /// `GET /2/instances?bulk=1`.
    pub async fn instances(&self) -> Result<Vec<WireInstance>, RapiError> {
        self.get("instances_bulk", &["2", "instances"], &[("bulk", "1")])
            .await
    }

    /// `GET /2/instances?bulk=1` parsed straight into the inventory's model: the
    /// periodic sync's read, without wire types in between.
    pub async fn instances_inventory(&self) -> Result<Vec<inventory::Instance>, RapiError> {
        let bulk: BulkInstances = self
            .get("instances_bulk", &["2", "instances"], &[("bulk", "1")])
            .await?;
        Ok(bulk.0)
    }

    /// `GET /2/instances` without bulk: every instance's name, and nothing else.
    pub async fn instance_names(&self) -> Result<Vec<String>, RapiError> {
        #[derive(serde::Deserialize)]
        struct Item {
            id: String,
        }
        let items: Vec<Item> = self.get("instance_names", &["2", "instances"], &[]).await?;
        Ok(items.into_iter().map(|i| i.id).collect())
    }

    /// `GET /2/instances/<name>`.
    pub async fn instance(&self, name: &str) -> Result<WireInstance, RapiError> {
        self.get("instance", &["2", "instances", name], &[]).await
    }

    /// Names of the instances carrying `tag`, via `PUT /2/query/instance` with a filter
    /// (`=[]`: the tag list contains it): fresh from Ganeti, and found whatever the
    /// instances are called now.
    pub async fn instances_tagged(&self, tag: &str) -> Result<Vec<String>, RapiError> {
        let body = json!({"fields": ["name"], "qfilter": ["=[]", "tags", tag]});
        let answer = self.query("instances_tagged_query", "instance", &body).await?;
        answer.names()
    }

    /// Instance name → hypervisor, via `GET /2/query/instance` (the bulk answer lacks
    /// the hypervisor). Needs a user with the `read` or `write` option.
    pub async fn instance_hypervisors(&self) -> Result<HashMap<String, String>, RapiError> {
        #[derive(serde::Deserialize)]
        struct QueryResponse {
            data: Vec<Vec<(i64, Value)>>,
        }
        let resp: QueryResponse = self
            .get(
                "instances_query",
                &["2", "query", "instance"],
                &[("fields", "name,hypervisor")],
            )
            .await?;
        Ok(resp
            .data
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [(_, Value::String(name)), (_, Value::String(hv))] => Some((name.clone(), hv.clone())),
                _ => None,
            })
            .collect())
    }

    /// `GET /2/nodes?bulk=1`.
    pub async fn nodes(&self) -> Result<Vec<WireNode>, RapiError> {
        self.get("nodes_bulk", &["2", "nodes"], &[("bulk", "1")]).await
    }

    /// `GET /2/nodes?bulk=1` parsed straight into the inventory's model.
    pub async fn nodes_inventory(&self) -> Result<Vec<inventory::Node>, RapiError> {
        let bulk: BulkNodes = self.get("nodes_bulk", &["2", "nodes"], &[("bulk", "1")]).await?;
        Ok(bulk.0)
    }

    /// `GET /2/groups?bulk=1`.
    pub async fn groups(&self) -> Result<Vec<WireGroup>, RapiError> {
        self.get("groups_bulk", &["2", "groups"], &[("bulk", "1")]).await
    }

    /// `GET /2/jobs?bulk=1` (without op results).
    pub async fn jobs(&self) -> Result<Vec<Job>, RapiError> {
        self.get("jobs_bulk", &["2", "jobs"], &[("bulk", "1")]).await
    }

    /// Job counts by status (`queued`, `success`, ...), from `GET /2/query/job?fields=status`:
    /// the same jobs as `/2/jobs?bulk=1`, without Ganeti encoding every job's opcodes
    /// and results (a megabyte per few hundred jobs, and CPU the master needs).
    pub async fn job_counts(&self) -> Result<BTreeMap<String, u32>, RapiError> {
        let answer: QueryAnswer = self
            .get(
                "jobs_status_query",
                &["2", "query", "job"],
                &[("fields", "status")],
            )
            .await?;
        answer.status_counts()
    }

    /// Jobs not finished yet (queued, waiting, running, canceling), with their
    /// summaries (`INSTANCE_CREATE(name)`), via `PUT /2/query/job` with a filter: unlike
    /// `GET /2/jobs?bulk=1` its cost does not grow with the job history Ganeti keeps.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobSummary>, RapiError> {
        let unfinished = [
            JobStatus::Queued,
            JobStatus::Waiting,
            JobStatus::Running,
            JobStatus::Canceling,
        ];
        let mut filter = vec![json!("|")];
        filter.extend(unfinished.iter().map(|s| json!(["=", "status", s.as_str()])));
        let body = json!({"fields": ["id", "status", "summary"], "qfilter": filter});
        let answer = self.query("jobs_query", "job", &body).await?;
        answer.job_summaries()
    }

    /// The status of each of `ids` that Ganeti still knows (archived ones are absent),
    /// in one `PUT /2/query/job`: what a controller following many jobs asks instead of
    /// one `GET /2/jobs/<id>` (all opcodes included) per job.
    pub async fn job_progress(&self, ids: &[u64]) -> Result<Vec<JobProgress>, RapiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut filter = vec![json!("|")];
        filter.extend(ids.iter().map(|id| json!(["=", "id", id])));
        let body = json!({"fields": ["id", "status", "received_ts"], "qfilter": filter});
        let answer = self.query("jobs_progress_query", "job", &body).await?;
        answer.job_progress()
    }

    // --- jobs ----------------------------------------------------------------------

    /// `GET /2/jobs/<id>`. An unknown (or archived) job is `NotFound`: Ganeti 3.0.2
    /// answers it with 200 and all fields null.
    pub async fn job(&self, id: JobId) -> Result<Job, RapiError> {
        let id_text = id.to_string();
        let raw: Value = self.get("job", &["2", "jobs", &id_text], &[]).await?;
        if raw.get("status").is_none_or(Value::is_null) {
            return Err(RapiError::NotFound {
                message: format!("job {id} is unknown"),
            });
        }
        serde_json::from_value(raw).map_err(|e| RapiError::Decode {
            detail: e.to_string(),
        })
    }

    /// One `GET /2/jobs/<id>/wait` long-poll for a status change: `Ok(None)` when
    /// nothing changed within Ganeti's poll window (10 s), else the new status.
    pub async fn wait_job_change(
        &self,
        id: JobId,
        previous: Option<JobStatus>,
    ) -> Result<Option<JobStatus>, RapiError> {
        let id_text = id.to_string();
        let url = self.url(&["2", "jobs", &id_text, "wait"], &[]);
        let body = json!({
            "fields": ["status"],
            "previous_job_info": previous.map(|s| json!([s.as_str()])),
            "previous_log_serial": null,
        });
        // A GET with a body, as RAPI wants; a read, but not retried here: the caller
        // loops anyway.
        let change: Option<JobChange> = self
            .call(
                "job_wait",
                Kind::Once,
                Method::GET,
                url,
                Some(&body),
                self.wait_timeout,
            )
            .await?;
        let Some(change) = change else { return Ok(None) };
        match change.job_info.first() {
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| RapiError::Decode {
                    detail: format!("job status {v}: {e}"),
                }),
            None => Err(RapiError::Decode {
                detail: "wait answer without job_info".into(),
            }),
        }
    }

    /// Waits until the job is final and returns it (look at `Job::failure()` or use
    /// `into_success()`). Long-polls `/wait`; falls back to plain GET polling when the
    /// user may not use it (4xx other than 404, e.g. a read-only user's 403), or when
    /// Ganeti errs on it (500 "Can't load job file" for an unknown job). `Timeout` when
    /// `deadline` passes first.
    pub async fn wait_job(&self, id: JobId, deadline: Duration) -> Result<Job, RapiError> {
        let until = Instant::now() + deadline;
        let mut previous: Option<JobStatus> = None;
        let mut long_poll = true;
        let mut poll_delay = Duration::from_millis(250);
        loop {
            if Instant::now() >= until {
                return Err(RapiError::Timeout);
            }
            if long_poll {
                match self.wait_job_change(id, previous).await {
                    Ok(Some(status)) if status.is_final() => return self.job(id).await,
                    Ok(Some(status)) => previous = Some(status),
                    Ok(None) => {}
                    Err(RapiError::NotFound { .. }) => {
                        return Err(RapiError::NotFound {
                            message: format!("job {id} is unknown"),
                        });
                    }
                    Err(
                        RapiError::Unauthorized
                        | RapiError::Forbidden
                        | RapiError::BadRequest { .. }
                        | RapiError::Http { .. },
                    ) => {
                        tracing::debug!(job = %id, "job wait refused; polling instead");
                        long_poll = false;
                    }
                    Err(e) if e.is_retryable_read() => {
                        tokio::time::sleep(poll_delay).await;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let job = self.job(id).await?;
                if job.status.is_final() {
                    return Ok(job);
                }
                let left = until.saturating_duration_since(Instant::now());
                tokio::time::sleep(poll_delay.min(left)).await;
                poll_delay = (poll_delay * 2).min(Duration::from_secs(5));
            }
        }
    }

    // --- instances -----------------------------------------------------------------
    //
    // Writes on one instance take a [`Target`]: a bare name, or a name pinned to the
    // instance's UUID. A pinned write sends `instance_uuid` in the body, where RAPI
    // passes the body into the opcode (rlib2's reboot, shutdown, rename, remove,
    // migrate, replace-disks, export); Ganeti then refuses the job (`ECODE_NOTUNIQUE`)
    // if the name resolves to another instance by the time the job runs
    // (`ExpandInstanceUuidAndName` in cmdlib/common.py). rlib2 drops the body of
    // startup and builds reinstall's opcodes from the name alone: those two cannot be
    // pinned through RAPI, so callers read the instance by exact name right before.

    /// `POST /2/instances` with a v1 body; returns the job id.
    pub async fn create_instance(&self, req: &InstanceCreate, reason: &str) -> Result<JobId, RapiError> {
        self.write_body("instance_create", Method::POST, &["2", "instances"], req, reason)
            .await
    }

    /// `PUT /2/instances/<n>/startup`.
    pub async fn startup_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        // Not pinnable: rlib2 ignores the body of startup (see above).
        let name = target.into().name;
        self.write(
            "instance_startup",
            Method::PUT,
            &["2", "instances", name, "startup"],
            &[],
            None,
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/shutdown`, with Ganeti's default timeout unless given.
    pub async fn shutdown_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        timeout: Option<Duration>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let name = target.name;
        let body = target.pin(match timeout {
            Some(t) => json!({ "timeout": t.as_secs() }),
            None => json!({}),
        });
        self.write(
            "instance_shutdown",
            Method::PUT,
            &["2", "instances", name, "shutdown"],
            &[],
            Some(&body),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/reboot?type=...`.
    pub async fn reboot_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        kind: RebootType,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = target.uuid.map(|_| target.pin(json!({})));
        self.write(
            "instance_reboot",
            Method::POST,
            &["2", "instances", target.name, "reboot"],
            &[("type", kind.as_str())],
            body.as_ref(),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/rename`.
    pub async fn rename_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        new_name: &str,
        name_check: bool,
        ip_check: bool,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let name = target.name;
        let body =
            target.pin(json!({ "new_name": new_name, "name_check": name_check, "ip_check": ip_check }));
        self.write(
            "instance_rename",
            Method::PUT,
            &["2", "instances", name, "rename"],
            &[],
            Some(&body),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/reinstall` (v1 body).
    pub async fn reinstall_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceReinstall,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        // Not pinnable: rlib2 builds the opcodes from the name alone (see above).
        let name = target.into().name;
        // rlib2 refuses a body together with query parameters, and `reason` is one:
        // without OS parameters, the query form says the same (`os`, `nostartup`).
        if req.osparams.is_none() {
            let nostartup = if req.start == Some(false) { "1" } else { "0" };
            let mut query = vec![("nostartup", nostartup)];
            if let Some(os) = &req.os {
                query.push(("os", os.as_str()));
            }
            return self
                .write(
                    "instance_reinstall",
                    Method::POST,
                    &["2", "instances", name, "reinstall"],
                    &query,
                    None,
                    reason,
                )
                .await;
        }
        self.write_body(
            "instance_reinstall",
            Method::POST,
            &["2", "instances", name, "reinstall"],
            req,
            reason,
        )
        .await
    }

    /// `DELETE /2/instances/<n>`.
    pub async fn remove_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = target.uuid.map(|_| target.pin(json!({})));
        self.write(
            "instance_remove",
            Method::DELETE,
            &["2", "instances", target.name],
            &[],
            body.as_ref(),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/migrate`.
    pub async fn migrate_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceMigrate,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_migrate",
            Method::PUT,
            &["2", "instances", target.name, "migrate"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/modify` with new backend parameters.
    pub async fn resize_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceResize,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_modify",
            Method::PUT,
            &["2", "instances", target.name, "modify"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/disk/<i>/grow`: grows disk `disk` by `amount_mib`.
    pub async fn grow_instance_disk<'a>(
        &self,
        target: impl Into<Target<'a>>,
        disk: u8,
        amount_mib: u64,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let index = disk.to_string();
        self.write(
            "instance_disk_grow",
            Method::POST,
            &["2", "instances", target.name, "disk", &index, "grow"],
            &[],
            Some(&target.pin(serde_json::json!({ "amount": amount_mib }))),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/replace-disks` with a body.
    pub async fn replace_instance_disks<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceReplaceDisks,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_replace_disks",
            Method::POST,
            &["2", "instances", target.name, "replace-disks"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/export` (local exports).
    pub async fn export_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceExport,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_export",
            Method::PUT,
            &["2", "instances", target.name, "export"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `GET /2/instances/<n>/tags`.
    pub async fn instance_tags(&self, name: &str) -> Result<Vec<String>, RapiError> {
        self.get("instance_tags", &["2", "instances", name, "tags"], &[])
            .await
    }

    /// `PUT /2/instances/<n>/tags?tag=a&tag=b`: one job for all tags.
    pub async fn add_instance_tags(
        &self,
        name: &str,
        tags: &[&str],
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "instance_tags_add",
            Method::PUT,
            &["2", "instances", name, "tags"],
            &q,
            None,
            reason,
        )
        .await
    }

    /// `DELETE /2/instances/<n>/tags?tag=a&tag=b`.
    pub async fn remove_instance_tags(
        &self,
        name: &str,
        tags: &[&str],
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "instance_tags_remove",
            Method::DELETE,
            &["2", "instances", name, "tags"],
            &q,
            None,
            reason,
        )
        .await
    }

    /// `GET /2/instances/<n>/console`. A stopped instance is `Unavailable` (503);
    /// Ganeti 3.0.2 answers an unknown instance with 500, not 404.
    pub async fn console(&self, name: &str) -> Result<Console, RapiError> {
        let url = self.url(&["2", "instances", name, "console"], &[]);
        self.call(
            "instance_console",
            Kind::Once,
            Method::GET,
            url,
            None,
            self.request_timeout,
        )
        .await
    }

    // --- nodes ---------------------------------------------------------------------

    /// `GET /2/nodes/<n>/role`.
    pub async fn node_role(&self, node: &str) -> Result<NodeRole, RapiError> {
        let name: String = self.get("node_role", &["2", "nodes", node, "role"], &[]).await?;
        parse_node_role_name(&name).ok_or_else(|| RapiError::Decode {
            detail: format!("unknown node role {name:?}"),
        })
    }

    /// `PUT /2/nodes/<n>/role` with the role name as a JSON string body. `force` is
    /// needed e.g. to demote a master candidate below the pool size.
    pub async fn set_node_role(
        &self,
        node: &str,
        role: NodeRole,
        force: bool,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let body = Value::String(node_role_name(role).to_owned());
        let q: &[(&str, &str)] = if force { &[("force", "1")] } else { &[] };
        self.write(
            "node_role_set",
            Method::PUT,
            &["2", "nodes", node, "role"],
            q,
            Some(&body),
            reason,
        )
        .await
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
        assert_eq!(err.category(), "config_error");
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
        assert_eq!(err.category(), "unreachable", "{err:?}");
        let err = c.startup_instance("vm", "test").await.unwrap_err();
        assert_eq!(err.category(), "unreachable");
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

/// The instance a write is for: its name, and when known its UUID, which the write
/// then pins (see the instance section of [`RapiClient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub name: &'a str,
    pub uuid: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// The instance named `name` only if it is still the one with this UUID.
    pub fn pinned(name: &'a str, uuid: &'a str) -> Self {
        Self {
            name,
            uuid: Some(uuid).filter(|u| !u.is_empty()),
        }
    }

    /// `body` with `instance_uuid` added when pinned.
    fn pin(&self, mut body: Value) -> Value {
        if let (Some(uuid), Some(map)) = (self.uuid, body.as_object_mut()) {
            map.insert("instance_uuid".into(), Value::String(uuid.to_string()));
        }
        body
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(name: &'a str) -> Self {
        Self { name, uuid: None }
    }
}

impl<'a> From<&'a String> for Target<'a> {
    fn from(name: &'a String) -> Self {
        Self::from(name.as_str())
    }
}
