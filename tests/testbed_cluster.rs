//! The GanetiCluster controller against the real testbed: status and metrics match
//! what Ganeti reports; credential, TLS and reachability failures are reported with
//! their reasons and recover; an unchanged cluster costs no status writes.

mod support;

use ganeti_operator::api::GanetiCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;
use support::crds::install_crds;
use support::operator::{Operator, sample};
use support::testbed::{env, kube_client};

const MANAGER: &str = "ganeti-operator-tests";

async fn apply_secret(client: &kube::Client, name: &str, password: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ganeti-system");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ganeti-system"},
        "stringData": {"username": env("GANETI_RAPI_USER"), "password": password},
    }))
    .unwrap();
    secrets
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

async fn apply_cluster(client: &kube::Client, name: &str, url: &str, secret: &str, ca: &str) {
    let clusters: Api<GanetiCluster> = Api::all(client.clone());
    let obj = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": name},
        "spec": {"rapiUrl": url, "credentialsSecret": {"name": secret}, "caBundle": ca, "syncInterval": "5s"},
    });
    clusters
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj))
        .await
        .unwrap();
}

/// Polls until the cluster's condition `type_` has `reason`; returns the cluster.
async fn wait_reason(
    api: &Api<GanetiCluster>,
    name: &str,
    type_: &str,
    reason: &str,
    op: &Operator,
) -> GanetiCluster {
    let mut last = None;
    for _ in 0..120 {
        let c = api.get(name).await.unwrap();
        let cond = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| (c.reason.clone(), c.message.clone()));
        if cond.as_ref().is_some_and(|(r, _)| r == reason) {
            return c;
        }
        last = cond;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{name}: {type_} never became {reason}; last {last:?}\n{}",
        op.log()
    );
}

