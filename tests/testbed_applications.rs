//! InstanceApplications end to end on the real testbed: admission (real kube-apiserver),
//! approval within quota, creation in the real Ganeti, mails through the real SMTP
//! server, and crash safety with the operator killed at each step.
//!
//! The tests of this file share one operator process at a time: they take `serial()`.

mod support;

use ganeti_operator::api::InstanceApplication;
use ganeti_operator::api::application::Phase;
use ganeti_operator::fault;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;
use support::apply;
use support::ganeti::{self, Instances, ip, try_gnt};
use support::operator::{Operator, Options};
use support::testbed::{env, kube_client};

const CLUSTER: &str = "apps-lab";
const DOMAIN: &str = "apps.ganeti.test";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFwcGxpY2F0aW9uLXRlc3Qta2V5LWZvci1hbGljZQ alice@laptop";

fn serial() -> &'static tokio::sync::Mutex<()> {
    static LOCK: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// How many create jobs Ganeti ever ran (or runs) for `host`.
fn create_jobs(host: &str) -> usize {
    let (_, out) = try_gnt("gnt-job list --no-headers -o id,summary");
    out.lines()
        .filter(|l| l.contains(&format!("INSTANCE_CREATE({host})")))
        .count()
}

/// CRDs, RBAC, admission, the GanetiCluster, SMTP settings, alice's profile, a
/// namespace per user with the applicant role. Idempotent.
async fn setup() {
    let root = support::install_with_smtp("smtp-apps", "ganeti-operator@ganeti.test").await;
    support::applicant_namespaces("apps", &["alice", "bob", "carol"]);
    let defaults = json!({"os": env("GANETI_OS"), "hypervisor": env("GANETI_HYPERVISOR"),
                          "diskTemplate": "diskless", "primaryNode": env("GANETI_NODE"),
                          "sshKeysOsParameter": env("GANETI_OS_SSH_KEYS_PARAM")});
    // Applications here take explicit addresses on the default (routed) NIC: offered from
    // the testbed's instance subnet.
    let subnet = format!("{}/24", ip(0));
    ganeti::apply_cluster(
        &root,
        CLUSTER,
        "rapi-apps",
        json!({"defaults": defaults, "allowed": {"ipRanges": [subnet]}}),
    )
    .await;
    let profiles: Api<ganeti_operator::api::UserProfile> = Api::all(root.clone());
    for (user, keys, groups) in [("alice", vec![KEY], vec![]), ("carol", vec![], vec!["team-a"])] {
        apply(
            &profiles,
            &format!("apps-{user}"),
            &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
                "metadata": {"name": format!("apps-{user}")},
                "spec": {"username": user, "email": format!("{user}@apps.example.org"),
                         "sshKeys": keys, "groups": groups}}),
        )
        .await;
    }
}

async fn start_operator(name: &str, crash_at: Option<&str>) -> Operator {
    let mut options = Options::default()
        .arg("--smtp-secret")
        .arg("smtp-apps")
        // The profiles' addresses are not verified in these tests (that flow has its own).
        .arg("--mail-unverified")
        // A crashed leader's lease frees sooner.
        .arg("--lease-duration-seconds")
        .arg("5");
    if let Some(point) = crash_at {
        options = options.env(fault::CRASH_AT_ENV, point);
    }
    Operator::start_with(name, options).await
}

fn application(name: &str, owner: Value, last_ip: u8, memory: &str) -> Value {
    json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": name},
        "spec": {
            "cluster": CLUSTER,
            "hostname": format!("{name}.{DOMAIN}"),
            "vcpus": 1, "memory": memory, "disks": [{"size": "1Gi"}],
            "network": {"ip": ip(last_ip)},
            "owner": owner,
            "purpose": "integration test",
        }
    })
}

/// Files an application as `user` in their namespace (fresh: an old one is deleted).
async fn file(user: &str, body: Value) -> Result<InstanceApplication, kube::Error> {
    let ns = format!("apps-{user}");
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    let root: Api<InstanceApplication> = Api::namespaced(kube_client("root").await, &ns);
    support::delete_and_wait(&root, &name).await;
    let api: Api<InstanceApplication> = Api::namespaced(kube_client(user).await, &ns);
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
        .await
}

