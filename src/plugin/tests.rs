//! The commands against the fake API server (`fake.rs`): what they send, what they make
//! of the answers.

use super::cli::{PluginCli, PluginCommand};
use super::fake::Fake;
use super::resolve::resolve;
use super::vnc::{End, FROM_VM, TO_VM, decode, encode};
use super::{invoked_as_plugin, run_with};
use axum::http::Method;
use clap::Parser as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn command(args: &[&str]) -> PluginCommand {
    PluginCli::try_parse_from(std::iter::once("kubectl-ganeti").chain(args.iter().copied()))
        .unwrap()
        .command
}

async fn run(client: &kube::Client, args: &[&str]) -> anyhow::Result<()> {
    run_with(client, "alice", command(args)).await
}

#[test]
fn the_plugin_is_recognised_by_its_executable_name() {
    assert!(invoked_as_plugin("kubectl-ganeti".as_ref()));
    assert!(invoked_as_plugin("/usr/local/bin/kubectl-ganeti".as_ref()));
    assert!(!invoked_as_plugin("/usr/bin/ganeti-operator".as_ref()));
    assert!(!invoked_as_plugin("kubectl-ganeti-old".as_ref()));
}

#[test]
fn errors_read_on_one_line_without_repeats() {
    let io = std::io::Error::other("No such file (os error 2)");
    let error = anyhow::Error::new(io)
        .context("failed to read /k: No such file (os error 2)")
        .context("no kubeconfig");
    assert_eq!(
        super::render(&error),
        "no kubeconfig: failed to read /k: No such file (os error 2)"
    );
}

#[tokio::test]
async fn names_resolve_as_objects_then_as_instance_names() {
    let client = Fake::new(true).start().await;
    let by_object = resolve(&client, "lab.vm1.example.org").await.unwrap();
    assert_eq!(by_object.instance_name(), "vm1.example.org");
    let by_instance = resolve(&client, "vm1.example.org").await.unwrap();
    assert_eq!(by_instance.name(), "lab.vm1.example.org");
    let ambiguous = resolve(&client, "vm2").await.unwrap_err().to_string();
    assert_eq!(
        ambiguous,
        "vm2 names 2 VMs: lab.vm2, prod.vm2; use one of these names"
    );
    let missing = resolve(&client, "vm9").await.unwrap_err().to_string();
    assert_eq!(missing, "VM vm9 does not exist or is not yours");
}

#[tokio::test]
async fn a_missing_aggregated_api_is_named() {
    let client = Fake::new(false).start().await;
    for args in [&["list"][..], &["reboot", "vm1.example.org"]] {
        let error = run(&client, args).await.unwrap_err().to_string();
        assert!(
            error.contains("aggregated API (compute.ganeti.dev/v1alpha1) is not installed"),
            "{args:?}: {error}"
        );
    }
}

#[tokio::test]
async fn actions_post_to_the_subresource_and_forbidden_says_why() {
    let fake = Fake::new(true);
    let client = fake.start().await;
    run(&client, &["stop", "vm1.example.org"]).await.unwrap();
    let post = fake.seen().pop().unwrap();
    assert_eq!(post.method, Method::POST);
    assert_eq!(
        post.uri,
        "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances/lab.vm1.example.org/shutdown"
    );
    assert_eq!(
        (post.content_type.as_str(), post.body),
        ("application/json", json!({}))
    );

    let args = [
        "migrate",
        "lab.vm1.example.org",
        "--mode",
        "live",
        "--target-node",
        "n2",
    ];
    run(&client, &args).await.unwrap();
    let post = fake.seen().pop().unwrap();
    assert!(post.uri.ends_with("/ganetiinstances/lab.vm1.example.org/migrate"));
    assert_eq!(
        post.body,
        json!({"mode": "live", "targetNode": "n2", "cleanup": false})
    );

    let error = run(&client, &["reboot", "lab.vm2"]).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "forbidden: alice lacks the right vms.reboot on lab/vm2"
    );
    run(&client, &["console", "lab.vm1.example.org"]).await.unwrap();
    assert!(
        fake.seen()
            .pop()
            .unwrap()
            .uri
            .ends_with("/lab.vm1.example.org/console")
    );
}

#[tokio::test]
async fn list_sends_the_selectors() {
    let fake = Fake::new(true);
    let client = fake.start().await;
    run(&client, &["list", "--cluster", "prod", "-l", "a=b", "-o", "name"])
        .await
        .unwrap();
    let uri = fake.seen().pop().unwrap().uri;
    assert_eq!(
        uri,
        "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances?fieldSelector=spec.cluster%3Dprod&labelSelector=a%3Db"
    );
}

