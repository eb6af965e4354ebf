//! The chart as users install it, end to end: the image `scripts/image` built, loaded
//! into the testbed node's containerd, `helm install` with tests/fixtures/testbed-values.yaml,
//! two replicas on a real kubelet, reaching Ganeti's RAPI and the SMTP server from
//! their pods. An application approved is created by the leading pod, exactly once; a
//! console ticket and a confirmation link from one pod are accepted by the other (the
//! chart's shared link key); deleting the leader hands over within the lease; `helm
//! upgrade` to another tag rolls the pods and keeps links valid; `helm uninstall`
//! leaves Ganeti's VMs.
//!
//! Needs the node (`scripts/testbed node up`, which `make test` runs) and the image
//! archive (`scripts/image`; `IMAGE_ARCHIVE` overrides the path): without them it
//! fails. Its VM: `e2e-vm.e2e.ganeti.test` at 198.51.100.98.
//!
//! The chart owns cluster-wide objects of fixed names that other tests apply from
//! `manifests/` with kubectl; Helm refuses to install over objects it does not own,
//! so the test first hands them to the release (Helm's adoption: its label and
//! annotations), and re-applies `manifests/` after the uninstall, which deletes them.

mod support;

use ganeti_operator::api::InstanceApplication;
use ganeti_operator::api::application::Phase;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::chart::{
    NS, Pod, RELEASE, SELECTOR, Stages, adopt_what_the_chart_owns, diagnostics, helm, http, image_archive,
    leading_pod, lease_holder, metrics, run, sum, testbed_node, wait_ready,
};
use support::ganeti::{ip, try_gnt};
use support::testbed::{env, kube_client, kubectl, kubectl_ok};

const REPOSITORY: &str = "ghcr.io/ganeti-operator/ganeti-operator";
const CLUSTER: &str = "e2e-tb";
const APP_NS: &str = "e2e-alice";
const APP: &str = "e2e-vm";
const HOST: &str = "e2e-vm.e2e.ganeti.test";
const LAST_IP: u8 = 98;
/// The chart's default `leaderElection.leaseDurationSeconds`.
const LEASE_SECS: u64 = 15;

/// How many instance creations the pod sent to RAPI.
async fn creates_sent(pod: &Pod) -> f64 {
    sum(
        &metrics(pod).await,
        "ganeti_operator_rapi_request_duration_seconds_count",
        "operation=\"instance_create\"",
    )
}

/// How many create jobs Ganeti ran (or runs) for `host`.
fn create_jobs(host: &str) -> usize {
    let (_, out) = try_gnt("gnt-job list --no-headers -o id,summary");
    out.lines()
        .filter(|l| l.contains(&format!("INSTANCE_CREATE({host})")))
        .count()
}

/// Removes the release and the VM, also when the test failed, and puts back what
/// other tests expect of the testbed (`manifests/`, which the uninstall deleted).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "60s"]).output();
        support::ganeti::remove_instance(HOST);
        let _ = kubectl(
            "root",
            &[
                "-n",
                APP_NS,
                "delete",
                "instanceapplication",
                APP,
                "--ignore-not-found",
            ],
        );
        for f in [
            "manifests/rbac.yaml",
            "manifests/access.yaml",
            "manifests/admission.yaml",
        ] {
            let _ = kubectl(
                "root",
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    support::repo_path(f).to_str().unwrap(),
                ],
            );
        }
    }
}

/// The README's install, on the testbed: the namespace, the SMTP Secret (the server at
/// the node's gateway), then `helm install` with the testbed's values and `tag`.
fn install(tag: &str) {
    let _ = kubectl("root", &["create", "namespace", NS]);
    let _ = kubectl(
        "root",
        &["-n", NS, "delete", "secret", "smtp", "--ignore-not-found"],
    );
    kubectl_ok(
        "root",
        &[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "smtp",
            &format!("--from-literal=host={}", env("NODE_SMTP_HOST")),
            &format!("--from-literal=port={}", env("SMTP_PORT")),
            "--from-literal=tls=none",
            "--from-literal=from=Ganeti VM service <ganeti@e2e.test>",
        ],
    );
    let values = support::repo_path("tests/fixtures/testbed-values.yaml");
    run(helm(&[
        "install",
        RELEASE,
        support::repo_path("charts/ganeti-operator").to_str().unwrap(),
        "-n",
        NS,
        "-f",
        values.to_str().unwrap(),
        "--set",
        &format!("image.tag={tag}"),
    ]));
}