/// alice files the application `name` for herself (her VM at `ip(last_ip)`, with
/// `memory`), and an admin approves it.
async fn alice_files_and_admin_approves(name: &str, last_ip: u8, memory: &str) {
    let owner = json!({"kind": "User", "name": "alice"});
    file("alice", application(name, owner, last_ip, memory))
        .await
        .expect("alice files her application");
    decide("admin", "apps-alice", name, "Approved")
        .await
        .expect("admin approves");
}

/// Sets the decision as `who` (admission records who decided).
async fn decide(who: &str, ns: &str, name: &str, verdict: &str) -> Result<InstanceApplication, kube::Error> {
    let api: Api<InstanceApplication> = Api::namespaced(kube_client(who).await, ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"decision": {"verdict": verdict}}})),
    )
    .await
}

/// Merges `spec` into the application's spec as `who`.
async fn patch_spec(
    who: &str,
    ns: &str,
    name: &str,
    spec: Value,
) -> Result<InstanceApplication, kube::Error> {
    let api: Api<InstanceApplication> = Api::namespaced(kube_client(who).await, ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
}

async fn wait_phase(ns: &str, name: &str, phase: Phase, op: &Operator) -> InstanceApplication {
    let api: Api<InstanceApplication> = Api::namespaced(kube_client("root").await, ns);
    // Generous: another operator may hold the leader lease for a while.
    op.wait_for(&api, name, Duration::from_secs(180), |app| {
        app.status.as_ref().is_some_and(|s| s.phase == phase)
    })
    .await
}

fn condition(app: &InstanceApplication, type_: &str) -> (String, String, String) {
    app.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| panic!("no {type_} condition on {:?}", app.status))
}

