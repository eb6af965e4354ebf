//! Offline checks of manifests against the generated CRDs: the OpenAPI schema
//! (with the jsonschema crate) and the CEL rules (with kube's CEL evaluator, which
//! carries Kubernetes' CEL libraries such as `quantity()` and `isURL()`).
//! The real API server remains the final judge; tests/testbed_*.rs ask it too.
#![allow(dead_code)]

pub mod browser;
pub mod chart;
pub mod compute;
pub mod crds;
pub mod dashboard;
pub mod ganeti;
pub mod maildir;
pub mod operator;
pub mod prometheus;
pub mod testbed;

use ganeti_operator::api;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The field manager the tests write with.
pub const MANAGER: &str = "ganeti-operator-tests";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `kubectl apply --server-side` of a file of this repository, as the testbed's superuser.
pub fn apply_manifest(rel: &str) {
    testbed::kubectl_ok(
        "root",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            repo_path(rel).to_str().unwrap(),
        ],
    );
}

/// The root client, once the CRDs, the operator's RBAC, the users' access and the
/// admission policies (manifests/access.yaml, manifests/admission.yaml) are installed.
pub async fn install_with_policies() -> kube::Client {
    let root = testbed::kube_client("root").await;
    crds::install_crds(&root).await;
    operator::apply_operator_rbac();
    for f in ["manifests/access.yaml", "manifests/admission.yaml"] {
        apply_manifest(f);
    }
    root
}

/// As [`install_with_policies`], and the Secret `smtp_secret` in ganeti-system holds
/// the settings of the testbed's SMTP server (mails from `from`).
pub async fn install_with_smtp(smtp_secret: &str, from: &str) -> kube::Client {
    let root = install_with_policies().await;
    maildir::apply_smtp_secret(&root, smtp_secret, from).await;
    root
}

/// Server-side apply of `obj` as [`MANAGER`] (forced); panics when it is refused.
pub async fn apply<K>(api: &Api<K>, name: &str, obj: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// Deletes `name` if it exists and waits (up to 10 s) until it is gone; whether it is.
pub async fn delete_and_wait<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let _ = api.delete(name, &DeleteParams::default()).await;
    for _ in 0..100 {
        if api.get_opt(name).await.unwrap().is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The message of an API server's refusal (403); panics on anything else.
pub fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        Ok(o) => panic!("accepted, but should be refused: {o:?}"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            e.message
        }
        Err(e) => panic!("{e}"),
    }
}

/// A namespace `<prefix>-<user>` for each of `users`, in which that user may file
/// InstanceApplications (the `ganeti.dev:applicant` role). Idempotent.
pub fn applicant_namespaces(prefix: &str, users: &[&str]) {
    for user in users {
        let ns = format!("{prefix}-{user}");
        let _ = testbed::kubectl("root", &["create", "namespace", &ns]);
        let _ = testbed::kubectl(
            "root",
            &[
                "create",
                "rolebinding",
                "applicant",
                "--clusterrole=ganeti.dev:applicant",
                "--user",
                user,
                "-n",
                &ns,
            ],
        );
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every YAML document in a file, as JSON values (empty documents skipped).
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The openAPIV3Schema of the CRD serving `kind`.
pub fn schema_for_kind(kind: &str) -> Option<Value> {
    api::crds()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .map(|(_, crd)| {
            let version = &crd.spec.versions[0];
            serde_json::to_value(version.schema.as_ref()?.open_api_v3_schema.as_ref()?).ok()
        })?
}

/// OpenAPI v3 (as Kubernetes uses it) to JSON Schema: `nullable` becomes a `null` type.
fn openapi_to_jsonschema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let nullable = map.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            for (k, val) in map {
                if k == "nullable" || k.starts_with("x-kubernetes") {
                    continue;
                }
                let converted = match k.as_str() {
                    "properties" => Value::Object(
                        val.as_object()
                            .map(|props| {
                                props
                                    .iter()
                                    .map(|(p, s)| (p.clone(), openapi_to_jsonschema(s)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => openapi_to_jsonschema(val),
                };
                out.insert(k.clone(), converted);
            }
            if nullable && let Some(Value::String(t)) = out.get("type").cloned() {
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(openapi_to_jsonschema).collect()),
        other => other.clone(),
    }
}

/// Checks `object` (and, for an update, the stored `old` one) the way the API server
/// would: schema first, then CEL rules. Returns every complaint.
pub fn check_offline(object: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some(schema) = schema_for_kind(kind) else {
        return Err(vec![format!("no CRD serves kind {kind:?}")]);
    };
    let mut errors = Vec::new();
    // metadata is the API server's business, not the CRD schema's.
    let mut body = object.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("metadata");
    }
    let json_schema = openapi_to_jsonschema(&schema);
    let validator =
        jsonschema::validator_for(&json_schema).expect("the generated schema is valid JSON Schema");
    for e in validator.iter_errors(&body) {
        errors.push(format!("{}: {}", e.instance_path(), e));
    }
    if errors.is_empty() {
        let old_body = old.map(|o| {
            let mut o = o.clone();
            if let Some(map) = o.as_object_mut() {
                map.remove("metadata");
            }
            o
        });
        if let Err(cel_errors) = kube::core::cel::Validator::new().validate(&schema, &body, old_body.as_ref())
        {
            errors.extend(cel_errors.iter().map(|e| e.to_string()));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// A malformed manifest from tests/fixtures/invalid, with what its refusal must say.
pub struct InvalidCase {
    pub name: String,
    pub expect: String,
    pub old: Option<Value>,
    pub object: Value,
}

pub fn invalid_cases() -> Vec<InvalidCase> {
    let dir = repo_path("tests/fixtures/invalid");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/invalid exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} lacks an '# expect: ' line", path.display()))
                .trim()
                .to_string();
            let is_update = text.lines().any(|l| l.starts_with("# update:"));
            let mut docs = yaml_documents(&path);
            let (old, object) = if is_update {
                assert_eq!(
                    docs.len(),
                    2,
                    "{}: an update case has two documents",
                    path.display()
                );
                let new = docs.pop().unwrap();
                (docs.pop(), new)
            } else {
                assert_eq!(docs.len(), 1, "{}: one document expected", path.display());
                (None, docs.pop().unwrap())
            };
            InvalidCase {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                expect,
                old,
                object,
            }
        })
        .collect()
}

/// Every `message` of every CEL rule in our CRDs.
pub fn cel_messages() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        rules
                            .iter()
                            .filter_map(|r| r["message"].as_str().map(String::from)),
                    );
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (_, crd) in api::crds() {
        walk(&serde_json::to_value(&crd).unwrap(), &mut out);
    }
    out
}
