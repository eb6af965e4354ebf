//! The Grafana dashboard against a real operator on the testbed: every metric each
//! panel queries is in the operator's /metrics (histograms as their _bucket, _sum and
//! _count series), with every label the queries match on.
//!
//! The operator reads a GanetiCluster with one instance on it (so that instance and job
//! series exist) and follows an application it cannot finish (so that a reconcile
//! error is counted). Only the leader reconciles: other operators on the shared testbed
//! may hold the Lease for a while, which the wait allows for.

mod support;

use ganeti_operator::api::GanetiCluster;
use ganeti_operator::rapi::{
    BeParams, Credentials, InstanceCreate, NicSpec, RapiClient, RapiConfig, TlsMode,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::crds::install_crds;
use support::dashboard;
use support::operator::{Operator, Options};
use support::testbed::{env, kube_client, kubectl, kubectl_ok};

const MANAGER: &str = "ganeti-operator-tests";
const CLUSTER: &str = "dash-lab";
const SECRET: &str = "rapi-dash";
const NAMESPACE: &str = "dash-apps";
const STUCK_APP: &str = "dash-stuck";
const VM: &str = "dash-vm.dash.ganeti.test";
/// Other operators may lead for up to their lease (15 s) after they stop, or as long as
/// they run; after that, a couple of sync intervals.
const WAIT: Duration = Duration::from_secs(300);

fn gnt(args: &str) -> (bool, String) {
    let cmd = format!("{} {args}", env("GANETI_EXEC"));
    let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Removes what the test made, also when it fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = gnt(&format!(
            "gnt-instance remove -f --ignore-failures {VM} >/dev/null 2>&1"
        ));
        let _ = kubectl(
            "root",
            &[
                "delete",
                "instanceapplication",
                STUCK_APP,
                "-n",
                NAMESPACE,
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

async fn create_vm() {
    let _ = gnt(&format!(
        "gnt-instance remove -f --ignore-failures {VM} >/dev/null 2>&1"
    ));
    let rapi = RapiClient::new(RapiConfig::new(
        env("GANETI_RAPI_URL"),
        Credentials::new(env("GANETI_RAPI_USER"), env("GANETI_RAPI_PASSWORD")),
        TlsMode::CaBundle(std::fs::read(env("GANETI_RAPI_CA")).unwrap()),
    ))
    .unwrap();
    let first = env("GANETI_INSTANCE_IP_FIRST");
    let (net, _) = first.rsplit_once('.').unwrap();
    let mut req = InstanceCreate::new(VM, "diskless");
    req.os_type = Some(env("GANETI_OS"));
    req.hypervisor = Some(env("GANETI_HYPERVISOR"));
    req.pnode = Some(env("GANETI_NODE"));
    req.nics.push(NicSpec {
        ip: Some(format!("{net}.90")),
        ..Default::default()
    });
    req.beparams = BeParams {
        vcpus: Some(1),
        maxmem: Some(128),
        minmem: Some(128),
    };
    req.tags = vec!["GANETI_WEB_MANAGER:owner:U:dash-user".into()];
    let job = rapi
        .create_instance(&req, "tests/testbed_dashboard setup")
        .await
        .expect("create submitted");
    rapi.wait_job(job, Duration::from_secs(120))
        .await
        .unwrap()
        .into_success()
        .expect("instance created");
}

/// An application whose status says Creating on a cluster that does not exist: each
/// reconcile of it fails (category `invalid`), and nothing is ever created for it.
fn stuck_application() {
    let _ = kubectl("root", &["create", "namespace", NAMESPACE]);
    let _ = kubectl(
        "root",
        &[
            "delete",
            "instanceapplication",
            STUCK_APP,
            "-n",
            NAMESPACE,
            "--ignore-not-found",
        ],
    );
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
    let queries = dashboard::queries(&dashboard::load());
    assert!(!queries.is_empty());
    let _cleanup = Cleanup;
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    for f in ["manifests/access.yaml", "manifests/admission.yaml"] {
        support::apply_manifest(f);
    }
    let secrets: Api<Secret> = Api::namespaced(root.clone(), "ganeti-system");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": "ganeti-system"},
        "stringData": {"username": env("GANETI_RAPI_USER"), "password": env("GANETI_RAPI_PASSWORD")},
    }))
    .unwrap();
    secrets
        .patch(
            SECRET,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let clusters: Api<GanetiCluster> = Api::all(root.clone());
    let cluster = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": CLUSTER},
        "spec": {"rapiUrl": env("GANETI_RAPI_URL"), "credentialsSecret": {"name": SECRET},
                 "caBundle": std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap(), "syncInterval": "5s"},
    });
    clusters
        .patch(
            CLUSTER,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cluster),
        )
        .await
        .unwrap();
    create_vm().await;
    stuck_application();

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
                && l.contains("category=\"invalid\"")
                && l.contains("controller=\"instanceapplication\"")),
        "the stuck application's failures are counted:\n{errors}"
    );
}
