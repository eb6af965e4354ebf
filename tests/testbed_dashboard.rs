//! The Grafana dashboards (operations, service statistics) against a real operator on
//! the testbed: every metric each panel queries is in the operator's /metrics
//! (histograms as their _bucket, _sum and _count series), with every label the queries
//! match on; then a real Prometheus (Debian's) scrapes it and every query returns data.
//!
//! The operator reads a GanetiCluster with one instance on it (so that instance and job
//! series exist) and follows an application it cannot finish (so that a reconcile
//! error is counted), with a ClusterQuota on the cluster (so quota series exist). Only the leader reconciles: other operators on the shared testbed
//! may hold the Lease for a while, which the wait allows for.

mod support;

use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::dashboard;
use support::ganeti::{self, Instances, ip};
use support::operator::{Operator, Options};
use support::prometheus::Prometheus;
use support::testbed::{kubectl, kubectl_ok};

const CLUSTER: &str = "dash-lab";
const SECRET: &str = "rapi-dash";
const NAMESPACE: &str = "dash-apps";
const STUCK_APP: &str = "dash-stuck";
const QUOTA: &str = "dash-quota";
const VM: &str = "dash-vm.dash.ganeti.test";
/// Other operators may lead for up to their lease (15 s) after they stop, or as long as
/// they run; after that, a couple of sync intervals.
const WAIT: Duration = Duration::from_secs(300);

/// Deletes the stuck application if it is there; `wait`: until it is gone.
fn delete_stuck_application(wait: bool) {
    let _ = kubectl(
        "root",
        &[
            "delete",
            "instanceapplication",
            STUCK_APP,
            "-n",
            NAMESPACE,
            "--ignore-not-found",
            if wait { "--wait=true" } else { "--wait=false" },
        ],
    );
}

/// Removes what the test made, also when it fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_stuck_application(false);
        let _ = kubectl(
            "root",
            &[
                "delete",
                "clusterquota",
                QUOTA,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
        let _ = kubectl(
            "root",
            &[
                "delete",
                "ganeticluster",
                CLUSTER,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
    }
}

/// Our VM, owned by `dash-user`; removed when the result is dropped.
async fn create_vm() -> Instances {
    let tags = vec!["GANETI_WEB_MANAGER:owner:U:dash-user".to_string()];
    ganeti::create_instances(&[(VM, &ip(90), tags)], "tests/testbed_dashboard setup").await
}

/// An application whose status says Creating on a cluster that does not exist: each
/// reconcile of it fails (kind `InvalidState`), and nothing is ever created for it.
fn stuck_application() {
    let _ = kubectl("root", &["create", "namespace", NAMESPACE]);
    delete_stuck_application(true);
    let app = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": STUCK_APP, "namespace": NAMESPACE},
        "spec": {"cluster": "dash-no-such-cluster", "hostname": "dash-stuck.dash.ganeti.test",
                 "vcpus": 1, "memory": "128Mi", "disks": [{"size": "1Gi"}],
                 "owner": {"kind": "User", "name": "dash-user"}, "purpose": "dashboard test"},
    });
    let file = std::env::temp_dir().join(format!("dash-app-{}.json", std::process::id()));
    std::fs::write(&file, app.to_string()).unwrap();
    kubectl_ok("root", &["create", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    kubectl_ok(
        "root",
        &[
            "patch",
            "instanceapplication",
            STUCK_APP,
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Creating"}}"#,
        ],
    );
}

/// Metric names (with the labels matched on) that the dashboard's queries use but
/// `metrics` lacks.
fn missing(queries: &[dashboard::Query], metrics: &str) -> Vec<String> {
    let seen = dashboard::scrape_labels(metrics);
    let mut missing = BTreeSet::new();
    for q in queries {
        for (name, labels) in dashboard::selectors(&q.expr) {
            match seen.get(&name) {
                None => {
                    missing.insert(format!("{name} (panel {:?})", q.place));
                }
                Some(have) => {
                    for l in labels.difference(have) {
                        missing.insert(format!("label {l} of {name} (panel {:?})", q.place));
                    }
                }
            }
        }
    }
    missing.into_iter().collect()
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_the_operator_exports() {
    let queries: Vec<dashboard::Query> = dashboard::ALL
        .iter()
        .flat_map(|path| dashboard::queries(&dashboard::load_from(path)))
        .collect();
    assert!(!queries.is_empty());
    let _cleanup = Cleanup;
    let root = support::install_with_policies().await;
    ganeti::apply_cluster(&root, CLUSTER, SECRET, json!({})).await;
    let _vm = create_vm().await;
    stuck_application();
    let quotas: kube::Api<ganeti_operator::api::ClusterQuota> = kube::Api::all(root.clone());
    let quota = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "ClusterQuota", "metadata": {"name": QUOTA},
        "spec": {"cluster": CLUSTER, "subject": {"kind": "User", "name": "dash-user"},
                 "limits": {"instances": 5, "vcpus": 8, "memory": "4Gi"}}});
    support::apply(&quotas, QUOTA, &quota).await;

    let op = Operator::start_with(
        "dashboard",
        Options::default().arg("--lease-duration-seconds").arg("5"),
    )
    .await;
    let started = Instant::now();
    let mut last;
    loop {
        // Twice: the first scrape counts itself into the HTTP series of the second.
        let _ = op.metrics().await;
        let metrics = op.metrics().await;
        last = missing(&queries, &metrics);
        let ours = metrics.contains(&format!(
            "ganeti_instance_status{{cluster=\"{CLUSTER}\",instance=\"{VM}\""
        ));
        if last.is_empty() && ours {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "after {WAIT:?}, /metrics still lacks what the dashboard queries:\n  {}\n(our instance seen: {ours})\n--- metrics ---\n{metrics}\n--- operator log (tail) ---\n{}",
            last.join("\n  "),
            op.log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let errors = op.metrics().await;
    assert!(
        errors
            .lines()
            .any(|l| l.starts_with("ganeti_operator_reconcile_errors_total{")
                && l.contains("kind=\"InvalidState\"")
                && l.contains("controller=\"instanceapplication\"")),
        "the stuck application's failures are counted:\n{errors}"
    );

    // A real Prometheus scrapes the operator: every query of both dashboards (Grafana's
    // variables set to "all") returns data, as a dashboard opened on it would show.
    let prometheus = Prometheus::scraping(&format!("127.0.0.1:{}", op.metrics_port)).await;
    let started = Instant::now();
    loop {
        let mut empty = Vec::new();
        for q in &queries {
            match prometheus.query(&dashboard::expand(&q.expr)).await {
                Ok(result) if !result.is_empty() => {}
                Ok(_) => empty.push(format!("{} (panel {:?}): no data", q.expr, q.place)),
                Err(e) => empty.push(format!("{} (panel {:?}): {e}", q.expr, q.place)),
            }
        }
        if empty.is_empty() {
            eprintln!(
                "all {} dashboard queries answered by Prometheus after {:?}",
                queries.len(),
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus has no data for:\n  {}\n--- prometheus log ---\n{}",
            empty.join("\n  "),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
