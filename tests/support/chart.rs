//! The operator's chart installed on the testbed's node (`scripts/testbed node up`):
//! helm and the node's scripts, the release's pods, their Lease and /metrics
//! (tests/testbed_e2e_chart.rs).
#![allow(dead_code)]

use super::testbed::{kubectl, kubectl_ok};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// The release's namespace and name, as the chart's README installs it.
pub const NS: &str = "ganeti-system";
pub const RELEASE: &str = "ganeti-operator";
/// The chart's pods.
pub const SELECTOR: &str = "app.kubernetes.io/name=ganeti-operator";
/// The testbed's values (tests/fixtures/testbed-values.yaml).
pub const VALUES: &str = "tests/fixtures/testbed-values.yaml";

/// Each stage's duration, printed as it ends and again at the end.
pub struct Stages(pub Vec<(&'static str, Duration)>, pub Instant);

impl Stages {
    pub fn done(&mut self, name: &'static str) {
        let took = self.1.elapsed();
        println!("=== stage {name}: {:.1}s", took.as_secs_f64());
        self.0.push((name, took));
        self.1 = Instant::now();
    }
}

/// Runs a command; its stdout, or a panic with everything it said.
pub fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/helm` as the testbed's superuser.
pub fn helm(args: &[&str]) -> Command {
    let mut cmd = Command::new(super::repo_path("scripts/helm"));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(super::testbed::kubeconfig("root"));
    cmd
}

/// `scripts/testbed node ...`.
pub fn testbed_node(args: &[&str]) -> Command {
    let mut cmd = Command::new(super::repo_path("scripts/testbed"));
    cmd.arg("node").args(args);
    cmd
}

/// The archive `scripts/image` writes: `IMAGE_ARCHIVE`, else under this test binary's
/// target directory (`<target>/debug/deps/<binary>`).
pub fn image_archive() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("IMAGE_ARCHIVE") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("<target>/debug/deps/<binary>");
    target.join(format!(
        "image/ganeti-operator-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ))
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub ip: String,
    pub image: String,
    pub ready: bool,
}

/// The chart's pods that are not being deleted.
pub fn pods() -> Vec<Pod> {
    let list: Value = serde_json::from_str(&kubectl_ok(
        "root",
        &["-n", NS, "get", "pods", "-l", SELECTOR, "-o", "json"],
    ))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| Pod {
            name: p["metadata"]["name"].as_str().unwrap().to_string(),
            ip: p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
            image: p["spec"]["containers"][0]["image"].as_str().unwrap().to_string(),
            ready: p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        })
        .collect()
}

/// Every pod of the namespace described, and the chart's pods' logs: why a wait failed.
pub fn diagnostics() -> String {
    let (_, describe, _) = kubectl("root", &["-n", NS, "describe", "pods", "-l", SELECTOR]);
    let (_, logs, _) = kubectl(
        "root",
        &["-n", NS, "logs", "-l", SELECTOR, "--tail=40", "--prefix"],
    );
    let (_, events, _) = kubectl("root", &["-n", NS, "get", "events", "--sort-by=.lastTimestamp"]);
    format!("{describe}\n--- logs\n{logs}\n--- events\n{events}")
}

/// Waits until exactly `n` pods run `image`, all Ready, and no other pod is left.
pub async fn wait_ready(n: usize, image: &str, timeout: Duration) -> Vec<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, all, _) = kubectl("root", &["-n", NS, "get", "pods", "-l", SELECTOR, "-o", "name"]);
        let now = pods();
        // Terminating pods still count: a rollout is done when they are gone.
        if ok
            && all.lines().count() == n
            && now.len() == n
            && now
                .iter()
                .all(|p| p.ready && p.image == image && !p.ip.is_empty())
        {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} Ready pods of {image}: {now:?}\n{}",
            diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pod that holds the leader Lease, if one does: the operator's identity is
/// `<POD_NAME>-<pid>`.
pub fn leading_pod() -> Option<String> {
    let holder = lease_holder()?;
    let (pod, pid) = holder.rsplit_once('-')?;
    pid.parse::<u32>().ok().map(|_| pod.to_string())
}

/// Who holds the leader Lease, if anyone.
pub fn lease_holder() -> Option<String> {
    let (ok, out, _) = kubectl(
        "root",
        &[
            "-n",
            NS,
            "get",
            "lease",
            ganeti_operator::leader::LEASE_NAME,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    (ok && !out.trim().is_empty()).then(|| out.trim().to_string())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A pod's /metrics (its own listener, port 9090).
pub async fn metrics(pod: &Pod) -> String {
    http()
        .get(format!("http://{}:9090/metrics", pod.ip))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{}'s /metrics: {e}", pod.name))
        .text()
        .await
        .unwrap()
}

/// The sum of the samples of `series` whose labels contain `label`.
pub fn sum(metrics: &str, series: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{series}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Objects of the chart's names that `kubectl apply -f manifests/` left (other tests)
/// handed to the release, as Helm adopts objects: its label and annotations. Deleting
/// them instead would race with other tests' `kubectl apply`, and remove every admission
/// binding at once (see scripts/testbed.d/param-informer-keeper.yaml). The compute
/// API's Service and APIService go: tests register them differently (ExternalName).
pub fn adopt_what_the_chart_owns() {
    let _ = helm(&["uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s"]).output();
    for (kind, name) in [
        ("apiservice", "v1alpha1.compute.ganeti.dev"),
        ("service", "ganeti-operator-api"),
    ] {
        let _ = kubectl("root", &["-n", NS, "delete", kind, name, "--ignore-not-found"]);
    }
    let rendered = run(helm(&[
        "template",
        RELEASE,
        super::repo_path("charts/ganeti-operator").to_str().unwrap(),
        "-n",
        NS,
        "-f",
        super::repo_path("tests/fixtures/testbed-values.yaml")
            .to_str()
            .unwrap(),
    ]));
    let file = std::env::temp_dir().join(format!("e2e-chart-{}.yaml", std::process::id()));
    std::fs::write(&file, rendered).unwrap();
    let existing = kubectl_ok(
        "root",
        &[
            "get",
            "--ignore-not-found",
            "-o",
            "json",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    let existing: Value = serde_json::from_str(&existing).unwrap_or(Value::Null);
    // One object comes alone, several as a List.
    let objects = match existing["items"].as_array() {
        Some(items) => items.clone(),
        None if existing["kind"].is_string() => vec![existing],
        None => Vec::new(),
    };
    let refs: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({"apiVersion": o["apiVersion"], "kind": o["kind"],
                   "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"]}})
        })
        .collect();
    if refs.is_empty() {
        return;
    }
    let list = std::env::temp_dir().join(format!("e2e-adopt-{}.json", std::process::id()));
    std::fs::write(
        &list,
        json!({"apiVersion": "v1", "kind": "List", "items": refs}).to_string(),
    )
    .unwrap();
    let list_arg = list.to_str().unwrap();
    kubectl_ok(
        "root",
        &[
            "label",
            "--overwrite",
            "-f",
            list_arg,
            "app.kubernetes.io/managed-by=Helm",
        ],
    );
    kubectl_ok(
        "root",
        &[
            "annotate",
            "--overwrite",
            "-f",
            list_arg,
            &format!("meta.helm.sh/release-name={RELEASE}"),
            &format!("meta.helm.sh/release-namespace={NS}"),
        ],
    );
    let _ = std::fs::remove_file(&list);
}
