//! Attacks on "you act on your VMs and nobody else's", against the real testbed: a VM
//! is its Ganeti UUID, not its name. Each test reproduces an attack a plain user (or a
//! race with an admin) could mount on the user API, the confirmation links or the
//! console, and shows it refused with a reason and nothing changed in Ganeti.
//!
//! Instances are `trust-*` on 198.51.100.200-209.

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::rapi::{JobId, RapiError, RebootType, Target};
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use kube::api::Api;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apply;
use support::ganeti::{gnt, rapi};
use support::maildir;
use support::operator::{Operator, Options};
use support::testbed::env;

const CLUSTER: &str = "trust-tb";
const SMTP_SECRET: &str = "trust-smtp";
const ALICE_MAIL: &str = "alice@trust.test";
const LINK_KEY: &str = "testbed-trust-link-key-0123456789abcdef0123";
const JOB_DEADLINE: Duration = Duration::from_secs(180);

fn owner(user: &str) -> Vec<String> {
    vec![format_owner(DEFAULT_PREFIX, &Subject::user(user)).unwrap()]
}

/// The cluster, mail settings, alice's verified profile, and alice and bob as plain
/// users (the preconfigured `user` role: their own VMs).
async fn setup() {
    let root = support::install_with_policies().await;
    maildir::apply_smtp_secret(&root, SMTP_SECRET, "Ganeti VM service <ganeti@trust.test>").await;
    support::ganeti::apply_cluster(&root, CLUSTER, "trust-rapi", json!({})).await;
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    apply(
        &bindings,
        "trust-users",
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "trust-users"},
            "spec": {"roleRef": "user", "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]},
        }),
    )
    .await;
    // Other tests keep profiles of alice too; the endpoint mails the first verified one.
    maildir::apply_verified_profile(&root, "trust-alice", "alice", ALICE_MAIL).await;
}