#[tokio::test]
async fn apply_for_files_for_the_caller_and_decisions_are_merge_patches() {
    let fake = Fake::new(true);
    let client = fake.start().await;
    let args = [
        "apply-for",
        "--hostname",
        "web1.example.org",
        "--vcpus",
        "1",
        "--memory",
        "1Gi",
        "--disk",
        "1Gi",
        "--purpose",
        "p",
    ];
    run(&client, &args).await.unwrap();
    let seen = fake.seen();
    assert!(
        seen[0]
            .uri
            .starts_with("/apis/authentication.k8s.io/v1/selfsubjectreviews")
    );
    let create = &seen[1];
    let collection = "/apis/ganeti.dev/v1alpha1/namespaces/alice/instanceapplications?";
    assert!(create.uri.starts_with(collection), "{}", create.uri);
    assert!(
        create.uri.contains("fieldManager=kubectl-ganeti"),
        "{}",
        create.uri
    );
    assert_eq!(
        create.body["spec"]["owner"],
        json!({"kind": "User", "name": "alice"})
    );

    run(
        &client,
        &[&args[..], &["--owner-group", "team-a", "--dry-run=server"]].concat(),
    )
    .await
    .unwrap();
    let create = fake.seen().pop().unwrap();
    assert!(create.uri.contains("dryRun=All"), "{}", create.uri);
    assert_eq!(
        create.body["spec"]["owner"],
        json!({"kind": "Group", "name": "team-a"})
    );

    run(&client, &["approve", "web1"]).await.unwrap();
    let patch = fake.seen().pop().unwrap();
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(
        patch.body,
        json!({"spec": {"decision": {"verdict": "Approved", "reason": null}}})
    );
    let error = run(&client, &["reject", "web2", "--reason", "no"])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "instanceapplication web2 not found in namespace alice"
    );
    let error = run(&client, &["reject", "web1", "--reason", " "])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("needs a reason"));
}

/// The future's output, or a panic after 10 s (a broken relay hangs rather than fails).
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("the relay answers within 10 s")
}

/// A viewer's TCP connection through `connect_and_relay` to the fake's `vnc` websocket.
async fn open_viewer(
    client: &kube::Client,
    object: &str,
) -> (
    tokio::net::TcpStream,
    tokio::task::JoinHandle<anyhow::Result<End>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let viewer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let path = super::resolve::instance_path(object, Some("vnc"));
    let client = client.clone();
    let object = object.to_string();
    let relay =
        tokio::spawn(async move { super::vnc::connect_and_relay(&client, &path, &object, accepted).await });
    (viewer, relay)
}

#[tokio::test]
async fn vnc_relays_both_ways_until_the_viewer_closes() {
    let client = Fake::new(true).start().await;
    let (mut viewer, relay) = open_viewer(&client, "lab.vm1.example.org").await;
    let mut answer = [0u8; 12];
    for round in ["rfb 003.008\n", "second part "] {
        viewer.write_all(round.as_bytes()).await.unwrap();
        within(viewer.read_exact(&mut answer)).await.unwrap();
        assert_eq!(answer, round.to_ascii_uppercase().as_bytes());
    }
    viewer.shutdown().await.unwrap();
    assert_eq!(within(relay).await.unwrap().unwrap(), End::ViewerClosed);
}

#[tokio::test]
async fn vnc_ends_on_the_servers_error_or_close() {
    let client = Fake::new(true).start().await;
    let (mut viewer, relay) = open_viewer(&client, "lab.vm1.example.org").await;
    viewer.write_all(b"boom").await.unwrap();
    let end = within(relay).await.unwrap().unwrap();
    assert_eq!(end, End::ServerError("no console on this VM".into()));
    let mut rest = Vec::new();
    within(viewer.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "the viewer's connection is closed");

    let (mut viewer, relay) = open_viewer(&client, "lab.vm1.example.org").await;
    viewer.write_all(b"bye").await.unwrap();
    assert_eq!(within(relay).await.unwrap().unwrap(), End::ServerClosed);

    let (_viewer, relay) = open_viewer(&client, "lab.vm2").await;
    let error = within(relay).await.unwrap().unwrap_err().to_string();
    assert_eq!(error, "forbidden: alice lacks the right vms.console");
}

#[test]
fn framing_round_trips_through_the_channels() {
    let up = encode(TO_VM, b"key event");
    assert_eq!(decode(&up), Some((TO_VM, &b"key event"[..])));
    assert_eq!(decode(&encode(FROM_VM, &up)), Some((FROM_VM, &up[..])));
}
