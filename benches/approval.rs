//! Approval written → create job submitted, against the real testbed (Ganeti,
//! kube-apiserver) with the real operator binary: p50 and p99 over 100 applications.
//!
//! The clock starts just before the decision is sent to the API server (so the figure
//! includes that request) and stops at the job's `received_ts` in Ganeti, on the same
//! machine's clock. Approvals go out one after another while the earlier VMs are still
//! being created, as an admin working through a queue does. The VMs get addresses from
//! a Ganeti network's pool, and are removed afterwards.

#[path = "../tests/support/mod.rs"]
mod support;

use ganeti_operator::api::InstanceApplication;
use ganeti_operator::rapi::{Credentials, JobId, RapiClient, RapiConfig, TlsMode};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::operator::{Operator, Options};
use support::testbed::{env, kube_client, kubectl};

const APPLICATIONS: usize = 100;
const CLUSTER: &str = "bench-lab";
const NAMESPACE: &str = "bench-approval";
const NETWORK: &str = "bench-net";

fn gnt(args: &str) -> (bool, String) {
    let cmd = format!("{} {args}", env("GANETI_EXEC"));
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn rapi() -> RapiClient {
    let ca = std::fs::read(env("GANETI_RAPI_CA")).unwrap();
    RapiClient::new(RapiConfig::new(
        env("GANETI_RAPI_URL"),
        Credentials::new(env("GANETI_RAPI_USER"), env("GANETI_RAPI_PASSWORD")),
        TlsMode::CaBundle(ca),
    ))
    .unwrap()
}

fn host(i: usize) -> String {
    format!("bench-{i:03}.bench.ganeti.test")
}

async fn remove_all(rapi: &RapiClient) {
    let mut jobs = Vec::new();
    for i in 0..APPLICATIONS {
        if let Ok(job) = rapi
            .remove_instance(&host(i), "ganeti-operator bench cleanup")
            .await
        {
            jobs.push(job);
        }
    }
    for job in jobs {
        let _ = rapi.wait_job(job, Duration::from_secs(300)).await;
    }
}

async fn setup(root: &kube::Client) {
    support::crds::install_crds(root).await;
    support::operator::apply_operator_rbac();
    support::apply_manifest("manifests/access.yaml");
    support::apply_manifest("manifests/admission.yaml");
    let _ = kubectl("root", &["create", "namespace", NAMESPACE]);
    // A pool of addresses for 100 VMs (routed NICs need one each).
    // `gnt-network info` succeeds for unknown networks: look at the list instead.
    let (_, networks) = gnt("gnt-network list --no-headers -o name,group_list");
    let line = networks
        .lines()
        .find(|l| l.split_whitespace().next() == Some(NETWORK));
    if line.is_none() {
        let (ok, out) = gnt(&format!("gnt-network add --network=10.213.0.0/24 {NETWORK}"));
        assert!(ok, "{out}");
    }
    if !line.is_some_and(|l| l.contains("default")) {
        let (ok, out) = gnt(&format!(
            "gnt-network connect --nic-parameters=mode=routed,link=rt {NETWORK} default"
        ));
        assert!(ok, "{out}");
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(root.clone(), "ganeti-system");
    secrets
        .patch(
            "rapi-bench",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                // The operator reads only Secrets labelled as RAPI credentials.
                "metadata": {"name": "rapi-bench", "namespace": "ganeti-system",
                             "labels": {ganeti_operator::clusters::CREDENTIALS_LABEL: ganeti_operator::clusters::CREDENTIALS_LABEL_VALUE}},
                "stringData": {"username": env("GANETI_RAPI_USER"), "password": env("GANETI_RAPI_PASSWORD")}})),
        )
        .await
        .unwrap();
    let clusters: Api<ganeti_operator::api::GanetiCluster> = Api::all(root.clone());
    clusters
        .patch(
            CLUSTER,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(
                json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster",
                "metadata": {"name": CLUSTER},
                "spec": {"rapiUrl": env("GANETI_RAPI_URL"), "credentialsSecret": {"name": "rapi-bench"},
                         "caBundle": std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap(),
                         "defaults": {"os": env("GANETI_OS"), "hypervisor": env("GANETI_HYPERVISOR"),
                                      "diskTemplate": "diskless", "primaryNode": env("GANETI_NODE"),
                                      "network": NETWORK}}}),
            ),
        )
        .await
        .unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let root = kube_client("root").await;
    let rapi = rapi();
    remove_all(&rapi).await;
    setup(&root).await;
    let apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NAMESPACE);
    for app in apps.list(&ListParams::default()).await.unwrap() {
        let _ = apps
            .delete(&app.metadata.name.unwrap(), &DeleteParams::default())
            .await;
    }
    let op = Operator::start_with("bench-approval", Options::default()).await;

    // File every application first; the operator keeps them Pending (no decision).
    for i in 0..APPLICATIONS {
        let app: InstanceApplication = serde_json::from_value(json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
            "metadata": {"name": format!("bench-{i:03}")},
            "spec": {"cluster": CLUSTER, "hostname": host(i), "vcpus": 1, "memory": "128Mi",
                     "disks": [{"size": "1Gi"}], "network": {"ip": "pool"},
                     "owner": {"kind": "User", "name": "testbed-root"}, "purpose": "benchmark"}
        }))
        .unwrap();
        apps.create(&PostParams::default(), &app).await.unwrap();
    }
    for i in 0..APPLICATIONS {
        wait_for(
            &apps,
            i,
            |s| s.conditions.iter().any(|c| c.type_ == "Decided"),
            &op,
        )
        .await;
    }

    let mut latencies = Vec::with_capacity(APPLICATIONS);
    for i in 0..APPLICATIONS {
        let name = format!("bench-{i:03}");
        let approved_at = now_secs();
        apps.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Approved"}}})),
        )
        .await
        .unwrap();
        let status = wait_for(&apps, i, |s| s.job_id.is_some(), &op).await;
        let job = rapi.job(JobId(status.job_id.unwrap())).await.unwrap();
        let received = job.received_ts.expect("Ganeti records when it received the job");
        latencies.push((received - approved_at).max(0.0));
    }
    let in_order: Vec<String> = latencies.iter().map(|l| format!("{:.0}", l * 1e3)).collect();
    let _ = std::fs::write(
        support::repo_path("target/bench-approval-latencies.txt"),
        in_order.join("\n"),
    );
    latencies.sort_by(f64::total_cmp);
    println!("approval_to_job_p50 {:.0} ms", percentile(&latencies, 50.0) * 1e3);
    println!("approval_to_job_p99 {:.0} ms", percentile(&latencies, 99.0) * 1e3);
    println!(
        "approval_to_job_max {:.0} ms",
        latencies[latencies.len() - 1] * 1e3
    );

    // The operator's log, for whoever wants to see where the time went.
    let log = support::repo_path("target/bench-approval-operator.log");
    let _ = std::fs::write(&log, op.log());
    let _ = std::fs::write(
        support::repo_path("target/bench-approval-metrics.txt"),
        op.metrics().await,
    );
    drop(op);
    for i in 0..APPLICATIONS {
        let _ = apps
            .delete(&format!("bench-{i:03}"), &DeleteParams::default())
            .await;
    }
    remove_all(&rapi).await;
}

async fn wait_for(
    apps: &Api<InstanceApplication>,
    i: usize,
    done: impl Fn(&ganeti_operator::api::application::InstanceApplicationStatus) -> bool,
    op: &Operator,
) -> ganeti_operator::api::application::InstanceApplicationStatus {
    let name = format!("bench-{i:03}");
    for _ in 0..12_000 {
        if let Some(status) = apps.get_status(&name).await.unwrap().status
            && done(&status)
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{name} never got there\n{}", op.log());
}