/// The GanetiCluster, alice's namespace, verified profile and the `user` role.
async fn declare_cluster_and_alice() {
    let root = kube_client("root").await;
    support::crds::install_crds(&root).await;
    support::applicant_namespaces("e2e", &["alice"]);
    let defaults = json!({"os": env("GANETI_OS"), "hypervisor": env("GANETI_HYPERVISOR"),
                          "diskTemplate": "diskless", "primaryNode": env("GANETI_NODE"),
                          "sshKeysOsParameter": env("GANETI_OS_SSH_KEYS_PARAM")});
    let subnet = format!("{}/24", ip(0));
    support::ganeti::apply_cluster(
        &root,
        CLUSTER,
        "e2e-rapi",
        json!({"defaults": defaults, "allowed": {"ipRanges": [subnet]}}),
    )
    .await;
    support::maildir::apply_verified_profile(&root, "e2e-alice", "alice", "alice@e2e.test").await;
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root);
    support::apply(
        &bindings,
        "e2e-users",
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "e2e-users"},
            "spec": {"roleRef": "user", "subjects": [{"kind": "User", "name": "alice"}]},
        }),
    )
    .await;
}

/// alice files the application, an admin approves it.
async fn file_and_approve() {
    let root: Api<InstanceApplication> = Api::namespaced(kube_client("root").await, APP_NS);
    support::delete_and_wait(&root, APP).await;
    let alice: Api<InstanceApplication> = Api::namespaced(kube_client("alice").await, APP_NS);
    let app = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": APP},
        "spec": {"cluster": CLUSTER, "hostname": HOST, "vcpus": 1, "memory": "128Mi",
                 "disks": [{"size": "1Gi"}], "network": {"ip": ip(LAST_IP)},
                 "owner": {"kind": "User", "name": "alice"}, "purpose": "the chart end to end"},
    });
    alice
        .create(&PostParams::default(), &serde_json::from_value(app).unwrap())
        .await
        .expect("alice files her application");
    let admin: Api<InstanceApplication> = Api::namespaced(kube_client("admin").await, APP_NS);
    admin
        .patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Approved"}}})),
        )
        .await
        .expect("admin approves");
}

