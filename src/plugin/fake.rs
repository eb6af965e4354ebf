//! A fake kube-apiserver for the plugin's tests: the contract's aggregated API
//! (`compute.ganeti.dev/v1alpha1`), SelfSubjectReview and InstanceApplications, over
//! plain HTTP; it records every request.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const COMPUTE: &str = "/apis/compute.ganeti.dev/v1alpha1";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    /// Whether the APIService is there (else every compute path answers a plain 404).
    installed: bool,
    instances: Vec<Value>,
    seen: Vec<Seen>,
}

#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<Inner>>);

impl Fake {
    /// The VMs `lab.vm1.example.org`, and `vm2` on both `lab` and `prod`.
    pub fn new(installed: bool) -> Self {
        let fake = Fake::default();
        {
            let mut inner = fake.0.lock().unwrap();
            inner.installed = installed;
            inner.instances = [("lab", "vm1.example.org"), ("lab", "vm2"), ("prod", "vm2")]
                .iter()
                .map(|(cluster, name)| instance(cluster, name))
                .collect();
        }
        fake
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }

    /// Serves on a free loopback port; the client talks plain HTTP to it.
    pub async fn start(&self) -> kube::Client {
        let app = axum::Router::new()
            .route(
                &format!("{COMPUTE}/ganetiinstances/{{name}}/vnc"),
                axum::routing::get(vnc),
            )
            .fallback(any)
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

fn instance(cluster: &str, name: &str) -> Value {
    json!({
        "apiVersion": "compute.ganeti.dev/v1alpha1", "kind": "GanetiInstance",
        "metadata": {"name": format!("{cluster}.{name}")},
        "spec": {"cluster": cluster, "runStrategy": "Always"},
        "status": {"instanceName": name, "state": "running", "running": true,
            "primaryNode": "node1", "vcpus": 1, "memoryMiB": 512, "ips": []}
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

fn json(value: Value) -> Response {
    axum::Json(value).into_response()
}

async fn any(State(fake): State<Fake>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let uri = parts.uri.to_string();
    let seen = Seen {
        method: parts.method.clone(),
        uri: uri.clone(),
        content_type: parts
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let mut inner = fake.0.lock().unwrap();
    inner.seen.push(seen.clone());
    let path = parts.uri.path();
    if let Some(rest) = path.strip_prefix(COMPUTE) {
        if !inner.installed {
            return (StatusCode::NOT_FOUND, "404 page not found").into_response();
        }
        return compute(&inner.instances, &parts.method, rest, parts.uri.query());
    }
    match (parts.method, path) {
        (Method::POST, "/apis/authentication.k8s.io/v1/selfsubjectreviews") => json(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": {"userInfo": {"username": "alice", "groups": ["team-a"]}}
        })),
        (Method::POST, "/apis/ganeti.dev/v1alpha1/namespaces/alice/instanceapplications") => {
            let mut created = seen.body;
            let prefix = created["metadata"]["generateName"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if created["metadata"]["name"].is_null() {
                created["metadata"]["name"] = json!(format!("{prefix}x7k2p"));
            }
            json(created)
        }
        (Method::PATCH, "/apis/ganeti.dev/v1alpha1/namespaces/alice/instanceapplications/web1") => {
            let mut spec = json!({"hostname": "web1.example.org", "vcpus": 1, "memory": "1Gi",
                "disks": [{"size": "1Gi"}], "owner": {"kind": "User", "name": "alice"},
                "purpose": "p"});
            spec["decision"] = seen.body["spec"]["decision"].clone();
            spec["decision"]["decidedBy"] = json!("admin");
            json(
                json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
                "metadata": {"name": "web1", "namespace": "alice"}, "spec": spec}),
            )
        }
        (Method::GET, "/apis/ganeti.dev/v1alpha1") => json(json!({"kind": "APIResourceList"})),
        (_, path) if path.starts_with("/apis/ganeti.dev/v1alpha1/namespaces/alice/") => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "instanceapplications \"x\" not found",
        ),
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

/// The aggregated API: discovery, list (field selectors), get, and the POST subresources.
/// `lab.vm2` refuses everything with a 403.
fn compute(instances: &[Value], method: &Method, rest: &str, query: Option<&str>) -> Response {
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, [""]) => json(json!({"kind": "APIResourceList"})),
        (&Method::GET, ["ganetiinstances"]) => {
            let mut items: Vec<Value> = instances.to_vec();
            let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
            for (_, value) in pairs.filter(|(k, _)| k == "fieldSelector") {
                let (field, wanted) = value.split_once('=').unwrap();
                let pointer = match field {
                    "status.instanceName" => "/status/instanceName",
                    "spec.cluster" => "/spec/cluster",
                    other => panic!("unexpected field selector {other}"),
                };
                items.retain(|vm| vm.pointer(pointer) == Some(&json!(wanted)));
            }
            json(
                json!({"apiVersion": "compute.ganeti.dev/v1alpha1", "kind": "GanetiInstanceList",
                "metadata": {}, "items": items}),
            )
        }
        (_, ["ganetiinstances", name, ..]) if !instances.iter().any(|vm| vm["metadata"]["name"] == *name) => {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("ganetiinstances \"{name}\" not found"),
            )
        }
        (&Method::GET, ["ganetiinstances", name]) => json(
            instances
                .iter()
                .find(|vm| vm["metadata"]["name"] == *name)
                .unwrap()
                .clone(),
        ),
        (&Method::POST, ["ganetiinstances", "lab.vm2", action]) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("alice lacks the right vms.{action} on lab/vm2"),
        ),
        (&Method::POST, ["ganetiinstances", _, "console"]) => json(json!({
            "ticket": "t1", "expiresInSeconds": 60,
            "url": "https://ganeti.example.org/console/?ticket=t1", "websocket": "/console/ws?ticket=t1"
        })),
        (&Method::POST, ["ganetiinstances", name, action]) => json(json!({
            "apiVersion": "compute.ganeti.dev/v1alpha1", "kind": "GanetiInstanceAction",
            "action": action, "cluster": "lab", "instance": name.trim_start_matches("lab."),
            "uuid": "u-1", "job": 42
        })),
        _ => status(StatusCode::NOT_FOUND, "NotFound", "no such path"),
    }
}

/// The `vnc` subresource: answers channel-0 bytes with the same bytes upper-cased on
/// channel 1; `boom` gets an error on channel 3; `bye` a Close frame.
async fn vnc(Path(name): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    if name == "lab.vm2" {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "alice lacks the right vms.console",
        );
    }
    upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    // What a kube-apiserver sends first: an empty message opening the lowest channel.
    let _ = socket.send(Message::Binary(vec![0].into())).await;
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Binary(data) = message else {
            continue;
        };
        let reply = match data.split_first() {
            Some((0, b"boom")) => [&[3u8][..], b"no console on this VM"].concat(),
            Some((0, b"bye")) => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            Some((0, rfb)) => [&[1u8][..], &rfb.to_ascii_uppercase()].concat(),
            _ => continue,
        };
        if socket.send(Message::Binary(reply.into())).await.is_err() {
            return;
        }
    }
}
