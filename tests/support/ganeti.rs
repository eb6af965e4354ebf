//! The testbed's Ganeti cluster as the tests use it: its CLI (run in the node's network
//! namespace), RAPI clients, throwaway instances (removed again, also when a test
//! fails) and GanetiClusters pointing at it.
#![allow(dead_code)]

use super::testbed::env;
use ganeti_operator::api::GanetiCluster;
use ganeti_operator::rapi::{
    BeParams, Credentials, InstanceCreate, NicSpec, RapiClient, RapiConfig, TlsMode,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::Duration;

/// How long a test waits for a Ganeti job that creates instances.
pub const CREATE_DEADLINE: Duration = Duration::from_secs(180);

fn run(args: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{} {args}", env("GANETI_EXEC")))
        .output()
        .expect("running the Ganeti CLI")
}

/// Runs a gnt-* command line on the testbed's Ganeti node; its stdout. Panics (with
/// its stderr) when it fails.
pub fn gnt(args: &str) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// As [`gnt`], for a command that may fail: whether it succeeded, then its stdout and
/// stderr.
pub fn try_gnt(args: &str) -> (bool, String) {
    let out = run(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Removes the instance if there is one (what fails is ignored).
pub fn remove_instance(name: &str) {
    let _ = try_gnt(&format!(
        "gnt-instance remove -f --ignore-failures {name} >/dev/null 2>&1"
    ));
}

/// Removes the instances when dropped, also when the test failed.
pub struct Instances(pub Vec<String>);

impl Instances {
    /// Removes the instances now (what an earlier run left) and again when dropped.
    pub fn fresh(names: Vec<String>) -> Self {
        for name in &names {
            remove_instance(name);
        }
        Self(names)
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for name in &self.0 {
            remove_instance(name);
        }
    }
}

/// The address ending in `last` in the testbed's instance network.
pub fn ip(last: u8) -> String {
    let first = env("GANETI_INSTANCE_IP_FIRST");
    let (net, _) = first.rsplit_once('.').unwrap();
    format!("{net}.{last}")
}

/// A RAPI client of the testbed's cluster as `user`, trusting its CA.
pub fn rapi_as(user: &str, password: &str) -> RapiClient {
    let ca = std::fs::read(env("GANETI_RAPI_CA")).expect("the testbed's RAPI CA file");
    RapiClient::new(RapiConfig::new(
        env("GANETI_RAPI_URL"),
        Credentials::new(user, password),
        TlsMode::CaBundle(ca),
    ))
    .expect("client builds")
}

/// A RAPI client as the testbed's user with write rights.
pub fn rapi() -> RapiClient {
    rapi_as(&env("GANETI_RAPI_USER"), &env("GANETI_RAPI_PASSWORD"))
}

/// What creates a small diskless instance on the first node, its one NIC at `ip`.
pub fn instance_request(name: &str, ip: &str) -> InstanceCreate {
    let mut req = InstanceCreate::new(name, "diskless");
    req.os_type = Some(env("GANETI_OS"));
    req.hypervisor = Some(env("GANETI_HYPERVISOR"));
    req.pnode = Some(env("GANETI_NODE"));
    req.nics.push(NicSpec {
        ip: Some(ip.into()),
        ..Default::default()
    });
    req.beparams = BeParams {
        vcpus: Some(1),
        maxmem: Some(128),
        minmem: Some(128),
    };
    req
}

/// Creates the instances `(name, ip, tags)` afresh (an older one of the name is removed
/// first), one after another; `reason` goes into Ganeti's jobs. They are removed again when
/// the result is dropped.
pub async fn create_instances(specs: &[(&str, &str, Vec<String>)], reason: &str) -> Instances {
    let c = rapi();
    let guard = Instances::fresh(specs.iter().map(|(n, _, _)| n.to_string()).collect());
    // One at a time: Ganeti 3.0's fake hypervisor writes an instance's state file while
    // another job's node query may read it half-written and fail ("unsupported operand
    // type(s) for +: 'int' and 'str'" in hv_fake.GetNodeInfo), failing that job.
    for (name, ip, tags) in specs {
        let mut req = instance_request(name, ip);
        req.tags = tags.clone();
        let job = c.create_instance(&req, reason).await.expect("create accepted");
        c.wait_job(job, CREATE_DEADLINE)
            .await
            .expect("job wait")
            .into_success()
            .expect("instance created");
    }
    guard
}

/// The Secret `name` in ganeti-system with RAPI credentials: the writer's user name and
/// `password`, labelled for the operator (`ganeti.dev/credentials: rapi`).
pub async fn apply_rapi_secret(client: &kube::Client, name: &str, password: &str) {
    apply_rapi_secret_labelled(client, name, password, true).await;
}

/// As [`apply_rapi_secret`]; `labelled: false` leaves the label off (the operator must
/// then not use it).
pub async fn apply_rapi_secret_labelled(client: &kube::Client, name: &str, password: &str, labelled: bool) {
    apply_rapi_secret_for(client, name, &env("GANETI_RAPI_USER"), password, labelled).await;
}

/// The Secret `name` in ganeti-system with the RAPI credentials of `user` (e.g. the
/// testbed's read-only `GANETI_RAPI_RO_USER`), labelled for the operator if `labelled`.
pub async fn apply_rapi_secret_for(
    client: &kube::Client,
    name: &str,
    user: &str,
    password: &str,
    labelled: bool,
) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ganeti-system");
    let labels = if labelled {
        json!({ganeti_operator::clusters::CREDENTIALS_LABEL: ganeti_operator::clusters::CREDENTIALS_LABEL_VALUE})
    } else {
        json!({})
    };
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "ganeti-system", "labels": labels},
        "stringData": {"username": user, "password": password},
    });
    super::apply(&secrets, name, &secret).await;
}

/// The spec of a GanetiCluster for the testbed's cluster, with the credentials in the
/// Secret `secret`, read every 5 s.
pub fn cluster_spec(secret: &str) -> Value {
    json!({
        "rapiUrl": env("GANETI_RAPI_URL"), "credentialsSecret": {"name": secret},
        "caBundle": std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap(), "syncInterval": "5s",
    })
}

/// Applies the GanetiCluster `name` with `spec`.
pub async fn apply_cluster_spec(client: &kube::Client, name: &str, spec: Value) {
    let clusters: Api<GanetiCluster> = Api::all(client.clone());
    let obj = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": name},
        "spec": spec,
    });
    super::apply(&clusters, name, &obj).await;
}

/// The GanetiCluster `name` for the testbed's cluster ([`cluster_spec`], with the
/// fields of `extra` added) and its credentials Secret `secret`.
pub async fn apply_cluster(client: &kube::Client, name: &str, secret: &str, extra: Value) {
    apply_rapi_secret(client, secret, &env("GANETI_RAPI_PASSWORD")).await;
    let mut spec = cluster_spec(secret);
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    apply_cluster_spec(client, name, spec).await;
}

/// The instance's tags, as `gnt-instance list-tags` shows them.
pub fn tags_of(vm: &str) -> std::collections::BTreeSet<String> {
    gnt(&format!("gnt-instance list-tags {vm}"))
        .lines()
        .map(str::to_owned)
        .collect()
}
