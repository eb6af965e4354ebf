//! Offline checks of the Helm chart (charts/ganeti-operator) and its Grafana dashboards:
//! the dashboards' queries are valid PromQL over the operator's metric names; the
//! chart carries the same CRDs, RBAC and admission policies as crds/ and manifests/.
//! tests/testbed_dashboard.rs checks the queries against a real operator's /metrics.

mod support;

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use support::dashboard;

#[test]
fn the_query_scanner_finds_selectors_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (controller, le) (rate(a_bucket{x=~"$c", y!="}"}[5m]))) / on (x) group_left (y) b or vector(0) > bool 1e3"#;
    let found = dashboard::selectors(expr);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b"]);
    let labels: BTreeSet<String> = ["x", "y"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found[0].1, labels);
    let scrape = "# HELP a x\na_bucket{x=\"1\",le=\"+Inf\"} 3\nb 1\n";
    let seen = dashboard::scrape_labels(scrape);
    assert!(seen["a_bucket"].contains("le"));
    assert!(seen.contains_key("b"));
}

#[test]
fn every_dashboard_query_is_valid_promql_over_operator_metrics() {
    check_dashboard(
        dashboard::PATH,
        "ganeti-operator",
        20,
        &[
            "ganeti_cluster_up",
            "ganeti_node_memory_total_bytes",
            "ganeti_node_memory_free_bytes",
            "ganeti_node_disk_total_bytes",
            "ganeti_node_disk_free_bytes",
            "ganeti_instance_status",
            "ganeti_cluster_jobs",
            "ganeti_operator_reconcile_errors_total",
            "ganeti_operator_reconcile_duration_seconds_bucket",
            "ganeti_operator_rapi_request_duration_seconds_bucket",
        ],
    );
    check_dashboard(
        dashboard::STATISTICS,
        "ganeti-service-statistics",
        15,
        &[
            "ganeti_applications",
            "ganeti_application_decision_seconds_bucket",
            "ganeti_application_creation_seconds_bucket",
            "ganeti_instance_up",
            "ganeti_instance_memory_bytes",
            "ganeti_quota_used",
            "ganeti_quota_limit",
        ],
    );
}

