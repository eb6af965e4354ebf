//! The Helm chart against the testbed's real kube-apiserver: everything it renders
//! (CRDs included) is accepted by server-side apply, and the API server stores what the
//! chart says. A server-side dry run: nothing on the shared testbed changes.

mod support;

use serde::Deserialize;
use serde_json::Value;
use support::testbed::kubectl_ok;

#[test]
fn the_rendered_chart_installs_into_the_real_apiserver() {
    support::operator::apply_operator_rbac(); // the namespace
    let out = std::process::Command::new(support::repo_path("scripts/helm"))
        .args(["template", "ganeti-operator"])
        .arg(support::repo_path("charts/ganeti-operator"))
        .args([
            "--namespace",
            "ganeti-system",
            "--include-crds",
            "--set",
            "webhook.enabled=true",
            "--set",
            "webhook.certSecret=webhook-tls",
            "--set",
            "mail.smtpSecret=smtp",
        ])
        .output()
        .expect("scripts/helm runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered: Vec<Value> =
        serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout.clone()).unwrap())
            .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect();
    let file = std::env::temp_dir().join(format!("chart-{}.yaml", std::process::id()));
    std::fs::write(&file, &out.stdout).unwrap();
    let applied = kubectl_ok(
        "root",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=helm-chart-test",
            "-o",
            "json",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    let applied: Value = serde_json::from_str(&applied).unwrap();
    let items = applied["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![applied.clone()]);
    assert_eq!(items.len(), rendered.len(), "every rendered object was applied");
    for (want, got) in rendered.iter().zip(&items) {
        assert_eq!(want["kind"], got["kind"]);
        assert_eq!(want["metadata"]["name"], got["metadata"]["name"]);
        // What the chart says is what the API server keeps (defaults aside).
        for field in ["rules", "roleRef", "subjects", "data"] {
            if !want[field].is_null() {
                assert_eq!(
                    want[field], got[field],
                    "{} {}: {field}",
                    want["kind"], want["metadata"]["name"]
                );
            }
        }
        if want["kind"] == "Deployment" {
            assert_eq!(got["spec"]["replicas"], 2);
            let env = &got["spec"]["template"]["spec"]["containers"][0]["env"];
            assert!(env.as_array().unwrap().iter().any(
                |e| e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            ));
        }
    }
}

/// The chart's link key Secret against the real apiserver: `helm template
/// --dry-run=server` lets `lookup` read the cluster, as `helm upgrade` does. An existing
/// key is rendered unchanged (an upgrade keeps links and console tickets valid); without
/// one, a new key. Uses a namespace of its own, removed again.
#[test]
fn an_existing_link_key_survives_an_upgrade_through_lookup() {
    const NS: &str = "chart-link-key-test";
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = support::testbed::kubectl(
                "root",
                &["delete", "namespace", NS, "--ignore-not-found", "--wait=false"],
            );
        }
    }
    let _cleanup = Cleanup;
    let _ = support::testbed::kubectl("root", &["create", "namespace", NS]);
    let render = || -> Value {
        let out = std::process::Command::new(support::repo_path("scripts/helm"))
            .args(["template", "ganeti-operator"])
            .arg(support::repo_path("charts/ganeti-operator"))
            .args(["--namespace", NS, "--dry-run=server", "--kubeconfig"])
            .arg(support::testbed::kubeconfig("root"))
            .output()
            .expect("scripts/helm runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
            .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
            .find(|v: &Value| v["kind"] == "Secret" && v["metadata"]["name"] == "ganeti-operator-link-key")
            .expect("the link key Secret is rendered")
    };
    let key = "kept-link-key-0123456789abcdef0123456789abcdef";
    kubectl_ok(
        "root",
        &[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "ganeti-operator-link-key",
            &format!("--from-literal=key={key}"),
        ],
    );
    use base64::Engine as _;
    let kept = base64::engine::general_purpose::STANDARD.encode(key);
    assert_eq!(render()["data"]["key"], kept.as_str(), "the existing key is kept");
    kubectl_ok(
        "root",
        &["-n", NS, "delete", "secret", "ganeti-operator-link-key"],
    );
    let fresh = render();
    assert_ne!(fresh["data"]["key"], kept.as_str(), "none there: a new one");
    assert_eq!(
        fresh["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}
