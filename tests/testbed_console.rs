//! The console endpoint's JSON API against the real testbed: bearer tokens reviewed by
//! the real API server, actions run as real Ganeti jobs, confirmation links mailed
//! through the real SMTP server, all through the operator binary.
//!
//! Instances are `console-*` on 198.51.100.65-72. Every replica serves the API (a
//! follower from its own read-only view of the clusters), so no test waits for the
//! leader Lease except for what only the leader does (application Events).

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::rapi::JobId;
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apply;
use support::ganeti::rapi;
use support::maildir;
use support::operator::{Operator, Options};
use support::testbed::{env, kube_client};

const CLUSTER: &str = "console-tb";
const SMTP_SECRET: &str = "console-smtp";
const ALICE_MAIL: &str = "alice@console.test";
const JOB_DEADLINE: Duration = Duration::from_secs(180);

/// Creates the `console-*` VMs `(name, ip, owner)`, removed again when dropped.
async fn create_instances(specs: &[(&str, &str, Subject)]) -> support::ganeti::Instances {
    let specs: Vec<(&str, &str, Vec<String>)> = specs
        .iter()
        .map(|(name, ip, owner)| {
            assert!(name.starts_with("console-"));
            (*name, *ip, vec![format_owner(DEFAULT_PREFIX, owner).unwrap()])
        })
        .collect();
    support::ganeti::create_instances(&specs, "tests/testbed_console").await
}

/// The GanetiCluster, SMTP settings, alice's verified profile and bindings that make
/// alice and bob plain users (the preconfigured `user` role: their own VMs), alice
/// with the operations of `console-operations` on hers too.
async fn setup() {
    let root = support::install_with_policies().await;
    maildir::apply_smtp_secret(&root, SMTP_SECRET, "Ganeti VM service <ganeti@console.test>").await;
    support::ganeti::apply_cluster(&root, CLUSTER, "console-rapi", json!({})).await;
    let roles: Api<ganeti_operator::api::Role> = Api::all(root.clone());
    apply(
        &roles,
        "console-operations",
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": "console-operations"},
            "spec": {"scope": {"kind": "Own"},
                     "vms": {"migrate": "allowed", "export": "allowed", "replaceDisks": "allowed"},
                     "clusters": {"migrate": "allowed", "export": "allowed", "replaceDisks": "allowed"}},
        }),
    )
    .await;
    // alice and bob are plain users; alice may also migrate, export and replace the
    // disks of her own VMs (the VM rights and the cluster rights of the same names).
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    for (name, role, users) in [
        ("console-users", "user", &["alice", "bob"][..]),
        ("console-operations", "console-operations", &["alice"][..]),
    ] {
        let subjects: Vec<Value> = users.iter().map(|u| json!({"kind": "User", "name": u})).collect();
        apply(
            &bindings,
            name,
            &json!({
                "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name},
                "spec": {"roleRef": role, "subjects": subjects},
            }),
        )
        .await;
    }
    // Other tests keep profiles of alice too; the endpoint mails the first verified one.
    maildir::apply_verified_profile(&root, "console-alice", "alice", ALICE_MAIL).await;
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token).await
    }
    async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(token)).await
    }
}

/// console-* VMs that `token`'s user sees on our cluster.
fn console_vms(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["cluster"] == CLUSTER)
        .filter_map(|i| i["name"].as_str())
        .filter(|n| n.starts_with("console-"))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The first test's VMs in a listing: the other tests of this file run at the same
