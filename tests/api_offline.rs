//! The API without servers: CRDs in crds/ match the Rust types, every example parses and
//! passes the schema and CEL checks, and every malformed manifest is refused.

mod support;

use ganeti_operator::api::{self, *};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use support::*;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let mut drifted = Vec::new();
    for (file, crd) in api::crds() {
        let path = repo_path("crds").join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != api::crd_yaml(&crd) {
            drifted.push(file);
        }
    }
    assert!(
        drifted.is_empty(),
        "crds/ is out of date for {drifted:?}: regenerate with `make crds` \
         (cargo run -- crdgen --out-dir crds) and commit the result"
    );
    let files = std::fs::read_dir(repo_path("crds")).unwrap().count();
    assert_eq!(files, 7, "crds/ holds exactly one file per kind");
}

#[test]
fn every_kind_has_category_short_names_columns_and_status() {
    for (file, crd) in api::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["ganeti".to_string()][..]),
            "{file}"
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}: short names"
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status subresource"
        );
        let columns = version
            .additional_printer_columns
            .as_ref()
            .expect("printer columns");
        assert!(columns.len() >= 3, "{file}: printer columns");
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let status = &schema["properties"]["status"]["properties"];
        assert!(status["conditions"].is_object(), "{file}: status.conditions");
        assert!(
            status["observedGeneration"].is_object(),
            "{file}: status.observedGeneration"
        );
    }
}

#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, schema) in props {
                let here = format!("{path}.{name}");
                if here.ends_with(".metadata") {
                    continue;
                }
                if schema.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, schema, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, crd) in api::crds() {
        let version = &crd.spec.versions[0];
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        walk(file, &schema, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain shows nothing): {missing:#?}"
    );
}

#[test]
fn every_example_parses_into_the_rust_types_and_passes_validation() {
    let dir = repo_path("examples");
    let mut kinds = std::collections::BTreeSet::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        for doc in yaml_documents(path) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let what = format!("{} {kind}/{name}", path.display());
            let parsed = match kind.as_str() {
                "Secret" => serde_json::from_value::<Secret>(doc.clone()).map(|_| ()),
                // A GWM id map (examples/01-gwm-migration.yaml): it must be one the
                // operator accepts.
                "ConfigMap" => serde_json::from_value::<ConfigMap>(doc.clone()).map(|cm| {
                    let data = cm.data.unwrap_or_default();
                    if let Err(e) = ganeti_operator::tags::GwmIds::from_data(&data) {
                        panic!("{what} is no valid GWM id map: {e:?}");
                    }
                }),
                "GanetiCluster" => serde_json::from_value::<GanetiCluster>(doc.clone()).map(|_| ()),
                "InstanceApplication" => {
                    serde_json::from_value::<InstanceApplication>(doc.clone()).map(|_| ())
                }
                "Role" => serde_json::from_value::<Role>(doc.clone()).map(|_| ()),
                "RoleBinding" => serde_json::from_value::<RoleBinding>(doc.clone()).map(|_| ()),
                "ClusterQuota" => serde_json::from_value::<ClusterQuota>(doc.clone()).map(|_| ()),
                "Notification" => serde_json::from_value::<Notification>(doc.clone()).map(|_| ()),
                "UserProfile" => serde_json::from_value::<UserProfile>(doc.clone()).map(|_| ()),
                other => panic!("{what}: unexpected kind {other:?}"),
            };
            parsed.unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
            if kind != "Secret" && kind != "ConfigMap" {
                check_offline(&doc, None).unwrap_or_else(|e| panic!("{what} is refused: {e:#?}"));
            }
            kinds.insert(kind);
        }
    }
    for (_, crd) in api::crds() {
        assert!(
            kinds.contains(&crd.spec.names.kind),
            "no example of {}",
            crd.spec.names.kind
        );
    }
}

#[test]
fn malformed_manifests_are_refused_with_their_message() {
    let cases = invalid_cases();
    assert!(
        cases.len() >= 20,
        "at least 20 malformed manifests, found {}",
        cases.len()
    );
    let cel = cel_messages();
    for case in &cases {
        let errors = match check_offline(&case.object, case.old.as_ref()) {
            Ok(()) => panic!("{}: accepted, but should be refused ({})", case.name, case.expect),
            Err(errors) => errors,
        };
        // Our own CEL messages must come out word for word; schema messages are worded
        // by each validator differently (the real API server's wording is checked there).
        if cel.iter().any(|m| m.contains(&case.expect)) {
            assert!(
                errors.iter().any(|e| e.contains(&case.expect)),
                "{}: refused, but not with {:?}: {errors:#?}",
                case.name,
                case.expect
            );
        }
        // The valid counterpart must pass, so the refusal is about the defect.
        if let Some(old) = &case.old {
            check_offline(old, None)
                .unwrap_or_else(|e| panic!("{}: the stored object is itself invalid: {e:#?}", case.name));
        }
    }
}

#[test]
fn an_unchanged_update_passes_the_transition_rules() {
    for case in invalid_cases().iter().filter(|c| c.old.is_some()) {
        let old = case.old.as_ref().unwrap();
        check_offline(old, Some(old))
            .unwrap_or_else(|e| panic!("{}: unchanged update refused: {e:#?}", case.name));
    }
}
