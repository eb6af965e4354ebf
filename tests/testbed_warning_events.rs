//! A failing reconcile says why on the object: the controller harness publishes a
//! Warning Event whose reason is the error's kind, so `kubectl describe` shows it.
//!
//! - a GanetiCluster whose RAPI URL answers nothing (a closed port on the testbed's
//!   RAPI address) fails every sync: Warning `Unreachable`;
//! - an InstanceApplication recorded as Creating on a GanetiCluster that does not
//!   exist cannot be followed: Warning `InvalidState`.
//!
//! Only the leader reconciles: other operators on the shared testbed may hold the
//! Lease for a while, which the wait allows for.

mod support;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use std::time::{Duration, Instant};
use support::ganeti;
use support::operator::{Operator, Options};
use support::testbed::{env, kubectl, kubectl_ok};

const CLUSTER: &str = "warn-unreachable";
const SECRET: &str = "rapi-warn";
const NAMESPACE: &str = "warn-apps";
const APP: &str = "warn-stuck";
/// Other operators may lead for up to their lease after they stop.
const WAIT: Duration = Duration::from_secs(240);

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(
            "root",
            &[
                "delete",
                "instanceapplication",
                APP,
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

/// The testbed's RAPI URL with a port nothing listens on.
fn closed_port_url() -> String {
    let url = env("GANETI_RAPI_URL");
    let (scheme_host, _) = url.rsplit_once(':').expect("the RAPI URL has a port");
    format!("{scheme_host}:1")
}

/// The Warning Events the operator published about `kind`/`name`.
async fn warnings(client: &kube::Client, namespace: &str, kind: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default()).await.expect("listing Events");
    list.items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reporting_controller.as_deref() == Some("ganeti-operator")
                && e.regarding
                    .as_ref()
                    .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect()
}

async fn wait_for_warning(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
) -> Event {
    let started = Instant::now();
    loop {
        let found = warnings(client, namespace, kind, name).await;
        if let Some(e) = found.iter().find(|e| e.reason.as_deref() == Some(reason)) {
            return e.clone();
        }
        assert!(
            started.elapsed() < WAIT,
            "no Warning {reason} on {kind} {name} within {WAIT:?}; Warnings seen: {:?}",
            found
                .iter()
                .map(|e| (e.reason.clone(), e.note.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn a_failing_reconcile_shows_a_warning_event_of_its_kind() {
    let _cleanup = Cleanup;
    let root = support::install_with_policies().await;
    ganeti::apply_cluster(
        &root,
        CLUSTER,
        SECRET,
        json!({"rapiUrl": closed_port_url(), "syncInterval": "5s"}),
    )
    .await;
    let _ = kubectl("root", &["create", "namespace", NAMESPACE]);
    let _ = kubectl(
        "root",
        &[
            "delete",
            "instanceapplication",
            APP,
            "-n",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
        ],
    );
    let app = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {"cluster": "warn-no-such-cluster", "hostname": "warn-stuck.warn.ganeti.test",
                 "vcpus": 1, "memory": "128Mi", "disks": [{"size": "1Gi"}],
                 "owner": {"kind": "User", "name": "warn-user"}, "purpose": "warning events test"},
    });
    let file = std::env::temp_dir().join(format!("warn-app-{}.json", std::process::id()));
    std::fs::write(&file, app.to_string()).unwrap();
    kubectl_ok("root", &["create", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    kubectl_ok(
        "root",
        &[
            "patch",
            "instanceapplication",
            APP,
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Creating"}}"#,
        ],
    );

    let _op = Operator::start_with(
        "warnings",
        Options::default().arg("--lease-duration-seconds").arg("5"),
    )
    .await;

    // Cluster-scoped objects' Events go to `default`, as kube's Recorder puts them.
    let cluster = wait_for_warning(&root, "default", "GanetiCluster", CLUSTER, "Unreachable").await;
    assert_eq!(cluster.action.as_deref(), Some("Reconcile"));
    let note = cluster.note.unwrap_or_default();
    assert!(
        note.contains("spec.rapiUrl"),
        "the note says what to check: {note}"
    );

    let app = wait_for_warning(&root, NAMESPACE, "InstanceApplication", APP, "InvalidState").await;
    let note = app.note.unwrap_or_default();
    assert!(
        note.contains("warn-no-such-cluster"),
        "the note names the missing cluster: {note}"
    );
}
