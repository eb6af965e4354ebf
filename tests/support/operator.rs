//! Runs the operator binary against the testbed under its own ServiceAccount
//! (manifests/rbac.yaml), as it runs in a cluster: a missing permission fails a test.
#![allow(dead_code)]

use super::testbed::{env, kubectl_ok};
use kube::api::Api;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The link key of test operators that bring none of their own.
pub const TEST_LINK_KEY: &str = "testbed-operator-link-key-0123456789abcdef";

pub struct Operator {
    child: Option<Child>,
    pub port: u16,
    /// The metrics listener's port (`/metrics` is not on `port`).
    pub metrics_port: u16,
    pub log_path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

/// Applies manifests/rbac.yaml: the `ganeti-system` namespace, the operator's
/// ServiceAccount and its rights.
pub fn apply_operator_rbac() {
    super::apply_manifest("manifests/rbac.yaml");
}

/// Extra command-line flags and environment for one operator run (webhook, SMTP,
/// fault injection, ...). `Default` is the plain `run`.
#[derive(Default, Clone)]
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

impl Operator {
    /// Applies the operator's RBAC, mints a ServiceAccount token and starts the operator;
    /// returns once `/healthz` answers.
    pub async fn start(name: &str) -> Operator {
        Self::start_with(name, Options::default()).await
    }

    /// As [`Operator::start`], with extra flags and environment.
    pub async fn start_with(name: &str, options: Options) -> Operator {
        apply_operator_rbac();
        let token = kubectl_ok(
            "root",
            &[
                "create",
                "token",
                "ganeti-operator",
                "--namespace",
                "ganeti-system",
                "--duration",
                "1h",
            ],
        );
        let dir = std::env::temp_dir().join(format!("ganeti-operator-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": env("KUBE_SERVER"), "certificate-authority": env("KUBE_CA_FILE")}}],
            "users": [{"name": "t", "user": {"token": token.trim()}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
        });
        std::fs::write(&kubeconfig, serde_yaml::to_string(&doc).unwrap()).unwrap();
        let port = super::free_port();
        let metrics_port = super::free_port();
        let log_path = dir.join("operator.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ganeti-operator"))
            .args([
                "run",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            // Leader election is on (as in a cluster), so the operator refuses to start
            // without a configured link key: one fixed test key, unless the test gives
            // its own (LINK_KEY in `options.env` overrides this; a --link-key* flag
            // replaces it).
            .envs(
                (!options.args.iter().any(|a| a.starts_with("--link-key")))
                    .then_some(("LINK_KEY", TEST_LINK_KEY)),
            )
            // `{port}` in a flag or variable: the port chosen here (for --public-url).
            .args(
                options
                    .args
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string())),
            )
            .envs(
                options
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.replace("{port}", &port.to_string()))),
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,ganeti_operator=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("operator starts");
        let op = Operator {
            child: Some(child),
            port,
            metrics_port,
            log_path,
            dir,
        };
        for _ in 0..100 {
            if reqwest::get(op.url("/healthz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return op;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("operator never answered /healthz:\n{}", op.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls `name` every 100 ms until `done` holds for it (the operator's work, as a
    /// rule); panics after `timeout` with the last version seen and this log.
    pub async fn wait_for<K>(
        &self,
        api: &Api<K>,
        name: &str,
        timeout: Duration,
        done: impl Fn(&K) -> bool,
    ) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        while std::time::Instant::now() < deadline {
            if let Some(o) = api.get_opt(name).await.unwrap() {
                if done(&o) {
                    return o;
                }
                last = Some(o);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(o) = &mut last {
            o.meta_mut().managed_fields = None;
        }
        panic!(
            "{name}: the awaited state never came; last {last:#?}\n{}",
            self.log()
        );
    }

    /// Waits (up to `timeout`) for the operator to exit on its own (a fault-injection
    /// crash); the exit status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL: a replica dying without releasing anything (its lease expires).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit status and the log.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        (status, self.log())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of one sample line (`name{labels}`) in a metrics text, if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

impl Operator {
    /// Polls `check` every 250 ms until it holds; panics with `what` and this log after
    /// `secs`. How long it took.
    pub async fn wait_until(&self, what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) -> Duration {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            if check().await {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{what}: not within {secs}s\n{}", self.log());
    }
}

/// `ganeti-operator explain ARGS` as the testbed's superuser: (allowed, what it printed).
pub fn explain(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ganeti-operator"))
        .arg("explain")
        .args(args)
        .arg("--kubeconfig")
        .arg(super::testbed::kubeconfig("root"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
