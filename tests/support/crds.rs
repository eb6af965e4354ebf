//! Installs this repository's CRDs (crds/) into the testbed's API server.
#![allow(dead_code)]

use ganeti_operator::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;

/// Applies every file in crds/ (server-side apply, idempotent) and waits until each
/// CRD is Established, so tests may create objects right away.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = super::repo_path("crds");
    for (file, generated) in api::crds() {
        let text = std::fs::read_to_string(dir.join(file)).expect("crds/ file");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("CRD YAML");
        assert_eq!(crd.metadata.name, generated.metadata.name);
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply(super::MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {file}: {e}"));
    }
    for (_, generated) in api::crds() {
        let name = generated.metadata.name.unwrap();
        let mut established = false;
        for _ in 0..100 {
            let crd = crds.get(&name).await.expect("CRD readable");
            established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(established, "CRD {name} never became Established");
    }
}
