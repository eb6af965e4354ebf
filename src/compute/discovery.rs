//! What the aggregation layer and kubectl ask an API server before anything else:
//! discovery (`/apis`, `/apis/<group>`, `/apis/<group>/<version>`) and the OpenAPI
//! documents (`/openapi/v2`, `/openapi/v3`) that `kubectl explain` reads.

use super::objects::{GanetiInstance, GanetiJob, GanetiNode};
use super::{GROUP, GROUP_VERSION, VERSION};
use serde_json::{Value, json};

/// The subresources of `ganetiinstances`: POST ones (RBAC verb `create`)...
pub const ACTIONS: &[&str] = &["start", "shutdown", "reboot", "migrate", "console"];
/// ... and the websocket one (RBAC verb `get`).
pub const VNC: &str = "vnc";

pub fn api_group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [{"groupVersion": GROUP_VERSION, "version": VERSION}],
        "preferredVersion": {"groupVersion": GROUP_VERSION, "version": VERSION},
    })
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})
}

pub fn api_resource_list() -> Value {
    let resource = |name: &str, singular: &str, kind: &str, short: &str, verbs: &[&str]| {
        json!({
            "name": name, "singularName": singular, "namespaced": false, "kind": kind,
            "verbs": verbs, "shortNames": [short], "categories": ["ganeti"],
        })
    };
    let mut resources = vec![
        resource(
            GanetiInstance::PLURAL,
            "ganetiinstance",
            GanetiInstance::KIND,
            "gi",
            &["get", "list", "watch", "patch"],
        ),
        resource(
            GanetiNode::PLURAL,
            "ganetinode",
            GanetiNode::KIND,
            "gn",
            &["get", "list", "watch"],
        ),
        resource(
            GanetiJob::PLURAL,
            "ganetijob",
            GanetiJob::KIND,
            "gj",
            &["get", "list"],
        ),
    ];
    for action in ACTIONS {
        resources.push(json!({
            "name": format!("{}/{action}", GanetiInstance::PLURAL), "singularName": "",
            "namespaced": false, "kind": "GanetiInstanceAction", "verbs": ["create"],
        }));
    }
    resources.push(json!({
        "name": format!("{}/{VNC}", GanetiInstance::PLURAL), "singularName": "",
        "namespaced": false, "kind": "GanetiInstance", "verbs": ["get"],
    }));
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources})
}

/// The schemas of the three kinds with their dependencies, each kind marked with its
/// group, version and kind (what `kubectl explain` looks for), refs under `base`.
fn schemas(base: &'static str) -> serde_json::Map<String, Value> {
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    settings.definitions_path = base.into();
    let mut generator = settings.into_generator();
    let kinds = [
        (generator.subschema_for::<GanetiInstance>(), GanetiInstance::KIND),
        (generator.subschema_for::<GanetiNode>(), GanetiNode::KIND),
        (generator.subschema_for::<GanetiJob>(), GanetiJob::KIND),
    ];
    let mut definitions = generator.take_definitions(true);
    for schema in definitions.values_mut() {
        unwrap_descriptions(schema);
    }
    for (reference, kind) in kinds {
        let Some(name) = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
        else {
            continue;
        };
        if let Some(Value::Object(schema)) = definitions.get_mut(name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": GROUP, "version": VERSION, "kind": kind}]),
            );
        }
    }
    definitions
}

/// Doc comments keep their line breaks in schemars' descriptions; `kubectl explain`
/// wraps text itself, so single breaks become spaces (paragraphs stay).
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Read paths of every resource, so aggregators that prune unreferenced definitions
/// keep ours.
fn paths(base: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for (plural, kind) in [
        (GanetiInstance::PLURAL, GanetiInstance::KIND),
        (GanetiNode::PLURAL, GanetiNode::KIND),
        (GanetiJob::PLURAL, GanetiJob::KIND),
    ] {
        let schema = json!({"$ref": format!("{base}/dev.ganeti.compute.v1alpha1.{kind}")});
        let gvk = json!({"group": GROUP, "version": VERSION, "kind": kind});
        let ok = if base.starts_with("#/components") {
            json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}})
        } else {
            json!({"200": {"description": "OK", "schema": schema}})
        };
        paths.insert(
            format!("/apis/{GROUP_VERSION}/{plural}/{{name}}"),
            json!({"get": {
                "operationId": format!("read{kind}"), "description": format!("read the specified {kind}"),
                "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok,
            }}),
        );
    }
    Value::Object(paths)
}

/// `GET /openapi/v3/apis/compute.ganeti.dev/v1alpha1`.
pub fn openapi_v3() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "ganeti-operator compute API", "version": VERSION},
        "paths": paths("#/components/schemas"),
        "components": {"schemas": schemas("#/components/schemas")},
    })
}

/// `GET /openapi/v2`.
pub fn openapi_v2() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "ganeti-operator compute API", "version": VERSION},
        "paths": paths("#/definitions"),
        "definitions": schemas("#/definitions"),
    })
}

/// `GET /openapi/v3`: where each group version's document is, with a hash that
/// changes with it (clients cache by it).
pub fn openapi_v3_index(document: &str) -> Value {
    let digest = ring::digest::digest(&ring::digest::SHA256, document.as_bytes());
    let hash: String = digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02X}"))
        .collect();
    json!({"paths": {
        format!("apis/{GROUP_VERSION}"): {"serverRelativeURL": format!("/openapi/v3/apis/{GROUP_VERSION}?hash={hash}")}
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_kind_and_documents_the_spec() {
        let doc = openapi_v3();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for kind in ["GanetiInstance", "GanetiNode", "GanetiJob"] {
            let s = &schemas[&format!("dev.ganeti.compute.v1alpha1.{kind}")];
            assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], kind, "{kind}");
        }
        let spec = &schemas["dev.ganeti.compute.v1alpha1.GanetiInstanceSpec"];
        let run = spec["properties"]["runStrategy"].to_string();
        assert!(
            spec["properties"]["locked"]["description"]
                .as_str()
                .unwrap()
                .contains("adminlock")
        );
        assert!(run.contains("RunStrategy"), "{run}");
        // Every reference resolves within the document.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let v2 = openapi_v2().to_string();
        assert!(!v2.contains("#/components/"), "v2 refs point at definitions");
    }

    #[test]
    fn discovery_lists_resources_and_subresources() {
        let list = api_resource_list();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"ganetiinstances") && names.contains(&"ganetiinstances/vnc"));
        assert!(names.contains(&"ganetiinstances/shutdown"));
        let index = openapi_v3_index("x");
        let url = index["paths"]["apis/compute.ganeti.dev/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/compute.ganeti.dev/v1alpha1?hash="));
    }
}
