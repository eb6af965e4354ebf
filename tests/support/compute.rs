//! The aggregated API `compute.ganeti.dev/v1alpha1` on the testbed: a serving
//! certificate for the operator's compute listener, and its registration with the
//! aggregation layer of the testbed's kube-apiserver.
//!
//! The testbed has no nodes and no kube-proxy, so a ClusterIP Service would have no
//! endpoints. The aggregator (without `--enable-aggregator-routing`) resolves an
//! APIService's Service with `ResolveCluster`, which takes a Service of type
//! `ExternalName` as `<externalName>:<APIService port>`: the Service
//! `ganeti-operator-api` in ganeti-system names `localhost`, and the APIService carries
//! the test's port. The aggregator still verifies the serving certificate for
//! `ganeti-operator-api.ganeti-system.svc` (the Service's name, not `localhost`), and
//! authenticates with the testbed's front-proxy client certificate
//! (`$FRONT_PROXY_CA_FILE`) plus `X-Remote-User`/`X-Remote-Group` headers.
//!
//! The APIService is cluster-wide and other tests share the apiserver: tests hold a
//! [`Registration`], which unregisters on drop.
#![allow(dead_code)]

use super::testbed::{kubectl, kubectl_ok};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::Api;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const GROUP: &str = "compute.ganeti.dev";
pub const VERSION: &str = "v1alpha1";
/// The APIService's name: `<version>.<group>`.
pub const API_SERVICE: &str = "v1alpha1.compute.ganeti.dev";
/// The Service the APIService points at, and the name the aggregator verifies.
pub const SERVICE: &str = "ganeti-operator-api";
pub const NAMESPACE: &str = "ganeti-system";
pub const SERVICE_DNS: &str = "ganeti-operator-api.ganeti-system.svc";

/// A serving certificate for the compute listener and the CA that signed it, as PEM.
pub struct ComputeCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

/// The files [`ComputeCert::write_to`] wrote, for `--compute-api-cert`/`--compute-api-key`.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ComputeCert {
    /// A fresh CA and a certificate signed by it for the Service's DNS name,
    /// `localhost` and 127.0.0.1 (so tests can also call the listener directly).
    pub fn generate() -> ComputeCert {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ganeti-operator compute API test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            SERVICE_DNS.to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, SERVICE_DNS);
        let cert = params.signed_by(&key, &ca).unwrap();
        ComputeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        }
    }

    /// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> CertFiles {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        };
        for (path, pem) in [
            (&files.cert, &self.cert_pem),
            (&files.key, &self.key_pem),
            (&files.ca, &self.ca_pem),
        ] {
            std::fs::write(path, pem).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        files
    }
}

/// Applies, as the testbed's superuser, the namespace ganeti-system, the ExternalName
/// Service `ganeti-operator-api` (→ `localhost`) and the APIService
/// `v1alpha1.compute.ganeti.dev` pointing at it on `port`, trusting `ca_pem`.
/// An APIService left by an earlier test is deleted first: its `Available=True`
/// (about another port or CA) would otherwise satisfy [`wait_available`] at once.
pub fn register_compute_api(port: u16, ca_pem: &str) {
    use base64::Engine;
    unregister_compute_api();
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"type": "ExternalName", "externalName": "localhost"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": API_SERVICE},
         "spec": {
             "group": GROUP, "version": VERSION,
             "groupPriorityMinimum": 1000, "versionPriority": 15,
             "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
             "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
         }},
    ]});
    let file = std::env::temp_dir().join(format!("compute-api-{}-{port}.json", std::process::id()));
    std::fs::write(&file, objects.to_string()).unwrap();
    let (ok, stdout, stderr) = kubectl(
        "root",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            super::MANAGER,
            "-f",
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert!(ok, "registering the compute API failed:\n{stdout}\n{stderr}");
}

/// Removes the APIService and the Service (not the namespace: others use it).
pub fn unregister_compute_api() {
    let _ = kubectl(
        "root",
        &["delete", "apiservice", API_SERVICE, "--ignore-not-found"],
    );
    let _ = kubectl(
        "root",
        &[
            "delete",
            "service",
            SERVICE,
            "-n",
            NAMESPACE,
            "--ignore-not-found",
        ],
    );
}

/// The APIService's `Available` condition: (status, "reason: message"), if it has one.
pub async fn available_condition(client: &kube::Client) -> Option<(String, String)> {
    let api: Api<APIService> = Api::all(client.clone());
    let svc = api.get_opt(API_SERVICE).await.ok()??;
    svc.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Available")
        .map(|c| {
            let why = format!(
                "{}: {}",
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default()
            );
            (c.status, why)
        })
}

/// Waits until the APIService is `Available=True` (the aggregator reached the
/// listener through the Service and liked its certificate and discovery answer);
/// panics after `timeout` with the condition's last message.
pub async fn wait_available(timeout: Duration) {
    let root = super::testbed::kube_client("root").await;
    let start = Instant::now();
    let mut last = None;
    loop {
        let cond = available_condition(&root).await;
        if let Some((status, _)) = &cond
            && status == "True"
        {
            return;
        }
        if cond != last {
            match &cond {
                Some((status, why)) => eprintln!("APIService {API_SERVICE}: Available={status} ({why})"),
                None => eprintln!("APIService {API_SERVICE}: no Available condition yet"),
            }
            last = cond;
        }
        if start.elapsed() >= timeout {
            let state = last.map_or("no Available condition".to_string(), |(s, why)| {
                format!("Available={s}: {why}")
            });
            panic!("APIService {API_SERVICE} not available after {timeout:?}: {state}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The APIService and Service while it lives; unregisters on drop (also when a test
/// fails).
pub struct Registration;

impl Registration {
    pub fn new(port: u16, ca_pem: &str) -> Registration {
        register_compute_api(port, ca_pem);
        Registration
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        unregister_compute_api();
    }
}

/// `kubectl get --raw PATH` as `identity`, through the aggregator; panics when it fails.
pub fn get_raw(identity: &str, path: &str) -> String {
    kubectl_ok(identity, &["get", "--raw", path])
}