/// Waits for a mail to `to` whose text contains every one of `needles`.
async fn wait_mail(to: &str, needles: &[&str]) -> String {
    let dir = std::path::Path::new(&env("MAIL_DIR")).join("new");
    for _ in 0..300 {
        let found = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .find(|m| m.contains(to) && needles.iter().all(|n| m.contains(n)));
        if let Some(mail) = found {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail to {to} containing {needles:?} in {}", dir.display());
}

fn refusal(result: Result<InstanceApplication, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn alice_applies_admin_approves_and_the_vm_is_created() {
    let _serial = serial().lock().await;
    setup().await;
    let host = format!("alice-vm.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![host.clone()]);
    let jobs_before = create_jobs(&host);
    let op = start_operator("apps-alice", None).await;

    let filed = file(
        "alice",
        application("alice-vm", json!({"kind": "User", "name": "alice"}), 50, "128Mi"),
    )
    .await
    .expect("alice files her application");
    assert_eq!(filed.spec.applicant.as_deref(), Some("alice"));
    let pending = wait_phase("apps-alice", "alice-vm", Phase::Pending, &op).await;
    let (_, reason, _) = condition(&pending, "Decided");
    assert_eq!(reason, "AwaitingDecision");

    // Nobody approves their own application.
    let refused = refusal(decide("alice", "apps-alice", "alice-vm", "Approved").await);
    assert!(
        refused.contains("do not hold the system right applications"),
        "{refused}"
    );

    decide("admin", "apps-alice", "alice-vm", "Approved")
        .await
        .expect("admin approves");
    let created = wait_phase("apps-alice", "alice-vm", Phase::Created, &op).await;
    let status = created.status.clone().unwrap();
    assert_eq!(status.instance_name.as_deref(), Some(host.as_str()));
    assert_eq!(status.instance_uuid, Some(ganeti_field(&host, "uuid")));
    assert_eq!(status.approved_generation, created.metadata.generation);
    assert_eq!(status.ips, vec![ip(50)]);
    assert!(status.job_id.is_some());
    assert!(status.created_time.is_some());
    let (decided, reason, message) = condition(&created, "Decided");
    assert_eq!((decided.as_str(), reason.as_str()), ("True", "Approved"));
    assert!(message.contains("admin"), "{message}");

    // Ganeti's own view: running, on the node the status names, alice's tag and key.
    let (ok, list) = try_gnt(&format!(
        "gnt-instance list --no-headers -o name,status,pnode,tags {host}"
    ));
    assert!(ok, "{list}");
    assert!(list.contains("running"), "{list}");
    assert!(list.contains(status.primary_node.as_deref().unwrap()), "{list}");
    assert!(list.contains("GANETI_WEB_MANAGER:owner:U:alice"), "{list}");
    let (_, info) = try_gnt(&format!("gnt-instance info {host}"));
    assert!(
        info.contains("alice@laptop"),
        "the SSH key is the OS parameter:\n{info}"
    );
    let (_, jobs) = try_gnt("gnt-job list --no-headers -o id,summary");
    let job = status.job_id.unwrap().to_string();
    assert!(
        jobs.lines()
            .any(|l| l.trim_start().starts_with(&job) && l.contains(&host)),
        "{jobs}"
    );
    assert_eq!(create_jobs(&host) - jobs_before, 1);

    wait_mail("alice@apps.example.org", &["approved", &host]).await;
    wait_mail("alice@apps.example.org", &["is ready", &ip(50)]).await;

    // Deleting the application leaves the VM alone.
    let api: Api<InstanceApplication> = Api::namespaced(kube_client("alice").await, "apps-alice");
    api.delete("alice-vm", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, _) = try_gnt(&format!("gnt-instance list --no-headers -o name {host}"));
    assert!(ok, "the VM outlives its application");
}

#[tokio::test]
async fn group_applications_and_the_group_quota() {
    let _serial = serial().lock().await;
    setup().await;
    let hosts: Vec<String> = ["team-1", "team-2", "team-3"]
        .iter()
        .map(|n| format!("{n}.{DOMAIN}"))
        .collect();
    let _cleanup = Instances::fresh(hosts.clone());
    let root = kube_client("root").await;
    let quotas: Api<ganeti_operator::api::ClusterQuota> = Api::all(root.clone());
    apply(
        &quotas,
        "apps-team-a",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "ClusterQuota", "metadata": {"name": "apps-team-a"},
            "spec": {"cluster": CLUSTER, "subject": {"kind": "Group", "name": "team-a"},
                     "limits": {"instances": 2}}}),
    )
    .await;
    let op = start_operator("apps-team", None).await;
    let team = json!({"kind": "Group", "name": "team-a"});

    // bob is not in team-a.
    let refused = refusal(file("bob", application("team-bob", team.clone(), 59, "128Mi")).await);
    assert!(refused.contains("not a member of group \"team-a\""), "{refused}");

    for (i, name) in ["team-1", "team-2"].iter().enumerate() {
        file("carol", application(name, team.clone(), 51 + i as u8, "128Mi"))
            .await
            .expect("carol files for her group");
        decide("admin", "apps-carol", name, "Approved").await.unwrap();
    }
    for name in ["team-1", "team-2"] {
        let app = wait_phase("apps-carol", name, Phase::Created, &op).await;
        let host = app.status.unwrap().instance_name.unwrap();
        let (_, tags) = try_gnt(&format!("gnt-instance list --no-headers -o tags {host}"));
        assert!(tags.contains("GANETI_WEB_MANAGER:owner:G:team-a"), "{tags}");
    }

    // The third does not fit: it waits, says why, and an approval is refused.
    file("carol", application("team-3", team.clone(), 53, "128Mi"))
        .await
        .unwrap();
    let mut app = wait_phase("apps-carol", "team-3", Phase::Pending, &op).await;
    for _ in 0..100 {
        if app
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "QuotaExceeded"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        app = wait_phase("apps-carol", "team-3", Phase::Pending, &op).await;
    }
    let (exceeded, _, message) = condition(&app, "QuotaExceeded");
    assert_eq!(exceeded, "True");
    assert!(message.contains("3 of 2 instances"), "{message}");
    decide("admin", "apps-carol", "team-3", "Approved").await.unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let app = wait_phase("apps-carol", "team-3", Phase::Pending, &op).await;
        let (_, reason, message) = condition(&app, "Decided");
        if reason == "ApprovalRefused" {
            refused = Some(message);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.unwrap_or_else(|| panic!("the approval was not refused\n{}", op.log()));
    assert!(refused.contains("3 of 2 instances"), "{refused}");
    let (ok, _) = try_gnt(&format!("gnt-instance list --no-headers -o name {}", hosts[2]));
    assert!(!ok, "no third VM");
    quotas
        .delete("apps-team-a", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_ganeti_failure_is_reported_and_an_edit_retries() {
    let _serial = serial().lock().await;
    setup().await;
    let host = format!("too-big.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![host.clone()]);
    let op = start_operator("apps-fail", None).await;

    // More memory than the node has free (within the instance policy): Ganeti refuses.
    alice_files_and_admin_approves("too-big", 54, "30000Mi").await;
    let failed = wait_phase("apps-alice", "too-big", Phase::Failed, &op).await;
    let error = failed
        .status
        .clone()
        .unwrap()
        .ganeti_error
        .expect("Ganeti's error");
    assert_eq!(error.code.as_deref(), Some("insufficient_resources"), "{error:?}");
    assert!(
        error.message.contains("memory"),
        "Ganeti's own message: {error:?}"
    );
    wait_mail("alice@apps.example.org", &["creation failed", &host]).await;

    // alice cannot edit it: the approval was for 30000Mi, not for whatever she asks next.
    let refused = refusal(patch_spec("alice", "apps-alice", "too-big", json!({"memory": "128Mi"})).await);
    assert!(
        refused.contains("already decided") && refused.contains("file a new one"),
        "{refused}"
    );
    // An admin edits it and decides again: the new generation is tried.
    patch_spec(
        "admin",
        "apps-alice",
        "too-big",
        json!({"memory": "128Mi", "decision": {"verdict": "Approved", "reason": "128Mi is fine"}}),
    )
    .await
    .expect("an admin edits and approves again");
    let created = wait_phase("apps-alice", "too-big", Phase::Created, &op).await;
    let status = created.status.unwrap();
    assert_eq!(status.ganeti_error, None);
    assert_eq!(status.approved_generation, created.metadata.generation);
    let (ok, _) = try_gnt(&format!("gnt-instance list --no-headers -o name {host}"));
    assert!(ok);
}

/// Kills the operator at `point` while it handles an approved application, restarts
/// it, and checks that exactly one VM and one create job exist.
async fn crash_at(point: &str, name: &str, last_ip: u8) {
    let _serial = serial().lock().await;
    setup().await;
    let host = format!("{name}.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![host.clone()]);
    let jobs_before = create_jobs(&host);

    let mut crashing = start_operator(&format!("{name}-1"), Some(point)).await;
    alice_files_and_admin_approves(name, last_ip, "128Mi").await;
    let status = crashing.wait_exit(Duration::from_secs(120)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(fault::CRASH_EXIT_CODE),
        "the operator crashes at {point}\n{}",
        crashing.log()
    );

    let op = start_operator(&format!("{name}-2"), None).await;
    let created = wait_phase("apps-alice", name, Phase::Created, &op).await;
    assert_eq!(
        created.status.unwrap().instance_name.as_deref(),
        Some(host.as_str())
    );
    let (ok, list) = try_gnt(&format!("gnt-instance list --no-headers -o name {host}"));
    assert!(ok && list.lines().count() == 1, "{list}");
    assert_eq!(
        create_jobs(&host) - jobs_before,
        1,
        "one create job, never two\n{}",
        op.log()
    );
    wait_mail("alice@apps.example.org", &["is ready", &host]).await;
}

#[tokio::test]
async fn a_crash_after_the_decision_creates_exactly_one_vm() {
    crash_at(fault::points::AFTER_DECISION, "crash-decision", 55).await;
}

#[tokio::test]
async fn a_crash_after_the_create_call_creates_exactly_one_vm() {
    crash_at(fault::points::AFTER_CREATE_POST, "crash-post", 56).await;
}

#[tokio::test]
async fn a_crash_while_the_job_runs_creates_exactly_one_vm() {
    crash_at(fault::points::WHILE_JOB_RUNS, "crash-job", 57).await;
}

/// Two replicas: the leader is killed, the follower takes over within the lease
/// duration, and an application approved meanwhile is created exactly once.
#[tokio::test]
async fn the_follower_takes_over_from_a_killed_leader() {
    let _serial = serial().lock().await;
    setup().await;
    let host = format!("failover.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![host.clone()]);
    let jobs_before = create_jobs(&host);
    let leads = |op: &Operator| op.log().contains("leading: starting the controllers");

    let mut first = start_operator("failover-1", None).await;
    let mut waited = 0;
    while !leads(&first) {
        assert!(waited < 3000, "the first replica never led\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let second = start_operator("failover-2", None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!leads(&second), "two leaders at once\n{}", second.log());

    first.kill();
    let killed_at = std::time::Instant::now();
    alice_files_and_admin_approves("failover", 58, "128Mi").await;
    while !leads(&second) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the follower did not take over\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The lease is 5 s in these tests; renewals and retries add a little.
    assert!(
        killed_at.elapsed() < Duration::from_secs(12),
        "took over after {:?}",
        killed_at.elapsed()
    );
    let created = wait_phase("apps-alice", "failover", Phase::Created, &second).await;
    assert_eq!(
        created.status.unwrap().instance_name.as_deref(),
        Some(host.as_str())
    );
    assert_eq!(create_jobs(&host) - jobs_before, 1, "created exactly once");
}

/// `field` (a `gnt-instance list -o` field) of the instance `name`, as Ganeti has it.
fn ganeti_field(name: &str, field: &str) -> String {
    let (ok, out) = try_gnt(&format!("gnt-instance list --no-headers -o {field} {name}"));
    assert!(ok, "{name}: {out}");
    out.trim().to_string()
}

/// Waits until the application's condition `type_` has `reason` and a message
/// containing `text`.
async fn wait_condition(
    ns: &str,
    name: &str,
    (type_, reason, text): (&str, &str, &str),
    op: &Operator,
) -> InstanceApplication {
    let api: Api<InstanceApplication> = Api::namespaced(kube_client("root").await, ns);
    op.wait_for(&api, name, Duration::from_secs(180), |app| {
        app.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .is_some_and(|c| c.reason == reason && c.message.contains(text))
    })
    .await
}

/// Waits until the application's `Decided` condition has `reason`.
async fn wait_decided(ns: &str, name: &str, reason: &str, op: &Operator) -> InstanceApplication {
    wait_condition(ns, name, ("Decided", reason, ""), op).await
}

/// Attack 1 of issue 14: alice's approved application is pointed at bob's VM while it is
/// being created. The operator is killed at `point` so that the change lands before it
/// looks again: alice's own patch is refused at admission, an admin's (standing in for
/// a missing admission policy) goes through, and still the application records only the
/// VM its own job made (`Some(..)`), or nothing at all when no job was submitted yet.
async fn hostname_switch_at(point: &str, name: &str, last_ip: u8, bob_ip: u8) {
    let _serial = serial().lock().await;
    setup().await;
    let host = format!("{name}.{DOMAIN}");
    let bobs = format!("{name}-bob.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![host.clone()]);
    let _bob = ganeti::create_instances(
        &[(
            &bobs,
            &ip(bob_ip),
            vec!["GANETI_WEB_MANAGER:owner:U:bob".to_string()],
        )],
        "tests/testbed_applications: bob's VM",
    )
    .await;
    let bob_tags = ganeti_field(&bobs, "tags");
    let bob_uuid = ganeti_field(&bobs, "uuid");
    let jobs_before = create_jobs(&host);
    let bob_jobs = create_jobs(&bobs);

    let mut crashing = start_operator(&format!("{name}-1"), Some(point)).await;
    alice_files_and_admin_approves(name, last_ip, "128Mi").await;
    let exit = crashing.wait_exit(Duration::from_secs(120)).await;
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(fault::CRASH_EXIT_CODE),
        "{}",
        crashing.log()
    );

    let switch = json!({"hostname": bobs, "vcpus": 8});
    let refused = refusal(patch_spec("alice", "apps-alice", name, switch.clone()).await);
    assert!(
        refused.contains("already decided (Approved by admin)") && refused.contains("Delete it"),
        "{refused}"
    );
    patch_spec("admin", "apps-alice", name, switch)
        .await
        .expect("an admin may edit");

    let op = start_operator(&format!("{name}-2"), None).await;
    if point == fault::points::AFTER_DECISION {
        // No job was submitted before the change: the changed spec needs a decision.
        let app = wait_decided("apps-alice", name, "ChangedAfterApproval", &op).await;
        let status = app.status.unwrap();
        assert_eq!((status.phase, status.approved_generation), (Phase::Pending, None));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(create_jobs(&host), jobs_before, "nothing created\n{}", op.log());
        assert_eq!(create_jobs(&bobs), bob_jobs, "no create job for bob's name");
    } else {
        let created = wait_phase("apps-alice", name, Phase::Created, &op).await;
        let status = created.status.unwrap();
        assert_eq!(status.instance_name.as_deref(), Some(host.as_str()));
        let uuid = ganeti_field(&host, "uuid");
        assert_eq!(status.instance_uuid.as_deref(), Some(uuid.as_str()));
        assert_ne!(uuid, bob_uuid);
        assert_eq!(
            ganeti_field(&host, "be/vcpus"),
            "1",
            "created from the approved spec"
        );
        let tags = ganeti_field(&host, "tags");
        let marker = format!("GANETI_WEB_MANAGER:app:{}", created.metadata.uid.unwrap());
        assert!(tags.contains(&marker) && tags.contains("owner:U:alice"), "{tags}");
        assert_eq!(
            create_jobs(&host) - jobs_before,
            1,
            "one create job\n{}",
            op.log()
        );
    }
    // Bob's VM: untouched, also once the tag controller has seen the application.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(ganeti_field(&bobs, "tags"), bob_tags, "bob's VM keeps its tags");
    assert_eq!(ganeti_field(&bobs, "uuid"), bob_uuid);
}

#[tokio::test]
async fn a_hostname_switched_while_the_job_runs_does_not_take_another_vm() {
    hostname_switch_at(fault::points::WHILE_JOB_RUNS, "atk-job", 70, 71).await;
}

#[tokio::test]
async fn a_hostname_switched_before_the_job_was_recorded_does_not_take_another_vm() {
    hostname_switch_at(fault::points::AFTER_CREATE_POST, "atk-post", 72, 73).await;
}

#[tokio::test]
async fn a_spec_switched_before_the_create_call_needs_a_new_decision() {
    hostname_switch_at(fault::points::AFTER_DECISION, "atk-decision", 74, 75).await;
}

/// Attack 2 of issue 14: an approval that waits (name taken) is not reused for another,
/// bigger VM: alice cannot edit the spec, and an edit without a new decision (an admin's,
/// standing in for a missing admission policy) is not carried out.
#[tokio::test]
async fn an_approval_is_not_reused_for_a_bigger_vm() {
    let _serial = serial().lock().await;
    setup().await;
    let taken = format!("atk-taken.{DOMAIN}");
    let bigger = format!("atk-bigger.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![bigger.clone()]);
    let jobs_before = create_jobs(&bigger);
    let _existing = ganeti::create_instances(
        &[(
            &taken,
            &ip(76),
            vec!["GANETI_WEB_MANAGER:owner:U:bob".to_string()],
        )],
        "tests/testbed_applications: a taken name",
    )
    .await;
    let op = start_operator("apps-reuse", None).await;
    let mut body = application("atk-size", json!({"kind": "User", "name": "alice"}), 77, "128Mi");
    body["spec"]["hostname"] = json!(taken);
    file("alice", body).await.expect("alice files");
    decide("admin", "apps-alice", "atk-size", "Approved")
        .await
        .expect("admin approves");
    wait_condition(
        "apps-alice",
        "atk-size",
        ("Decided", "ApprovalWaiting", "already exists"),
        &op,
    )
    .await;

    let bigger_spec = json!({"hostname": bigger, "vcpus": 8, "memory": "3Gi"});
    let refused = refusal(patch_spec("alice", "apps-alice", "atk-size", bigger_spec.clone()).await);
    assert!(
        refused.contains("already decided") && refused.contains("cannot change"),
        "{refused}"
    );
    let edited = patch_spec("admin", "apps-alice", "atk-size", bigger_spec)
        .await
        .expect("an admin may edit");
    let app = wait_decided("apps-alice", "atk-size", "ChangedAfterApproval", &op).await;
    let status = app.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Pending);
    assert_eq!(status.approved_generation, None);
    assert_eq!(status.observed_generation, edited.metadata.generation);
    let (_, _, message) = condition(&app, "Decided");
    assert!(message.contains("decide again"), "{message}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (exists, _) = try_gnt(&format!("gnt-instance list --no-headers -o name {bigger}"));
    assert!(!exists, "no 8-vCPU VM\n{}", op.log());
    assert_eq!(create_jobs(&bigger), jobs_before, "no create job");
}

/// `system:authenticated` (everyone) and other reserved groups never own a VM, whoever
/// files the application.
#[tokio::test]
async fn reserved_groups_are_refused_as_owners() {
    setup().await;
    let owner = json!({"kind": "Group", "name": "system:authenticated"});
    let refused = refusal(file("alice", application("atk-everyone", owner.clone(), 78, "128Mi")).await);
    assert!(
        refused.contains("\"system:authenticated\" is reserved"),
        "{refused}"
    );
    let api: Api<InstanceApplication> = Api::namespaced(kube_client("admin").await, "apps-alice");
    let mut body = application("atk-everyone", owner, 78, "128Mi");
    body["spec"]["applicant"] = json!("admin");
    let refused = refusal(
        api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
            .await,
    );
    assert!(refused.contains("reserved"), "{refused}");
}

/// What an application may choose of the network is what the cluster offers: other
/// links and addresses wait, saying what is allowed, and nothing is created.
#[tokio::test]
async fn applications_get_only_the_network_the_cluster_offers() {
    let _serial = serial().lock().await;
    setup().await;
    let link_host = format!("atk-link.{DOMAIN}");
    let ip_host = format!("atk-ip.{DOMAIN}");
    let _cleanup = Instances::fresh(vec![link_host.clone(), ip_host.clone()]);
    // Ganeti's job list keeps older runs' jobs: only new ones count.
    let jobs_before = create_jobs(&link_host) + create_jobs(&ip_host);
    let op = start_operator("apps-network", None).await;
    let alice = json!({"kind": "User", "name": "alice"});

    let mut body = application("atk-link", alice.clone(), 79, "128Mi");
    body["spec"]["network"]["link"] = json!("br-dmz");
    file("alice", body).await.unwrap();
    decide("admin", "apps-alice", "atk-link", "Approved")
        .await
        .unwrap();
    let app = wait_condition(
        "apps-alice",
        "atk-link",
        ("Decided", "ApprovalWaiting", "br-dmz"),
        &op,
    )
    .await;
    assert_eq!(condition(&app, "Validated").1, "NicLinkNotAllowed");
    let (_, _, message) = condition(&app, "Decided");
    assert!(
        message.contains("br-dmz") && message.contains("allowed links: none"),
        "{message}"
    );

    let mut body = application("atk-ip", alice, 79, "128Mi");
    body["spec"]["network"]["ip"] = json!("192.0.2.79");
    file("alice", body).await.unwrap();
    decide("admin", "apps-alice", "atk-ip", "Approved").await.unwrap();
    let app = wait_condition(
        "apps-alice",
        "atk-ip",
        ("Decided", "ApprovalWaiting", "192.0.2.79"),
        &op,
    )
    .await;
    assert_eq!(condition(&app, "Validated").1, "IpNotAllowed");
    let (_, _, message) = condition(&app, "Decided");
    assert!(
        message.contains(&format!("allowed ranges: {}/24", ip(0))),
        "{message}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        create_jobs(&link_host) + create_jobs(&ip_host),
        jobs_before,
        "nothing created"
    );
}