async fn wait_created(timeout: Duration) -> InstanceApplication {
    let api: Api<InstanceApplication> = Api::namespaced(kube_client("root").await, APP_NS);
    let deadline = Instant::now() + timeout;
    loop {
        let app = api.get(APP).await.unwrap();
        if app.status.as_ref().is_some_and(|s| s.phase == Phase::Created) {
            return app;
        }
        assert!(
            Instant::now() < deadline,
            "{APP} never Created: {:?}\n{}",
            app.status,
            diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A console ticket for alice's VM through `pod` (retried until the pod's view of the
/// cluster has the VM).
async fn console_ticket(pod: &Pod) -> String {
    let url = format!("http://{}:8080/api/v1/instances/{CLUSTER}/{HOST}/console", pod.ip);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = http()
            .post(&url)
            .bearer_auth(env("KUBE_TOKEN_ALICE"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            return body["ticket"].as_str().expect("a ticket").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} gave no ticket: {status} {body}",
            pod.name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The status of GET `path?<key>=<value>` at `pod`'s HTTP port.
async fn page_status(pod: &Pod, path: &str, key: &str, value: &str) -> u16 {
    http()
        .get(format!("http://{}:8080{path}", pod.ip))
        .query(&[(key, value)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The console page's status at `pod` for `ticket` (checked there, not spent).
async fn console_page(pod: &Pod, ticket: &str) -> u16 {
    page_status(pod, &format!("/console/{CLUSTER}/{HOST}"), "ticket", ticket).await
}

/// The confirmation page's status at `pod` for the link's token (shows a button only).
async fn confirm_page(pod: &Pod, token: &str) -> u16 {
    page_status(pod, "/api/v1/confirm", "token", token).await
}

/// alice asks `pod` to destroy her VM: the token of the confirmation link mailed to her
/// (through the SMTP server at the node's gateway). Nothing is destroyed unless the link
/// is followed with a POST, which this test never does.
async fn destroy_link(pod: &Pod) -> String {
    let subject = format!("Confirm: destroy {HOST}");
    let before = support::maildir::with_subject(&subject).len();
    let resp = http()
        .post(format!(
            "http://{}:8080/api/v1/instances/{CLUSTER}/{HOST}/destroy",
            pod.ip
        ))
        .bearer_auth(env("KUBE_TOKEN_ALICE"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 202, "{}", resp.text().await.unwrap());
    let mails = support::maildir::wait_for(&subject, before + 1, Duration::from_secs(60)).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.body.contains("ganeti-system.svc"))
        .unwrap_or_else(|| panic!("no confirmation mail from the pods\n{}", diagnostics()));
    let link = mail
        .body
        .lines()
        .find(|l| l.contains("token="))
        .expect("a link in the mail");
    link.split_once("token=").unwrap().1.trim().to_string()
}

/// The signature's last character changed: a link no key of ours made.
fn forged(token: &str) -> String {
    let mut t = token.to_string();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

#[tokio::test]
async fn the_installed_chart_runs_the_service_end_to_end() {
    let mut stages = Stages(Vec::new(), Instant::now());
    let version = env!("CARGO_PKG_VERSION");
    let image = format!("{REPOSITORY}:{version}");
    let upgraded_tag = format!("{version}-e2e-upgrade");
    let upgraded = format!("{REPOSITORY}:{upgraded_tag}");

    // The node is up (make test boots it); the image is built.
    assert!(
        testbed_node(&["status"]).status().unwrap().success(),
        "the testbed node is not Ready: run scripts/testbed node up (make test does)"
    );
    let archive = image_archive();
    assert!(
        archive.is_file(),
        "no image archive at {}: run scripts/image (make test does), or set IMAGE_ARCHIVE",
        archive.display()
    );
    run(testbed_node(&["load", archive.to_str().unwrap()]));
    stages.done("image load");

    let _cleanup = Cleanup;
    adopt_what_the_chart_owns();
    support::ganeti::remove_instance(HOST);
    stages.done("clean slate");

    // 2. helm install: two Ready replicas, exactly one leading.
    install(version);
    let installed = wait_ready(2, &image, Duration::from_secs(180)).await;
    stages.done("helm install to 2 Ready");
    declare_cluster_and_alice().await;
    // The Lease names one pod, and that pod alone says it leads (`ganeti_operator_leading`).
    // A Lease left by an earlier holder that did not release it expires first.
    let deadline = Instant::now() + Duration::from_secs(3 * LEASE_SECS);
    let leader = loop {
        let mut leading = Vec::new();
        for p in &installed {
            let m = metrics(p).await;
            if support::operator::sample(&m, "ganeti_operator_leading") == Some(1.0) {
                leading.push(p.name.clone());
            }
        }
        let holder = leading_pod();
        if leading.len() == 1 && holder.as_ref() == Some(&leading[0]) {
            break leading.remove(0);
        }
        assert!(leading.len() <= 1, "two pods lead: {leading:?}");
        assert!(
            Instant::now() < deadline,
            "no pod leads (Lease: {holder:?}, leading: {leading:?})\n{}",
            diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (leader_pod, follower_pod) = if installed[0].name == leader {
        (installed[0].clone(), installed[1].clone())
    } else {
        (installed[1].clone(), installed[0].clone())
    };
    println!("leader {}, follower {}", leader_pod.name, follower_pod.name);
    stages.done("one leader");

    // 3. An approved application: the leading pod creates the VM, once.
    let jobs_before = create_jobs(HOST);
    file_and_approve().await;
    let created = wait_created(Duration::from_secs(240)).await;
    let status = created.status.clone().unwrap();
    assert_eq!(status.instance_name.as_deref(), Some(HOST));
    assert_eq!(status.ips, vec![ip(LAST_IP)]);
    let (ok, list) = try_gnt(&format!(
        "gnt-instance list --no-headers -o name,status,tags {HOST}"
    ));
    assert!(ok && list.contains("running"), "{list}");
    assert!(list.contains("GANETI_WEB_MANAGER:owner:U:alice"), "{list}");
    assert_eq!(create_jobs(HOST) - jobs_before, 1, "one create job");
    assert_eq!(creates_sent(&leader_pod).await, 1.0, "the leader sent the create");
    assert_eq!(creates_sent(&follower_pod).await, 0.0, "the follower sent none");
    stages.done("application approved to VM created");

    // 4. A ticket from one pod is accepted by the other; a forged one is not. The page
    // needs the image's noVNC files (served from each pod).
    let ticket = console_ticket(&leader_pod).await;
    assert_eq!(console_page(&follower_pod, &ticket).await, 200);
    assert_eq!(console_page(&follower_pod, &forged(&ticket)).await, 403);
    let ticket = console_ticket(&follower_pod).await;
    assert_eq!(console_page(&leader_pod, &ticket).await, 200);
    let rfb = http()
        .get(format!("http://{}:8080/novnc/core/rfb.js", follower_pod.ip))
        .send()
        .await
        .unwrap();
    assert_eq!(rfb.status(), 200, "noVNC in the image");
    // A confirmation link mailed by one pod, shown by the other; kept for the upgrade.
    let link = destroy_link(&follower_pod).await;
    assert_eq!(confirm_page(&leader_pod, &link).await, 200);
    assert_eq!(confirm_page(&leader_pod, &forged(&link)).await, 403);
    stages.done("tickets and links across pods");

    // 5. The leader pod deleted: another pod leads within the lease, nothing twice. The
    // leader releases the Lease on SIGTERM; the follower (checking every third of the
    // lease) or the Deployment's replacement (contending as it starts) takes it.
    let t = Instant::now();
    kubectl_ok(
        "root",
        &["-n", NS, "delete", "pod", &leader_pod.name, "--wait=false"],
    );
    let new_leader = loop {
        if let Some(p) = leading_pod().filter(|p| *p != leader_pod.name) {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(LEASE_SECS),
            "no other pod took the lead within {LEASE_SECS}s (holder {:?})\n{}",
            lease_holder(),
            diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to = if new_leader == follower_pod.name {
        "the follower"
    } else {
        "the replacement pod"
    };
    println!(
        "handover to {to} {new_leader} after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    stages.done("leader deleted to handover");
    let after = wait_ready(2, &image, Duration::from_secs(120)).await;
    stages.done("replacement pod Ready");
    // The new leader has reconciled the application (it starts with a full list) and
    // sent no create.
    let new_leader = after
        .iter()
        .find(|p| p.name == new_leader)
        .expect("the new leader is Ready")
        .clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sum(
        &metrics(&new_leader).await,
        "ganeti_operator_reconciles_total",
        "controller=\"instanceapplication\"",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the new leader never reconciled the application"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for p in &after {
        assert_eq!(creates_sent(p).await, 0.0, "{} sent a create", p.name);
    }
    assert_eq!(create_jobs(HOST) - jobs_before, 1, "still one create job");

    // 6. helm upgrade to another tag of the same image: the pods roll, the key stays.
    // The link key Secret's data, as the chart keeps it.
    let link_key = || {
        kubectl_ok(
            "root",
            &[
                "-n",
                NS,
                "get",
                "secret",
                "ganeti-operator-link-key",
                "-o",
                "jsonpath={.data.key}",
            ],
        )
    };
    let key_before = link_key();
    run(testbed_node(&["load", archive.to_str().unwrap(), &upgraded]));
    stages.done("image load under the upgrade tag");
    run(helm(&[
        "upgrade",
        RELEASE,
        support::repo_path("charts/ganeti-operator").to_str().unwrap(),
        "-n",
        NS,
        "--reuse-values",
        "--set",
        &format!("image.tag={upgraded_tag}"),
    ]));
    let rolled = wait_ready(2, &upgraded, Duration::from_secs(180)).await;
    stages.done("helm upgrade to 2 Ready of the new tag");
    assert!(rolled.iter().all(|p| after.iter().all(|a| a.name != p.name)));
    let key_after = link_key();
    assert_eq!(key_before, key_after, "the upgrade kept the link key");
    for p in &rolled {
        assert_eq!(confirm_page(p, &link).await, 200, "the link at {}", p.name);
    }
    let ticket = console_ticket(&rolled[0]).await;
    assert_eq!(console_page(&rolled[1], &ticket).await, 200);
    assert_eq!(create_jobs(HOST) - jobs_before, 1, "still one create job");
    stages.done("links after the upgrade");

    // 7. helm uninstall: the pods go, the VM stays (and the link key, for links in flight).
    run(helm(&[
        "uninstall",
        RELEASE,
        "-n",
        NS,
        "--wait",
        "--timeout",
        "120s",
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl_ok("root", &["-n", NS, "get", "pods", "-l", SELECTOR, "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "pods left after uninstall");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stages.done("helm uninstall");
    let (ok, list) = try_gnt(&format!("gnt-instance list --no-headers -o name,status {HOST}"));
    assert!(ok && list.contains(HOST), "the VM outlives the release: {list}");
    let (kept, _, _) = kubectl("root", &["-n", NS, "get", "secret", "ganeti-operator-link-key"]);
    assert!(kept, "helm uninstall keeps the link key");
    support::ganeti::remove_instance(HOST);
    let (gone, _) = try_gnt(&format!("gnt-instance list --no-headers -o name {HOST}"));
    assert!(!gone, "the VM was removed by the test");
    stages.done("VM checked and removed");

    for (name, took) in &stages.0 {
        println!("{name:>45}: {:6.1}s", took.as_secs_f64());
    }
}