async fn operator(name: &str) -> Operator {
    Operator::start_with(
        name,
        Options::default()
            .arg("--smtp-secret")
            .arg(SMTP_SECRET)
            .arg("--public-url")
            .arg("http://127.0.0.1:{port}")
            .env("LINK_KEY", LINK_KEY),
    )
    .await
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(op: &Operator) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: op.url("/api/v1"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn act(&self, vm: &str, action: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/instances/{CLUSTER}/{vm}/{action}"),
            token,
            body,
        )
        .await
    }

    /// Waits until `token`'s user sees `vm` (the replica has read the cluster).
    async fn wait_listed(&self, token: &str, vm: &str, op: &Operator) {
        let started = Instant::now();
        loop {
            let (status, body) = self.call(reqwest::Method::GET, "/instances", token, None).await;
            let seen = status == 200
                && body["instances"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|i| i["cluster"] == CLUSTER && i["name"] == vm));
            if seen {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{vm} never listed: {status} {body}\n{}",
                op.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn uuid_of(name: &str) -> String {
    gnt(&format!("gnt-instance list --no-headers -o uuid {name}"))
        .trim()
        .to_string()
}

/// An admin's rename (Ganeti renames only stopped instances).
fn rename(from: &str, to: &str) {
    let (ok, out) = support::ganeti::try_gnt(&format!("gnt-instance shutdown --timeout=0 {from}"));
    assert!(ok, "shutting {from} down: {out}");
    gnt(&format!(
        "gnt-instance rename -f --no-ip-check --no-name-check {from} {to}"
    ));
}

/// Asks for a fatal action and returns the link from the mail.
async fn mailed_link(
    http: &Http,
    op: &Operator,
    vm: &str,
    action: &str,
    body: Option<Value>,
    subject: &str,
) -> String {
    // The mails of earlier runs and earlier steps (the maildir has no order): the new
    // one is the one not among them.
    let before: Vec<String> = maildir::with_subject(subject)
        .into_iter()
        .map(|m| m.body)
        .collect();
    let (status, answer) = http.act(vm, action, &env("KUBE_TOKEN_ALICE"), body).await;
    assert_eq!(status, 202, "{action} {vm}: {answer}\n{}", op.log());
    let mails = maildir::wait_for(subject, before.len() + 1, Duration::from_secs(30)).await;
    let mail = mails
        .iter()
        .find(|m| !before.contains(&m.body) && m.body.contains(&format!("127.0.0.1:{}", op.port)))
        .unwrap_or_else(|| panic!("no new mail {subject:?}\n{}", op.log()));
    assert!(
        mail.body.contains(&answer["uuid"].as_str().unwrap().to_string()),
        "the mail names the UUID"
    );
    mail.body
        .lines()
        .find(|l| l.starts_with("http://"))
        .expect("a link in the mail")
        .trim()
        .to_string()
}

/// Follows a link (on any replica: `base` is that replica's URL): status and page.
async fn follow(base: &str, link: &str) -> (u16, String) {
    let token = link.split_once("token=").unwrap().1;
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/confirm"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn job_on_page(page: &str) -> JobId {
    JobId(
        page.split("<span id=\"job\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .and_then(|j| j.parse().ok())
            .unwrap_or_else(|| panic!("no job id on the page: {page}")),
    )
}

/// A destroy link for alice's VM, followed after an admin renamed it away and gave its
/// name to bob's VM (a rename race; the same as a destroy and a reuse of the name), on a
/// second replica: refused, and bob's VM untouched. Then rename and reinstall, confirmed
/// by mail, on the pinned UUID; a rename to a short form of another VM's name, and an
/// action on such a short form, refused.
#[tokio::test]
async fn links_act_on_the_vm_they_were_mailed_for() {
    let alice = env("KUBE_TOKEN_ALICE");
    setup().await;
    let _vms = support::ganeti::create_instances(
        &[
            ("trust-a1", "198.51.100.200", owner("alice")),
            ("trust-b1", "198.51.100.201", owner("bob")),
            ("trust-bobdb.example", "198.51.100.202", owner("bob")),
        ],
        "tests/testbed_trust",
    )
    .await;
    // Names the VMs may take during the test, removed at the end too.
    let _renamed = support::ganeti::Instances(vec!["trust-a1-moved".into(), "trust-a2".into()]);
    let (a1, b1) = (uuid_of("trust-a1"), uuid_of("trust-b1"));
    let ops = [operator("trust-1").await, operator("trust-2").await];
    let http: Vec<Http> = ops.iter().map(Http::new).collect();
    for (h, op) in http.iter().zip(&ops) {
        h.wait_listed(&alice, "trust-a1", op).await;
    }

    // The attack: a destroy link for trust-a1, then the name moves to bob's VM.
    let link = mailed_link(
        &http[0],
        &ops[0],
        "trust-a1",
        "destroy",
        None,
        "Confirm: destroy trust-a1",
    )
    .await;
    assert!(link.contains(&format!("127.0.0.1:{}", ops[0].port)));
    rename("trust-a1", "trust-a1-moved");
    rename("trust-b1", "trust-a1");
    let (status, page) = follow(&ops[1].url(""), &link).await;
    assert_eq!(
        status,
        404,
        "followed on the second replica: {page}\n{}",
        ops[1].log()
    );
    assert!(page.contains("no VM trust-a1"), "{page}");
    assert_eq!(uuid_of("trust-a1"), b1, "bob's VM is untouched");
    assert_eq!(uuid_of("trust-a1-moved"), a1, "alice's VM is untouched too");
    // The refusal is for good: the link is spent.
    let (status, _) = follow(&ops[0].url(""), &link).await;
    assert_eq!(status, 410);
    // The same attempt where the name went to another VM of alice's: 409, saying why.
    rename("trust-a1", "trust-b1");
    rename("trust-a1-moved", "trust-a1");
    let link = mailed_link(
        &http[0],
        &ops[0],
        "trust-a1",
        "destroy",
        None,
        "Confirm: destroy trust-a1",
    )
    .await;
    rename("trust-a1", "trust-a1-moved");
    let _alices_other = support::ganeti::create_instances(
        &[("trust-a1", "198.51.100.203", owner("alice"))],
        "tests/testbed_trust",
    )
    .await;
    let (status, page) = follow(&ops[1].url(""), &link).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("no longer the VM"), "{page}");
    assert!(rapi().instance("trust-a1").await.is_ok() && rapi().instance("trust-a1-moved").await.is_ok());

    // rename, confirmed by mail, on the pinned UUID, through the other replica.
    let link = mailed_link(
        &http[0],
        &ops[0],
        "trust-a1-moved",
        "rename",
        Some(json!({"newName": "trust-a2"})),
        "Confirm: rename trust-a1-moved to trust-a2",
    )
    .await;
    let (status, page) = follow(&ops[1].url(""), &link).await;
    assert_eq!(status, 200, "{page}\n{}", ops[1].log());
    rapi()
        .wait_job(job_on_page(&page), JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .expect("the rename ran");
    assert_eq!(uuid_of("trust-a2"), a1, "the same VM, renamed");

    // reinstall, confirmed by mail (on a VM with a disk: Ganeti reinstalls no
    // diskless VM).
    let mut req = support::ganeti::instance_request("trust-e1", "198.51.100.208");
    req.disk_template = "file".into();
    req.disks.push(ganeti_operator::rapi::DiskSpec {
        size: 1024,
        ..Default::default()
    });
    req.tags = owner("alice");
    let _with_disk = support::ganeti::Instances::fresh(vec!["trust-e1".into()]);
    let job = rapi().create_instance(&req, "tests/testbed_trust").await.unwrap();
    rapi()
        .wait_job(job, JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .expect("a VM with a file disk");
    let e1 = uuid_of("trust-e1");
    http[0].wait_listed(&alice, "trust-e1", &ops[0]).await;
    let link = mailed_link(
        &http[0],
        &ops[0],
        "trust-e1",
        "reinstall",
        None,
        "Confirm: reinstall trust-e1",
    )
    .await;
    let (status, page) = follow(&ops[0].url(""), &link).await;
    assert_eq!(status, 200, "{page}\n{}", ops[0].log());
    let job = rapi().wait_job(job_on_page(&page), JOB_DEADLINE).await.unwrap();
    assert!(
        job.summary.iter().any(|s| s.contains("REINSTALL")),
        "{:?}",
        job.summary
    );
    job.into_success().expect("the reinstall ran");
    assert_eq!(uuid_of("trust-e1"), e1, "the same VM, reinstalled");

    // A rename to a short form of bob's trust-bobdb.example is refused before any mail.
    let (status, body) = http[0]
        .act(
            "trust-a2",
            "rename",
            &alice,
            Some(json!({"newName": "trust-bobdb"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("short form"), "{body}");
    // An action on the short form is not an action on bob's VM (Ganeti would expand it).
    let (status, body) = http[0].act("trust-bobdb", "shutdown", &alice, None).await;
    assert_eq!(status, 404, "{body}");
    let bobdb = rapi().instance("trust-bobdb.example").await.unwrap();
    assert_eq!(bobdb.admin_state.as_deref(), Some("up"), "bob's VM still runs");
}

/// The right is decided on the VM as Ganeti has it now, not as the last sync saw it;
/// and a job pinned to a UUID is refused by Ganeti itself when the name means another
/// instance.
#[tokio::test]
async fn fresh_state_and_pinned_jobs() {
    let alice = env("KUBE_TOKEN_ALICE");
    setup().await;
    let _vms = support::ganeti::create_instances(
        &[("trust-c1", "198.51.100.205", owner("alice"))],
        "tests/testbed_trust",
    )
    .await;
    let op = operator("trust-fresh").await;
    let http = Http::new(&op);
    http.wait_listed(&alice, "trust-c1", &op).await;

    // An admin takes the VM from alice in Ganeti: her next action is refused at once,
    // although the operator's inventory (up to a sync interval old) still says hers.
    let tag = &owner("alice")[0];
    gnt(&format!("gnt-instance remove-tags trust-c1 {tag}"));
    let t = Instant::now();
    let (status, body) = http.act("trust-c1", "shutdown", &alice, None).await;
    assert_eq!(status, 404, "{body}");
    println!("refused {:?} after the tag went", t.elapsed());
    let c1 = rapi().instance("trust-c1").await.unwrap();
    assert_eq!(c1.admin_state.as_deref(), Some("up"), "nothing was shut down");
    gnt(&format!("gnt-instance add-tags trust-c1 {tag}"));
    let (status, body) = http.act("trust-c1", "reboot", &alice, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uuid"], uuid_of("trust-c1"));
    rapi()
        .wait_job(JobId(body["job"].as_u64().unwrap()), JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .unwrap();

    // Ganeti refuses pinned jobs whose name now resolves to another instance.
    let c = rapi();
    let real = uuid_of("trust-c1");
    let wrong = "00000000-0000-4000-8000-000000000000";
    let failed = |r: Result<ganeti_operator::rapi::Job, RapiError>| match r.unwrap().into_success() {
        Err(RapiError::JobFailed(f)) => f.message,
        other => panic!("the job should fail: {other:?}"),
    };
    for (what, job) in [
        (
            "reboot",
            c.reboot_instance(
                Target::pinned("trust-c1", wrong),
                RebootType::Soft,
                "tests/testbed_trust",
            )
            .await,
        ),
        (
            "shutdown",
            c.shutdown_instance(Target::pinned("trust-c1", wrong), None, "tests/testbed_trust")
                .await,
        ),
        (
            "remove",
            c.remove_instance(Target::pinned("trust-c1", wrong), "tests/testbed_trust")
                .await,
        ),
    ] {
        let message = failed(c.wait_job(job.expect("accepted"), JOB_DEADLINE).await);
        assert!(
            message.contains("does not match the expected UUID"),
            "{what}: {message}"
        );
    }
    let c1 = rapi().instance("trust-c1").await.expect("still there");
    assert_eq!(c1.admin_state.as_deref(), Some("up"));
    let job = c
        .reboot_instance(
            Target::pinned("trust-c1", &real),
            RebootType::Soft,
            "tests/testbed_trust",
        )
        .await
        .unwrap();
    c.wait_job(job, JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .unwrap();
}

/// A console ticket opens the VM it was issued for only: after the name moved to
/// another VM the websocket is refused before anything connects.
#[tokio::test]
async fn console_tickets_follow_the_uuid() {
    let alice = env("KUBE_TOKEN_ALICE");
    setup().await;
    let _vms = support::ganeti::create_instances(
        &[
            ("trust-d1", "198.51.100.206", owner("alice")),
            ("trust-d2", "198.51.100.207", owner("alice")),
        ],
        "tests/testbed_trust",
    )
    .await;
    let _renamed = support::ganeti::Instances(vec!["trust-d1-moved".into()]);
    let op = operator("trust-console").await;
    let http = Http::new(&op);
    http.wait_listed(&alice, "trust-d1", &op).await;
    let ticket = |answer: &Value| -> String {
        url::form_urlencoded::byte_serialize(answer["ticket"].as_str().expect("a ticket").as_bytes())
            .collect()
    };
    let socket = |t: String| {
        let url = format!("ws://127.0.0.1:{}/console/ws?ticket={t}", op.port);
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
                Err(e) => panic!("websocket: {e}"),
            }
        }
    };
    // The same VM: authorized, then the fake hypervisor has no screen (502).
    let (status, answer) = http.act("trust-d1", "console", &alice, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(socket(ticket(&answer)).await, 502);
    // Another ticket, then the name moves to alice's other VM: 409, nothing opened.
    let (_, answer) = http.act("trust-d1", "console", &alice, None).await;
    rename("trust-d1", "trust-d1-moved");
    rename("trust-d2", "trust-d1");
    assert_eq!(socket(ticket(&answer)).await, 409);
    let log = op.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"audit\"") && l.contains("no longer the VM") && l.contains("trust-d1")),
        "the refusal is audited:\n{log}"
    );
}

/// The edges: `/metrics` is not on the users' listener; a flood from one address is cut
/// off before any token is reviewed; with `--token-audience` only tokens issued for the
/// operator are accepted, so a user's token for the API server is no key here.
#[tokio::test]
async fn metrics_apart_flood_limited_tokens_for_this_service_only() {
    setup().await;
    // A ServiceAccount of alice's, for tokens with an audience.
    let _ = support::testbed::kubectl("root", &["create", "namespace", "trust-tokens"]);
    let _ = support::testbed::kubectl(
        "root",
        &["-n", "trust-tokens", "create", "serviceaccount", "robot"],
    );
    let token = |audience: Option<&str>| {
        let mut args = vec![
            "-n",
            "trust-tokens",
            "create",
            "token",
            "robot",
            "--duration",
            "10m",
        ];
        if let Some(a) = audience {
            args.extend(["--audience", a]);
        }
        support::testbed::kubectl_ok("root", &args).trim().to_string()
    };
    let op = Operator::start_with(
        "trust-edges",
        Options::default()
            .arg("--token-audience")
            .arg("ganeti-operator")
            .env("LINK_KEY", LINK_KEY),
    )
    .await;
    let client = reqwest::Client::new();
    let get = |url: String, bearer: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = client.get(url);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get(op.url("/metrics"), None).await, 404, "no /metrics for users");
    let metrics = op.metrics().await;
    assert!(
        metrics.contains("ganeti_operator_"),
        "the metrics listener serves them"
    );

    let instances = op.url("/api/v1/instances");
    let mut status = 0;
    for _ in 0..100 {
        status = get(instances.clone(), Some(token(Some("ganeti-operator")))).await;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status, 200, "a token for the operator is accepted\n{}", op.log());
    assert_eq!(
        get(instances.clone(), Some(token(None))).await,
        401,
        "a token for the API server is not"
    );
    assert_eq!(get(instances.clone(), Some(env("KUBE_TOKEN_ALICE"))).await, 401);

    // A flood of bad tokens from one address, all at once: past the burst they are cut
    // off with 429 before any TokenReview.
    let statuses: Vec<u16> =
        futures::future::join_all((0..400).map(|i| get(instances.clone(), Some(format!("bogus-{i}"))))).await;
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited > 0, "no 429 in {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert_eq!(
        get(op.url("/healthz"), None).await,
        200,
        "the probes are never limited"
    );
}