/// time and give alice VMs of their own.
fn first_test_vms(list: &Value) -> Vec<String> {
    console_vms(list)
        .into_iter()
        .filter(|n| ["console-alice1", "console-alice2", "console-bob1"].contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn tokens_rights_actions_and_confirmed_destroy() {
    let (alice, bob) = (env("KUBE_TOKEN_ALICE"), env("KUBE_TOKEN_BOB"));
    setup().await;
    let _instances = create_instances(&[
        ("console-alice1", "198.51.100.65", Subject::user("alice")),
        ("console-alice2", "198.51.100.66", Subject::user("alice")),
        ("console-bob1", "198.51.100.67", Subject::user("bob")),
    ])
    .await;
    let op = Operator::start_with(
        "console",
        Options::default()
            .arg("--smtp-secret")
            .arg(SMTP_SECRET)
            .arg("--public-url")
            .arg("http://127.0.0.1:{port}")
            .arg("--refusal-mail-to")
            .arg("admins@console.test"),
    )
    .await;
    let http = Http {
        client: reqwest::Client::new(),
        base: op.url("/api/v1"),
    };

    // The OpenAPI document needs no token.
    let (status, doc) = http.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/instances"]["get"].is_object(), "{doc}");

    // No token, a bad token: 401, before anything else is looked at.
    let (status, body) = http.get("/instances", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = http.get("/instances", Some("not-a-token")).await;
    assert_eq!(status, 401);

    // Wait for a read that includes our VMs.
    let started = Instant::now();
    let listed = loop {
        let (status, body) = http.get("/instances", Some(&alice)).await;
        if status == 200 && first_test_vms(&body).len() >= 2 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "alice never saw her VMs: {status} {body}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("inventory served after {:?}", started.elapsed());
    assert_eq!(first_test_vms(&listed), ["console-alice1", "console-alice2"]);
    let vm = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["cluster"] == CLUSTER && i["name"] == "console-alice1")
        .unwrap();
    assert_eq!(vm["owner"], json!({"kind": "User", "name": "alice"}), "{vm}");
    assert_eq!(vm["ips"], json!(["198.51.100.65"]));
    let (status, bobs) = http.get("/instances", Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(first_test_vms(&bobs), ["console-bob1"]);

    // Details, and bad parameters.
    let (status, body) = http
        .get(&format!("/instances/{CLUSTER}/console-alice1"), Some(&alice))
        .await;
    assert_eq!((status, body["vcpus"].clone()), (200, json!(1)), "{body}");
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/explode"), &alice)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown action"));
    let (status, _) = http.get(&format!("/jobs/{CLUSTER}/x"), Some(&alice)).await;
    assert_eq!(status, 400);

    // bob may not reboot alice's VM, nor learn that it exists: the same 404 as for a VM
    // that does not exist; the audit line, an Event and a mail to the admins say why.
    let refusal = "Refused: bob reboot console-alice1";
    let refusals_before = maildir::with_subject(refusal).len();
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/reboot"), &bob)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"],
        format!("no VM console-alice1 on {CLUSTER}"),
        "{body}"
    );
    let (status, missing) = http
        .post(&format!("/instances/{CLUSTER}/console-nosuchvm/reboot"), &bob)
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], format!("no VM console-nosuchvm on {CLUSTER}"));
    let (status, shown) = http
        .get(&format!("/instances/{CLUSTER}/console-alice1"), Some(&bob))
        .await;
    assert_eq!((status, shown["error"].clone()), (404, body["error"].clone()));
    let mails = maildir::wait_for(refusal, refusals_before + 1, Duration::from_secs(30)).await;
    assert!(
        mails
            .iter()
            .any(|m| m.to() == "admins@console.test" && m.body.contains("vms.view")),
        "no refusal mail to the admins\n{}",
        op.log()
    );
    // Refusal mails are throttled per user and VM: a second attempt is not mailed.
    let (status, _) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/reboot"), &bob)
        .await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        maildir::with_subject(refusal).len(),
        refusals_before + 1,
        "a repeated refusal was mailed again"
    );

    // alice reboots it: a job that succeeds in Ganeti, followed through the API.
    let t = Instant::now();
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/reboot"), &alice)
        .await;
    assert_eq!(status, 200, "{body}");
    println!("reboot submitted in {:?}", t.elapsed());
    let job = body["job"].as_u64().expect("job id");
    let deadline = Instant::now() + JOB_DEADLINE;
    let final_job = loop {
        let (status, body) = http.get(&format!("/jobs/{CLUSTER}/{job}"), Some(&alice)).await;
        assert_eq!(status, 200, "{body}");
        if body["final"] == true {
            break body;
        }
        assert!(Instant::now() < deadline, "job {job} never finished: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(final_job["status"], "success", "{final_job}");
    let ganeti_job = rapi().job(JobId(job)).await.unwrap();
    assert!(
        ganeti_job.summary.iter().any(|s| s.contains("REBOOT")),
        "{:?}",
        ganeti_job.summary
    );
    // bob may not follow alice's job.
    let (status, _) = http.get(&format!("/jobs/{CLUSTER}/{job}"), Some(&bob)).await;
    assert_eq!(status, 403);

    // destroy: 202 and a mail with a link; the link removes the VM; again: 410.
    let before = maildir::with_subject("Confirm: destroy console-alice2").len();
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice2/destroy"), &alice)
        .await;
    assert_eq!(status, 202, "{body}");
    let mails = maildir::wait_for(
        "Confirm: destroy console-alice2",
        before + 1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(mails.len(), before + 1, "no confirmation mail\n{}", op.log());
    // Other tests keep verified profiles of alice too: any of her addresses will do.
    let mail = mails
        .iter()
        .find(|m| m.body.contains(&format!("127.0.0.1:{}", op.port)))
        .expect("the mail of this run");
    assert!(mail.to().starts_with("alice"), "mailed to {}", mail.to());
    let link = mail
        .body
        .lines()
        .find(|l| l.starts_with("http://"))
        .expect("a link in the mail")
        .trim()
        .to_string();
    let token = link.split_once("token=").unwrap().1.to_string();
    let form = reqwest::Client::new();
    let page = form.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200, "GET only shows the button");
    assert!(
        rapi().instance("console-alice2").await.is_ok(),
        "GET must not destroy"
    );
    let confirmed = form
        .post(op.url("/api/v1/confirm"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let status = confirmed.status().as_u16();
    let html = confirmed.text().await.unwrap();
    assert_eq!(status, 200, "{html}\n{}", op.log());
    let job: u64 = html
        .split("<span id=\"job\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|j| j.parse().ok())
        .expect("job id on the page");
    rapi()
        .wait_job(JobId(job), JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .expect("removal succeeded");
    assert!(rapi().instance("console-alice2").await.is_err(), "the VM is gone");
    let again = form
        .post(op.url("/api/v1/confirm"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 410);

    // A locked VM refuses its owner (ganetimgr's admin lock, read from Ganeti's tags).
    let c = rapi();
    let tagged = c
        .add_instance_tags(
            "console-alice1",
            &["ganetimgr:adminlock"],
            "tests/testbed_console",
        )
        .await
        .unwrap();
    c.wait_job(tagged, JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http
            .get(&format!("/instances/{CLUSTER}/console-alice1"), Some(&alice))
            .await;
        if body["locked"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock never reached the inventory: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/shutdown"), &alice)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("vms.shutdown"), "{body}");

    // The rate limit: a burst of 10 actions (bob spent one, perhaps refilled since),
    // then 429, whatever the action would have answered.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            http.post(&format!("/instances/{CLUSTER}/console-nowhere/startup"), &bob)
                .await
                .0,
        );
    }
    let passed = statuses.iter().take_while(|s| **s == 404).count();
    assert!((6..=10).contains(&passed), "{statuses:?}");
    assert!(statuses[passed..].iter().all(|s| *s == 429), "{statuses:?}");

    // Figures: a listing (TokenReview cached, roles and bindings read, decisions made).
    let mut took: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (status, _) = http.get("/instances", Some(&alice)).await;
        assert_eq!(status, 200);
        took.push(t.elapsed());
    }
    took.sort();
    println!("GET /instances x20: p50 {:?}, max {:?}", took[10], took[19]);
    let metrics = op.metrics().await;
    assert!(
        metrics.contains("/instances/{cluster}/{name}/{action}"),
        "API requests are counted by route:\n{metrics}"
    );

    // The audit trail: lines for the refusal and the successes, and Events.
    let log = op.log();
    let audit: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    let refused = audit
        .iter()
        .find(|l| l["user"] == "bob" && l["action"] == "reboot" && l["allowed"] == false)
        .unwrap_or_else(|| panic!("no audit line for bob's refusal:\n{log}"));
    assert_eq!(refused["vm"], "console-alice1");
    assert_eq!(refused["source"], "127.0.0.1");
    assert!(
        refused["reason"].as_str().unwrap().contains("vms.view"),
        "{refused}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["user"] == "alice" && l["action"] == "reboot" && l["job"] == final_job["id"]),
        "no audit line with the reboot's job:\n{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "destroy" && l["allowed"] == true)
    );
    let events: Api<Event> = Api::namespaced(kube_client("root").await, "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("VmActionRefused")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(CLUSTER)
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("bob reboot console-alice1"))
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no Event for bob's refusal");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Another test stops ganeti-rapi for a while (testbed_cluster): an answer that says
/// so is worth another try, and nothing was submitted when the connection was refused.
fn rapi_was_down(status: u16, body: &Value) -> bool {
    status == 502
        && body["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused"))
}

impl Http {
    /// POST with a JSON body; tried again while ganeti-rapi is down.
    async fn post_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let resp = self
                .client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("request sent");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if !rapi_was_down(status, &answer) || Instant::now() > deadline {
                return (status, answer);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Submits an action (200 expected) and follows its job until it is final: the job
    /// id and its last `GET /jobs` answer.
    async fn run_job(&self, path: &str, token: &str, body: Value) -> (u64, Value) {
        let (status, answer) = self.post_json(path, token, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let job = answer["job"].as_u64().expect("job id");
        (job, self.final_job(job, token).await)
    }

    /// Polls `GET /jobs/{CLUSTER}/{job}` as `token`'s user until the job is final.
    async fn final_job(&self, job: u64, token: &str) -> Value {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let (status, body) = self.get(&format!("/jobs/{CLUSTER}/{job}"), Some(token)).await;
            if rapi_was_down(status, &body) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            assert_eq!(status, 200, "{body}");
            if body["final"] == true {
                return body;
            }
            assert!(Instant::now() < deadline, "job {job} never finished: {body}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls `GET /instances` as `token`'s user until `vm` is in it (the first read of a
    /// replica, or a new VM's first sync); how long that took.
    async fn wait_listed(&self, token: &str, vm: &str, op: &Operator) -> Duration {
        let started = Instant::now();
        loop {
            let (status, body) = self.get("/instances", Some(token)).await;
            if status == 200 && console_vms(&body).iter().any(|n| n == vm) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{vm} never listed: {status} {body}\n{}",
                op.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Files an application as `user` in their namespace `console-<user>` (an older one of
/// the name is deleted first) and has admin reject it: the controller's Events.
async fn file_and_reject(user: &str, name: &str) {
    let ns = format!("console-{user}");
    let root: Api<ganeti_operator::api::InstanceApplication> =
        Api::namespaced(kube_client("root").await, &ns);
    support::delete_and_wait(&root, name).await;
    let mine: Api<ganeti_operator::api::InstanceApplication> = Api::namespaced(kube_client(user).await, &ns);
    let app = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication", "metadata": {"name": name},
        "spec": {"cluster": CLUSTER, "hostname": format!("{name}.console.test"), "vcpus": 1, "memory": "128Mi",
                 "disks": [{"size": "1Gi"}], "owner": {"kind": "User", "name": user}, "purpose": "timeline test"},
    });
    mine.create(&Default::default(), &serde_json::from_value(app).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{user} files {name}: {e}"));
    let admin: Api<ganeti_operator::api::InstanceApplication> =
        Api::namespaced(kube_client("admin").await, &ns);
    admin
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Rejected", "reason": "timeline test"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("admin rejects {name}: {e}"));
}

#[tokio::test]
async fn migrate_export_replace_disks_and_the_timeline() {
    let (alice, bob) = (env("KUBE_TOKEN_ALICE"), env("KUBE_TOKEN_BOB"));
    setup().await;
    support::applicant_namespaces("console", &["alice", "bob"]);
    let _instances = create_instances(&[
        ("console-alice3", "198.51.100.68", Subject::user("alice")),
        ("console-bob2", "198.51.100.69", Subject::user("bob")),
    ])
    .await;
    let op = Operator::start("console-more").await;
    let http = Http {
        client: reqwest::Client::new(),
        base: op.url("/api/v1"),
    };
    let vm = "console-alice3";
    println!("listed after {:?}", http.wait_listed(&alice, vm, &op).await);
    let act = |action: &str| format!("/instances/{CLUSTER}/{vm}/{action}");

    // Bad parameters: 400 with what is wrong, before anything is submitted.
    let node2 = env("GANETI_NODE2");
    for (action, body, says) in [
        ("migrate", json!({"mode": "teleport"}), "live, non-live"),
        (
            "migrate",
            json!({"remoteNode": node2}),
            "migrate takes no remoteNode",
        ),
        (
            "replace-disks",
            json!({"mode": "replace_new_secondary"}),
            "needs remoteNode or iallocator",
        ),
        ("replace-disks", json!({"disks": [0]}), "give no disks"),
        ("export", json!({}), "needs targetNode"),
        (
            "export",
            json!({"targetNode": node2, "removeInstance": true}),
            "destroy",
        ),
        (
            "export",
            json!({"targetNode": node2, "mode": "remote"}),
            "only local",
        ),
    ] {
        let (status, body) = http.post_json(&act(action), &alice, body).await;
        assert_eq!(status, 400, "{action}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{action}: {body}");
    }
    // bob may not migrate alice's VM, and is not told it exists.
    let (status, body) = http
        .post_json(&act("migrate"), &bob, json!({"targetNode": node2}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("no VM "), "{body}");

    // migrate: a diskless VM on the fake hypervisor moves to the named node.
    let (migrate_job, migrated) = http
        .run_job(
            &act("migrate"),
            &alice,
            json!({"mode": "non-live", "targetNode": node2}),
        )
        .await;
    let ganeti_job = rapi().job(JobId(migrate_job)).await.unwrap();
    assert!(
        ganeti_job
            .user_reasons()
            .any(|r| r == "ganeti-operator console endpoint: migrate by alice"),
        "{ganeti_job:?}"
    );
    if migrated["status"] == "success" {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = http
                .get(&format!("/instances/{CLUSTER}/{vm}"), Some(&alice))
                .await;
            if body["primaryNode"] == node2.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "never shown on {node2}: {body}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    } else {
        // Only another test draining node2 meanwhile may stop it.
        let failure = migrated["failure"].as_str().unwrap_or_default();
        assert!(
            failure.contains("drained") || failure.contains("offline"),
            "{migrated}"
        );
    }

    // export: Ganeti fails it on this testbed (a diskless VM leaves nothing to export);
    // its error comes back through GET /jobs as Ganeti reports it.
    let (export_job, exported) = http
        .run_job(
            &act("export"),
            &alice,
            json!({"targetNode": env("GANETI_NODE"), "shutdown": false}),
        )
        .await;
    let ganeti_job = rapi().job(JobId(export_job)).await.unwrap();
    assert!(
        ganeti_job.summary.iter().any(|s| s.starts_with("BACKUP_EXPORT")),
        "{ganeti_job:?}"
    );
    assert_eq!(exported["status"], "error", "{exported}");
    assert_eq!(
        exported["failure"].as_str(),
        ganeti_job.failure().map(|f| f.to_string()).as_deref(),
        "{exported}"
    );
    assert!(
        exported["failure"].as_str().unwrap().contains("Export failed"),
        "{exported}"
    );

    // replace-disks: submitted as asked; Ganeti refuses it for a VM without mirrored disks.
    let (_, replaced) = http
        .run_job(
            &act("replace-disks"),
            &alice,
            json!({"mode": "replace_on_secondary"}),
        )
        .await;
    assert_eq!(replaced["status"], "error", "{replaced}");
    assert!(
        replaced["summary"][0]
            .as_str()
            .unwrap()
            .starts_with("INSTANCE_REPLACE_DISKS")
    );

    // The timeline: alice's reboot, bob's reboot of his own VM, and an application each.
    let (status, body) = http.post_json(&act("reboot"), &alice, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let reboot_job = body["job"].as_u64().unwrap();
    let (status, body) = http
        .post_json(
            &format!("/instances/{CLUSTER}/console-bob2/reboot"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    file_and_reject("alice", "console-app-alice").await;
    file_and_reject("bob", "console-app-bob").await;
    let is_app = |e: &Value, ns: &str, name: &str| {
        e["application"] == json!({"namespace": ns, "name": name}) && e["reason"] == "Rejected"
    };
    // The application Events come from whichever operator leads: generous.
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(300);
    let (alices, bobs) = loop {
        let (status, a) = http.get("/events", Some(&alice)).await;
        assert_eq!(status, 200, "{a}");
        let (status, b) = http.get("/events", Some(&bob)).await;
        assert_eq!(status, 200, "{b}");
        let has = |list: &Value, f: &dyn Fn(&Value) -> bool| list["events"].as_array().unwrap().iter().any(f);
        if has(&a, &|e| e["job"] == reboot_job)
            && has(&a, &|e| is_app(e, "console-alice", "console-app-alice"))
            && has(&b, &|e| is_app(e, "console-bob", "console-app-bob"))
            && has(&b, &|e| e["instance"] == "console-bob2")
        {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "timeline incomplete:\nalice {a:#}\nbob {b:#}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("timeline complete after {:?}", waited.elapsed());
    let events = alices["events"].as_array().unwrap();
    let reboot = events.iter().find(|e| e["job"] == reboot_job).unwrap();
    assert_eq!(
        (
            &reboot["source"],
            &reboot["cluster"],
            &reboot["instance"],
            &reboot["action"],
            &reboot["user"]
        ),
        (
            &json!("vmAction"),
            &json!(CLUSTER),
            &json!(vm),
            &json!("reboot"),
            &json!("alice")
        ),
        "{reboot}"
    );
    // Her migrate and bob's refused one are on her VM too; nothing of bob's own.
    assert!(
        events
            .iter()
            .any(|e| e["job"] == migrate_job && e["action"] == "migrate")
    );
    assert!(
        events
            .iter()
            .any(|e| e["user"] == "bob" && e["instance"] == vm && e["reason"] == "VmActionRefused")
    );
    for e in events {
        assert_ne!(e["instance"], "console-bob2", "bob's VM in alice's timeline: {e}");
        assert_ne!(
            e["application"]["namespace"], "console-bob",
            "bob's application: {e}"
        );
    }
    assert!(
        bobs["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["application"]["namespace"] != "console-alice" && e["job"] != reboot_job),
        "{bobs:#}"
    );
    // Newest first.
    let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Bounds and bad parameters.
    let (status, one) = http.get("/events?limit=1", Some(&alice)).await;
    assert_eq!(
        (status, one["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{one}"
    );
    assert_eq!(one["events"][0], events[0]);
    for bad in ["limit=0", "limit=501", "limit=x", "limt=3"] {
        let (status, body) = http.get(&format!("/events?{bad}"), Some(&alice)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = http.get("/events", None).await;
    assert_eq!(status, 401);
}

/// Two replicas: whichever does not lead serves the API from its own read-only view of
/// the clusters, and lets alice follow a job she submitted through the other one.
#[tokio::test]
async fn every_replica_serves_the_api() {
    let (alice, bob) = (env("KUBE_TOKEN_ALICE"), env("KUBE_TOKEN_BOB"));
    setup().await;
    let vm = "console-alice4";
    let _instances = create_instances(&[(vm, "198.51.100.70", Subject::user("alice"))]).await;
    let options = Options::default().arg("--lease-duration-seconds").arg("5");
    let ops = [
        Operator::start_with("console-replica-1", options.clone()).await,
        Operator::start_with("console-replica-2", options).await,
    ];
    let http: Vec<Http> = ops
        .iter()
        .map(|op| Http {
            client: reqwest::Client::new(),
            base: op.url("/api/v1"),
        })
        .collect();
    for (h, op) in http.iter().zip(&ops) {
        println!(
            "{} lists alice's VM after {:?}",
            op.port,
            h.wait_listed(&alice, vm, op).await
        );
    }
    let leads = |op: &Operator| op.log().contains("leading: starting the controllers");
    // One Lease: wait until one of the two leads, so the other stays a follower for the
    // rest of the test (while another test's operator leads, both follow, and either
    // may take over when that one stops).
    let started = Instant::now();
    let leader = loop {
        if let Some(i) = ops.iter().position(&leads) {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "neither replica ever led"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let follower = 1 - leader;
    assert!(!leads(&ops[follower]), "two leaders at once");
    let (f, other) = (&http[follower], &http[1 - follower]);
    let fop = &ops[follower];
    let (status, body) = f.get("/instances", Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        console_vms(&body).iter().filter(|n| *n == vm).count(),
        1,
        "{body}"
    );
    let (status, body) = f.get(&format!("/instances/{CLUSTER}/{vm}"), Some(&bob)).await;
    assert_eq!(status, 404, "bob may not know alice's VM exists: {body}");

    // A job submitted through the other replica, followed on the follower.
    let (status, body) = other
        .post_json(&format!("/instances/{CLUSTER}/{vm}/reboot"), &alice, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let job = body["job"].as_u64().unwrap();
    let done = f.final_job(job, &alice).await;
    assert_eq!(done["status"], "success", "{done}");
    let (status, body) = f.get(&format!("/jobs/{CLUSTER}/{job}"), Some(&bob)).await;
    assert_eq!(status, 403, "bob follows alice's job: {body}");

    // The follower wrote nothing and exports no inventory series (the leader's count).
    let metrics = fop.metrics().await;
    assert!(
        !leads(fop),
        "the follower led meanwhile: the test proves nothing\n{}",
        fop.log()
    );
    assert!(metrics.contains("ganeti_operator_leading 0\n"), "{metrics}");
    assert!(!metrics.contains("ganeti_instance_up{"), "{metrics}");
    assert!(
        !metrics.contains("ganeti_operator_status_writes_total{controller=\"ganeticluster\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ganeti_operator_reconciles_total{controller=\"ganeticluster-follower\"}"),
        "{metrics}"
    );
}
