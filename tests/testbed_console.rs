//! The console endpoint's JSON API against the real testbed: bearer tokens reviewed by
//! the real API server, actions run as real Ganeti jobs, confirmation links mailed
//! through the real SMTP server, all through the operator binary.
//!
//! Instances are `console-*` on 198.51.100.65-72. The operator serves the API with the
//! leader's inventory, so the test waits until this operator holds the lease.

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::rapi::{
    BeParams, Credentials, InstanceCreate, JobId, NicSpec, RapiClient, RapiConfig, TlsMode,
};
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};
use support::crds::install_crds;
use support::maildir;
use support::operator::{Operator, Options};
use support::testbed::{env, kube_client};

const MANAGER: &str = "ganeti-operator-tests";
const CLUSTER: &str = "console-tb";
const NS: &str = "ganeti-system";
const SMTP_SECRET: &str = "console-smtp";
const ALICE_MAIL: &str = "alice@console.test";
const JOB_DEADLINE: Duration = Duration::from_secs(180);

async fn apply<K>(api: &Api<K>, name: &str, obj: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

fn rapi() -> RapiClient {
    let ca = std::fs::read(env("GANETI_RAPI_CA")).unwrap();
    RapiClient::new(RapiConfig::new(
        env("GANETI_RAPI_URL"),
        Credentials::new(env("GANETI_RAPI_USER"), env("GANETI_RAPI_PASSWORD")),
        TlsMode::CaBundle(ca),
    ))
    .unwrap()
}

fn gnt_remove(name: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} gnt-instance remove -f {name} >/dev/null 2>&1",
            env("GANETI_EXEC")
        ))
        .status();
}

/// Removes the instances when dropped, also when the test failed.
struct Instances(Vec<String>);

impl Drop for Instances {
    fn drop(&mut self) {
        for name in &self.0 {
            gnt_remove(name);
        }
    }
}

async fn create_instances(specs: &[(&str, &str, Subject)]) -> Instances {
    let c = rapi();
    let guard = Instances(specs.iter().map(|(n, _, _)| n.to_string()).collect());
    let mut jobs = Vec::new();
    for (name, ip, owner) in specs {
        assert!(name.starts_with("console-"));
        gnt_remove(name);
        let mut req = InstanceCreate::new(*name, "diskless");
        req.os_type = Some(env("GANETI_OS"));
        req.hypervisor = Some(env("GANETI_HYPERVISOR"));
        req.pnode = Some(env("GANETI_NODE"));
        req.nics.push(NicSpec {
            ip: Some(ip.to_string()),
            ..Default::default()
        });
        req.beparams = BeParams {
            vcpus: Some(1),
            maxmem: Some(128),
            minmem: Some(128),
        };
        req.tags = vec![format_owner(DEFAULT_PREFIX, owner).unwrap()];
        jobs.push(
            c.create_instance(&req, "tests/testbed_console")
                .await
                .expect("create accepted"),
        );
    }
    for job in jobs {
        c.wait_job(job, JOB_DEADLINE)
            .await
            .expect("job wait")
            .into_success()
            .expect("instance created");
    }
    guard
}

/// The GanetiCluster, SMTP settings, alice's verified profile and a binding that makes
/// alice and bob plain users (the preconfigured `user` role: their own VMs).
async fn setup() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    for f in ["manifests/access.yaml", "manifests/admission.yaml"] {
        support::apply_manifest(f);
    }
    let secrets: Api<Secret> = Api::namespaced(root.clone(), NS);
    apply(
        &secrets,
        SMTP_SECRET,
        &json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SMTP_SECRET, "namespace": NS},
            "stringData": {
                "host": env("SMTP_HOST"), "port": env("SMTP_PORT"), "tls": "none",
                "from": "Ganeti VM service <ganeti@console.test>",
            },
        }),
    )
    .await;
    apply(
        &secrets,
        "console-rapi",
        &json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "console-rapi", "namespace": NS},
            "stringData": {"username": env("GANETI_RAPI_USER"), "password": env("GANETI_RAPI_PASSWORD")},
        }),
    )
    .await;
    let clusters: Api<ganeti_operator::api::GanetiCluster> = Api::all(root.clone());
    apply(
        &clusters,
        CLUSTER,
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": CLUSTER},
            "spec": {
                "rapiUrl": env("GANETI_RAPI_URL"), "credentialsSecret": {"name": "console-rapi"},
                "caBundle": std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap(), "syncInterval": "5s",
            },
        }),
    )
    .await;
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    apply(
        &bindings,
        "console-users",
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "console-users"},
            "spec": {"roleRef": "user", "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]},
        }),
    )
    .await;
    // Other tests keep profiles of alice too; the endpoint mails the first verified one.
    let profiles: Api<ganeti_operator::api::UserProfile> = Api::all(root.clone());
    let name = "console-alice";
    apply(
        &profiles,
        name,
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
            "spec": {"username": "alice", "fullName": "Alice", "email": ALICE_MAIL, "groups": []},
        }),
    )
    .await;
    profiles
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&json!({
                "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
                "status": {"verifiedEmail": ALICE_MAIL},
            })),
        )
        .await
        .unwrap();
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

    // Wait for the lease and a read that includes our VMs.
    let started = Instant::now();
    let listed = loop {
        let (status, body) = http.get("/instances", Some(&alice)).await;
        if status == 200 && console_vms(&body).len() >= 2 {
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
    assert_eq!(console_vms(&listed), ["console-alice1", "console-alice2"]);
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
    assert_eq!(console_vms(&bobs), ["console-bob1"]);

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

    // bob may not reboot alice's VM: 403 naming the right, an audit line, an Event,
    // and a mail to the admins.
    let refusal = "Refused: bob reboot console-alice1";
    let refusals_before = maildir::with_subject(refusal).len();
    let (status, body) = http
        .post(&format!("/instances/{CLUSTER}/console-alice1/reboot"), &bob)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("vms.reboot"), "{body}");
    let mails = maildir::wait_for(refusal, refusals_before + 1, Duration::from_secs(30)).await;
    assert!(
        mails
            .iter()
            .any(|m| m.to() == "admins@console.test" && m.body.contains("vms.reboot")),
        "no refusal mail to the admins\n{}",
        op.log()
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
    assert!((9..=10).contains(&passed), "{statuses:?}");
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
    assert!(refused["reason"].as_str().unwrap().contains("vms.reboot"));
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