/// A dashboard's panels all query something, every query names operator metrics and
/// parses as PromQL (Prometheus' own parser, through promtool), and `needed` are shown.
fn check_dashboard(path: &str, uid: &str, min_queries: usize, needed: &[&str]) {
    let d = dashboard::load_from(path);
    assert_eq!(d["uid"], uid);
    let queries = dashboard::queries(&d);
    assert!(queries.len() >= min_queries, "{path}: {} queries", queries.len());
    // Every panel that is not a row queries something.
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            if p["type"] != "row" {
                let n = p["targets"].as_array().map_or(0, Vec::len);
                if n == 0 {
                    out.push(p["title"].as_str().unwrap_or_default().to_string());
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut empty = Vec::new();
    panels(&d["panels"], &mut empty);
    assert!(empty.is_empty(), "{path}: panels without queries: {empty:?}");

    let mut used = BTreeSet::new();
    for q in &queries {
        let sel = dashboard::selectors(&q.expr);
        assert!(!sel.is_empty(), "{}: no metric in {}", q.place, q.expr);
        for (name, _) in sel {
            assert!(
                name.starts_with("ganeti_"),
                "{}: {name} is not one of the operator's metrics",
                q.place
            );
            used.insert(name);
        }
    }
    for needed in needed {
        assert!(used.contains(*needed), "{path}: no panel shows {needed}");
    }

    // Prometheus' own parser, through promtool: one recording rule per query.
    let mut rules = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&dashboard::expand(&q.expr)).unwrap();
        rules.push_str(&format!("  - record: dashboard:query{i}\n    expr: {expr}\n"));
    }
    let dir = std::env::temp_dir().join(format!("dashboard-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yaml");
    std::fs::write(&file, &rules).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian's prometheus package) is installed");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `helm template` of the chart (scripts/helm: helm from PATH, or built once from the Go
/// module proxy), as YAML documents.
fn render(set: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = std::process::Command::new(support::repo_path("scripts/helm"));
    cmd.args(["template", "ganeti-operator"])
        .arg(support::repo_path("charts/ganeti-operator"))
        .args(["--namespace", "ganeti-system"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("scripts/helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect())
}

fn key(v: &Value) -> String {
    format!(
        "{} {} {}/{}",
        v["apiVersion"].as_str().unwrap_or_default(),
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The object without what the chart adds to every object (its labels, Helm's
/// annotations).
fn without_chart_metadata(v: &Value) -> Value {
    let mut v = v.clone();
    let meta = v["metadata"].as_object_mut().unwrap();
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = meta.get_mut(field) {
            map.retain(|k, _| !k.starts_with("app.kubernetes.io/") && !k.starts_with("helm.sh/"));
            if map.is_empty() {
                meta.remove(field);
            }
        }
    }
    v
}

#[test]
fn the_charts_crds_are_crds_verbatim() {
    let files = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(support::repo_path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let ours = files("crds");
    assert_eq!(files("charts/ganeti-operator/crds"), ours, "run `make chart`");
    for f in ours {
        assert_eq!(
            std::fs::read(support::repo_path(&format!("crds/{f}"))).unwrap(),
            std::fs::read(support::repo_path(&format!("charts/ganeti-operator/crds/{f}"))).unwrap(),
            "charts/ganeti-operator/crds/{f} differs from crds/{f}: run `make chart`"
        );
    }
}

#[test]
fn the_rendered_chart_carries_exactly_the_manifests_rbac_and_admission() {
    let rendered = render(&["webhook.enabled=true", "webhook.certSecret=webhook-tls"]).unwrap();
    let by_key: std::collections::BTreeMap<String, &Value> = rendered.iter().map(|v| (key(v), v)).collect();
    let mut expected = BTreeSet::new();
    for file in ["rbac.yaml", "access.yaml", "admission.yaml", "webhook.yaml"] {
        for doc in support::yaml_documents(&support::repo_path(&format!("manifests/{file}"))) {
            // Helm installs into the release's namespace (--create-namespace).
            if doc["kind"] == "Namespace" {
                continue;
            }
            let k = key(&doc);
            let got = by_key
                .get(&k)
                .unwrap_or_else(|| panic!("the chart lacks {k} of manifests/{file}: run `make chart`"));
            assert_eq!(
                without_chart_metadata(got),
                doc,
                "{k} differs between the chart and manifests/{file}: run `make chart`"
            );
            expected.insert(k);
        }
    }
    // Nothing more of those kinds than the manifests have.
    for v in &rendered {
        let kind = v["kind"].as_str().unwrap_or_default();
        let governed = kind.contains("Role")
            || kind.contains("Admission")
            || kind.contains("Webhook")
            || kind == "ServiceAccount";
        assert!(
            !governed || expected.contains(&key(v)),
            "the chart has {} which manifests/ lacks",
            key(v)
        );
    }
    // Without the webhook enabled, none of it.
    let plain = render(&[]).unwrap();
    assert!(
        !plain
            .iter()
            .any(|v| v["kind"] == "ValidatingWebhookConfiguration")
    );
}

#[test]
fn the_chart_runs_two_replicas_under_the_manifests_identity() {
    let docs = render(&[]).unwrap();
    let find = |kind: &str| {
        docs.iter()
            .find(|v| v["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };
    let deployment = find("Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "ganeti-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ganeti-operator");
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "run");
    let env = container["env"].as_array().unwrap();
    let pod_name = env.iter().find(|e| e["name"] == "POD_NAME").expect("POD_NAME");
    assert_eq!(pod_name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(String::from)
    };
    assert_eq!(
        value("ADMIN_GROUPS").as_deref(),
        Some("ganeti-admins,system:masters")
    );
    assert_eq!(value("LEASE_NAMESPACE").as_deref(), Some("ganeti-system"));
    assert_eq!(value("LOG_FORMAT").as_deref(), Some("json"));
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in deployment["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the selector matches the pods");
    }
    // The webhook Service of manifests/webhook.yaml selects these pods too.
    assert_eq!(labels["app.kubernetes.io/name"], "ganeti-operator");
    let service = docs
        .iter()
        .find(|v| v["kind"] == "Service" && v["metadata"]["name"] == "ganeti-operator")
        .expect("the users' Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert!(
        !docs.iter().any(|v| v["kind"] == "ServiceMonitor"),
        "off by default"
    );

    // The dashboard, labelled for Grafana's sidecar, is the file itself.
    let dashboard = docs
        .iter()
        .find(|v| v["kind"] == "ConfigMap" && v["metadata"]["name"] == "ganeti-operator-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    for path in dashboard::ALL {
        let file = path.rsplit('/').next().unwrap();
        let json: Value = serde_json::from_str(
            dashboard["data"][file]
                .as_str()
                .unwrap_or_else(|| panic!("{file} is not in the ConfigMap")),
        )
        .unwrap();
        assert_eq!(json, dashboard::load_from(path), "{file}");
    }
}

#[test]
fn chart_values_reach_the_operator_and_bad_values_fail() {
    let docs = render(&[
        "adminGroups={ops,noc}",
        "mail.smtpSecret=smtp",
        "mail.unverified=true",
        "publicUrl=https://ganeti.example.org",
        "linkKeySecret=link-key",
        "novncDirectory=/opt/novnc",
        "serviceMonitor.enabled=true",
        "webhook.enabled=true",
        "webhook.certSecret=webhook-tls",
        "logFormat=text",
        "replicas=3",
        "allowInsecureRapi=true",
    ])
    .unwrap();
    let text = serde_json::to_string(&docs).unwrap();
    assert!(
        text.contains("g in ['ops', 'noc', 'system:masters']"),
        "CEL admin groups"
    );
    assert!(docs.iter().any(|v| v["kind"] == "ServiceMonitor"));
    let deployment = docs.iter().find(|v| v["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    let admin_binding = docs
        .iter()
        .find(|v| v["kind"] == "ClusterRoleBinding" && v["metadata"]["name"] == "ganeti.dev:admin")
        .unwrap();
    let subjects: Vec<&str> = admin_binding["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["ops", "noc"]);

    // Every environment variable the chart sets is one the operator reads.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ganeti-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let novnc = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NOVNC_DIR")
        .expect("NOVNC_DIR");
    assert_eq!(novnc["value"], "/opt/novnc");
    for name in names {
        // POD_NAME (leader identity) and RUST_LOG (the log filter) are read directly.
        if name == "POD_NAME" || name == "RUST_LOG" {
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}")),
            "the operator has no flag for {name}:\n{help}"
        );
    }

    for bad in [
        "replicas=0",
        "logFormat=xml",
        "adminGroups={a'b}",
        "image.pullPolicy=Sometimes",
        "novncDirectory=relative/dir",
        "unknown=1",
    ] {
        let err = render(&[bad]).expect_err(bad);
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
}

fn env_value(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(String::from)
}

const LINK_KEY: &str = "ganeti-operator-link-key";

#[test]
fn two_replicas_share_one_link_key_secret_the_chart_makes_once_and_keeps() {
    let docs = render(&[]).unwrap();
    // Secrets other than TLS ones (the compute API's serving certificate).
    let key_secret = |v: &&Value| v["kind"] == "Secret" && v["type"] != "kubernetes.io/tls";
    let secrets: Vec<&Value> = docs.iter().filter(key_secret).collect();
    assert_eq!(secrets.len(), 1, "one key Secret: {secrets:?}");
    let secret = secrets[0];
    assert_eq!(secret["metadata"]["name"], LINK_KEY);
    assert_eq!(secret["metadata"]["namespace"], "ganeti-system");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "helm uninstall leaves it"
    );
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["key"].as_str().unwrap())
        .unwrap();
    assert!(
        key.len() >= 32,
        "the operator needs at least 32 bytes: {}",
        key.len()
    );
    // Every replica reads that one Secret.
    let deployment = find(&docs, "Deployment", "ganeti-operator").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        env_value(deployment, "LINK_KEY_SECRET").as_deref(),
        Some(LINK_KEY)
    );

    // `helm template` cannot look the Secret up (no cluster): each render draws a new
    // key. That is why the template keeps the one `lookup` finds on an upgrade; the
    // next test checks that branch.
    let again = render(&[]).unwrap();
    let key_again = &find(&again, "Secret", LINK_KEY).unwrap()["data"]["key"];
    assert_ne!(
        &secret["data"]["key"], key_again,
        "random per render without lookup"
    );
    let template = std::fs::read_to_string(support::repo_path(
        "charts/ganeti-operator/templates/link-key.yaml",
    ))
    .unwrap();
    assert!(
        template.contains(r#"lookup "v1" "Secret" .Release.Namespace $name"#)
            && template.contains(r#"(dict "existing" $existing)"#),
        "the key Secret's data comes from the lookup through linkKeyData:\n{template}"
    );

    // A Secret of the admin's own: the chart makes none and passes that one.
    let own = render(&["linkKeySecret=my-key"]).unwrap();
    assert!(!own.iter().any(|v| key_secret(&v)));
    let deployment = find(&own, "Deployment", "ganeti-operator").unwrap();
    assert_eq!(
        env_value(deployment, "LINK_KEY_SECRET").as_deref(),
        Some("my-key")
    );

    // One replica without leader election may keep a random key; more replicas
    // without it are refused at render time.
    let single = render(&["replicas=1", "leaderElection.enabled=false"]).unwrap();
    assert!(!single.iter().any(|v| key_secret(&v)));
    let deployment = find(&single, "Deployment", "ganeti-operator").unwrap();
    assert_eq!(env_value(deployment, "LINK_KEY_SECRET"), None);
    let err = render(&["leaderElection.enabled=false"]).unwrap_err();
    assert!(err.contains("needs leaderElection.enabled"), "{err}");
}

/// The lookup branch of the link key, which `helm template` cannot reach: a throwaway
/// chart with the real helpers renders `linkKeyData` with an existing Secret (as
/// `lookup` returns it on `helm upgrade`) and without one (first install).
#[test]
fn an_existing_link_key_is_kept_across_upgrades() {
    let dir = std::env::temp_dir().join(format!("chart-link-key-{}", std::process::id()));
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: link-key-test\nversion: 0.0.1\n",
    )
    .unwrap();
    std::fs::copy(
        support::repo_path("charts/ganeti-operator/templates/_helpers.tpl"),
        templates.join("_helpers.tpl"),
    )
    .unwrap();
    std::fs::write(
        templates.join("probe.yaml"),
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  kept: {{ include "ganeti-operator.linkKeyData" (dict "existing" (dict "data" (dict "key" "a2VwdC1rZXk="))) | quote }}
  fresh: {{ include "ganeti-operator.linkKeyData" (dict "existing" dict) | quote }}
  noData: {{ include "ganeti-operator.linkKeyData" (dict "existing" (dict "metadata" dict)) | quote }}
"#,
    )
    .unwrap();
    let out = std::process::Command::new(support::repo_path("scripts/helm"))
        .args(["template", "t"])
        .arg(&dir)
        .output()
        .expect("scripts/helm runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let data = &doc["data"];
    assert_eq!(data["kept"], "a2VwdC1rZXk=", "the existing key, untouched");
    for fresh in [&data["fresh"], &data["noData"]] {
        let fresh = fresh.as_str().unwrap();
        assert_eq!(fresh.len(), 88, "64 characters, base64: {fresh}");
        assert_ne!(fresh, "a2VwdC1rZXk=");
    }
}

#[test]
fn metrics_have_their_own_port_that_the_users_service_does_not_expose() {
    let docs = render(&["serviceMonitor.enabled=true"]).unwrap();
    let deployment = find(&docs, "Deployment", "ganeti-operator").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--metrics-listen=0.0.0.0:9090"), "{args:?}");
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9090),
        "{ports:?}"
    );
    // The users' Service: the API port only.
    let users = find(&docs, "Service", "ganeti-operator").unwrap();
    let user_ports: Vec<&Value> = users["spec"]["ports"].as_array().unwrap().iter().collect();
    assert_eq!(user_ports.len(), 1, "{user_ports:?}");
    assert_eq!(user_ports[0]["targetPort"], "http");
    // The ServiceMonitor scrapes the metrics port through a Service only it selects.
    let monitor = find(&docs, "ServiceMonitor", "ganeti-operator").unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let selects = |svc: &Value| selector.iter().all(|(k, v)| &svc["metadata"]["labels"][k] == v);
    assert!(!selects(users), "the users' Service is not scraped");
    let metrics = find(&docs, "Service", "ganeti-operator-metrics").unwrap();
    assert!(selects(metrics));
    assert_eq!(metrics["spec"]["clusterIP"], "None");
    assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    // Without the ServiceMonitor, no metrics Service either; the port stays on the pod.
    let plain = render(&[]).unwrap();
    assert!(find(&plain, "Service", "ganeti-operator-metrics").is_none());
    let custom = render(&["metrics.port=9100"]).unwrap();
    let deployment = find(&custom, "Deployment", "ganeti-operator").unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--metrics-listen=0.0.0.0:9100")
    );
}

/// The certificate in a rendered TLS Secret (checked to be issued by the Secret's CA):
/// its DNS names, and the CA as the Secret holds it.
fn secret_certificate(secret: &Value) -> (Vec<String>, String) {
    use base64::Engine as _;
    let b64 = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][k].as_str().unwrap_or_else(|| panic!("no {k}")))
            .unwrap()
    };
    let pem = b64("tls.crt");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let ca_pem = b64("ca.crt");
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    assert_eq!(
        cert.issuer(),
        ca.subject(),
        "the Secret's CA issued its certificate"
    );
    assert!(ca.is_ca());
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    (names, secret["data"]["ca.crt"].as_str().unwrap().to_owned())
}

#[test]
fn the_webhook_gets_a_serving_certificate_the_chart_makes_when_none_is_given() {
    let docs = render(&["webhook.enabled=true"]).unwrap();
    let secret = find(&docs, "Secret", "ganeti-operator-webhook-tls")
        .expect("the chart makes the webhook's certificate");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let (names, ca) = secret_certificate(secret);
    assert!(
        names.contains(&"ganeti-operator-webhook.ganeti-system.svc".to_owned()),
        "{names:?}"
    );
    // The API server trusts exactly that CA, and the pods mount that Secret.
    let config = find(
        &docs,
        "ValidatingWebhookConfiguration",
        "ganeti.dev-rbac-escalation",
    )
    .unwrap();
    assert_eq!(config["webhooks"][0]["clientConfig"]["caBundle"], ca.as_str());
    let deployment = find(&docs, "Deployment", "ganeti-operator").unwrap();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes.iter().any(
            |v| v["name"] == "webhook-cert" && v["secret"]["secretName"] == "ganeti-operator-webhook-tls"
        ),
        "{volumes:?}"
    );
    // The aggregated API's certificate is made the same way, for its own Service.
    let api = find(&docs, "Secret", "ganeti-operator-api-tls").unwrap();
    let (api_names, api_ca) = secret_certificate(api);
    assert!(
        api_names.contains(&"ganeti-operator-api.ganeti-system.svc".to_owned()),
        "{api_names:?}"
    );
    assert_ne!(api_ca, ca, "each listener has a CA of its own");
    // A certificate of the admin's own: the chart makes none and uses theirs.
    let own = render(&[
        "webhook.enabled=true",
        "webhook.certSecret=mine",
        "webhook.caBundle=Q0E=",
    ])
    .unwrap();
    assert!(find(&own, "Secret", "ganeti-operator-webhook-tls").is_none());
    let config = find(
        &own,
        "ValidatingWebhookConfiguration",
        "ganeti.dev-rbac-escalation",
    )
    .unwrap();
    assert_eq!(config["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=");
    let deployment = find(&own, "Deployment", "ganeti-operator").unwrap();
    assert!(
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "mine")
    );
}

#[test]
fn replicas_get_a_disruption_budget_a_spread_over_nodes_and_an_optional_network_policy() {
    let docs = render(&[]).unwrap();
    let pdb = find(&docs, "PodDisruptionBudget", "ganeti-operator").expect("two replicas: a PDB");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let deployment = find(&docs, "Deployment", "ganeti-operator").unwrap();
    let pod = &deployment["spec"]["template"];
    let selects = |selector: &Value| {
        let labels = selector["matchLabels"].as_object().unwrap();
        !labels.is_empty() && labels.iter().all(|(k, v)| &pod["metadata"]["labels"][k] == v)
    };
    assert!(selects(&pdb["spec"]["selector"]));
    let spread = &pod["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    // A one-node cluster still runs both replicas.
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert!(selects(&spread["labelSelector"]));
    assert!(
        find(&docs, "NetworkPolicy", "ganeti-operator").is_none(),
        "off by default"
    );

    // One replica: nothing to budget or spread.
    let single = render(&["replicas=1"]).unwrap();
    assert!(find(&single, "PodDisruptionBudget", "ganeti-operator").is_none());
    let deployment = find(&single, "Deployment", "ganeti-operator").unwrap();
    assert!(deployment["spec"]["template"]["spec"]["topologySpreadConstraints"].is_null());

    // The policy names only ports the container has; /metrics only from its peers.
    let docs = render(&[
        "networkPolicy.enabled=true",
        "webhook.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ])
    .unwrap();
    let policy = find(&docs, "NetworkPolicy", "ganeti-operator").unwrap();
    let deployment = find(&docs, "Deployment", "ganeti-operator").unwrap();
    let container_ports: BTreeSet<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut named = BTreeSet::new();
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        for port in rule["ports"].as_array().unwrap() {
            let name = port["port"].as_str().unwrap();
            assert!(
                container_ports.contains(name),
                "{name} is no container port: {container_ports:?}"
            );
            named.insert(name);
            if name == "metrics" {
                assert_eq!(
                    rule["from"][0]["namespaceSelector"]["matchLabels"]["name"],
                    "monitoring"
                );
            }
        }
    }
    assert_eq!(named, container_ports, "every port the pod listens on has a rule");
    assert!(
        render(&["topologySpreadConstraints[0].maxSkew=1"]).is_err(),
        "a constraint without its required fields is refused"
    );
}