fn gnt(args: &str) -> String {
    let cmd = format!("{} {args}", env("GANETI_EXEC"));
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts ganeti-rapi again when dropped, even if the test failed meanwhile.
struct RapiRestarter;

impl Drop for RapiRestarter {
    fn drop(&mut self) {
        gnt("/usr/lib/ganeti/daemon-util start ganeti-rapi");
    }
}

#[tokio::test]
async fn status_metrics_failures_and_recovery() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    let ca = std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap();
    let password = env("GANETI_RAPI_PASSWORD");
    let url = env("GANETI_RAPI_URL");
    let clusters: Api<GanetiCluster> = Api::all(root.clone());
    for name in ["tb-main", "tb-wrong-ca", "tb-unreachable", "tb-no-secret"] {
        let _ = clusters.delete(name, &DeleteParams::default()).await;
    }
    apply_secret(&root, "rapi-tb-main", &password).await;
    apply_cluster(&root, "tb-main", &url, "rapi-tb-main", &ca).await;
    // A CA that did not sign the RAPI certificate: the kube testbed's own.
    let other_ca = std::fs::read_to_string(env("KUBE_CA_FILE")).unwrap();
    apply_cluster(&root, "tb-wrong-ca", &url, "rapi-tb-main", &other_ca).await;
    // Nothing listens there (port 1 on the Ganeti node).
    let dead = format!("https://{}:1", env("GANETI_NODE_IP"));
    apply_cluster(&root, "tb-unreachable", &dead, "rapi-tb-main", &ca).await;
    apply_cluster(&root, "tb-no-secret", &url, "no-such-secret", &ca).await;

    let mut op = Operator::start("cluster").await;

    // Status matches Ganeti's own view.
    let c = wait_reason(&clusters, "tb-main", "Ready", "Synced", &op).await;
    let status = c.status.unwrap();
    assert_eq!(status.master.as_deref(), Some(env("GANETI_NODE").as_str()));
    assert_eq!(
        status.cluster_name.as_deref(),
        Some(env("GANETI_CLUSTER_NAME").as_str())
    );
    let version = gnt("gnt-cluster --version");
    assert!(
        version.contains(status.software_version.as_deref().unwrap()),
        "{version}"
    );
    let nodes = gnt("gnt-node list --no-headers -o name");
    assert_eq!(status.node_count, Some(nodes.lines().count() as u32));
    assert!(
        status.hypervisors.iter().any(|h| h == "kvm"),
        "{:?}",
        status.hypervisors
    );
    assert_eq!(status.nodes[0].role, "master");
    assert!(status.nodes[0].memory_total_bytes > 0);
    assert!(status.last_sync_time.is_some());

    // The other clusters say what is wrong.
    wait_reason(&clusters, "tb-wrong-ca", "Reachable", "TLSError", &op).await;
    wait_reason(&clusters, "tb-unreachable", "Reachable", "Unreachable", &op).await;
    let c = wait_reason(&clusters, "tb-no-secret", "Reachable", "MissingSecret", &op).await;
    let msg = &c
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Reachable")
        .unwrap()
        .message
        .clone();
    assert!(msg.contains("no-such-secret"), "{msg}");

    // Metrics: cluster, node and instance series, valid exposition format.
    let metrics = op.metrics().await;
    assert_eq!(
        sample(&metrics, "ganeti_cluster_up{cluster=\"tb-main\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ganeti_cluster_up{cluster=\"tb-wrong-ca\"}"),
        None,
        "never read, no series"
    );
    let node = env("GANETI_NODE");
    let mem = sample(
        &metrics,
        &format!("ganeti_node_memory_total_bytes{{cluster=\"tb-main\",node=\"{node}\"}}"),
    );
    assert_eq!(mem.map(|b| b as u64), Some(status.nodes[0].memory_total_bytes));
    assert!(
        metrics.contains("ganeti_operator_rapi_request_duration_seconds_bucket{operation=\"instances_bulk\""),
        "{metrics}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    use std::io::Write;
    promtool
        .stdin
        .as_ref()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check metrics: {problems}");

    // Steady state: two more sync intervals, no status writes.
    let writes = |m: &str| {
        sample(
            m,
            "ganeti_operator_status_writes_total{controller=\"ganeticluster\"}",
        )
        .unwrap_or(0.0)
    };
    let reads = |m: &str| {
        sample(
            m,
            "ganeti_operator_reconciles_total{controller=\"ganeticluster\"}",
        )
        .unwrap_or(0.0)
    };
    let before = op.metrics().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = op.metrics().await;
    // A live cluster may really change in between (a 1% step of free memory, a job
    // finishing), so allow one write; re-reading four clusters twice must not write each.
    let (read_delta, write_delta) = (reads(&after) - reads(&before), writes(&after) - writes(&before));
    assert!(read_delta >= 4.0, "each cluster re-read: {read_delta}");
    assert!(
        write_delta <= 1.0,
        "an unchanged cluster costs no status write ({write_delta} writes in {read_delta} reads):\n{}",
        op.log()
            .lines()
            .filter(|l| l.contains("writing status"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Wrong password: AuthFailed, then recovery when the Secret is fixed.
    apply_secret(&root, "rapi-tb-main", "not-the-password").await;
    wait_reason(&clusters, "tb-main", "Reachable", "AuthFailed", &op).await;
    let m = op.metrics().await;
    assert_eq!(sample(&m, "ganeti_cluster_up{cluster=\"tb-main\"}"), Some(0.0));
    apply_secret(&root, "rapi-tb-main", &password).await;
    wait_reason(&clusters, "tb-main", "Reachable", "Synced", &op).await;

    // RAPI daemon stopped: Unreachable, then recovery when it is back.
    {
        let _restart = RapiRestarter;
        gnt("/usr/lib/ganeti/daemon-util stop ganeti-rapi");
        wait_reason(&clusters, "tb-main", "Reachable", "Unreachable", &op).await;
    }
    wait_reason(&clusters, "tb-main", "Reachable", "Synced", &op).await;

    // A deleted cluster disappears from the metrics.
    clusters
        .delete("tb-wrong-ca", &DeleteParams::default())
        .await
        .unwrap();
    clusters
        .delete("tb-main", &DeleteParams::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..60 {
        if !op.metrics().await.contains("cluster=\"tb-main\"") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "tb-main's series outlive its deletion:\n{}", op.log());

    let (exit, log) = op.stop();
    assert!(exit.success(), "{log}");
    assert!(
        !log.contains(&password),
        "the RAPI password never reaches the log"
    );
    for name in ["tb-main", "tb-wrong-ca", "tb-unreachable", "tb-no-secret"] {
        let _ = clusters.delete(name, &DeleteParams::default()).await;
    }
}
