//! Notifications against the real testbed: the operator binary, the API server, the
//! SMTP server (mails read back from its Maildir) and Ganeti instances whose owner
//! tags decide who is mailed.
//!
//! The tests of this file run one at a time (each starts its own operator, and two
//! operators would share the work). Mails are told apart by a per-run marker in their
//! subject, since the Maildir keeps earlier runs' mails.

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::api::notification::{DeliveryResult, Notification, NotificationPhase};
use ganeti_operator::mail::{Mail, MailError, Mailer, SmtpSettings};
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use support::ganeti::{self, Instances};
use support::maildir::{self, run_id};
use support::operator::{Operator, Options};
use support::testbed::{kube_client, kubectl};
use support::{MANAGER, apply};

const SMTP_SECRET: &str = "notif-smtp";
const CLUSTER: &str = "notif-tb";
const NS: &str = "ganeti-system";

/// One test at a time in this file (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// CRDs, user RBAC, admission policies and the SMTP settings Secret.
async fn setup() -> kube::Client {
    support::install_with_smtp(SMTP_SECRET, "Ganeti VM service <ganeti@notif.test>").await
}

fn with_smtp() -> Options {
    Options::default().arg("--smtp-secret").arg(SMTP_SECRET)
}

fn notification(name: &str, subject: &str, body: &str, recipients: Value) -> Value {
    json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "Notification", "metadata": {"name": name},
        "spec": {"subject": subject, "body": body, "recipients": recipients},
    })
}

async fn create(client: &kube::Client, obj: &Value) -> Result<Notification, kube::Error> {
    let api: Api<Notification> = Api::all(client.clone());
    support::delete_and_wait(&api, obj["metadata"]["name"].as_str().unwrap()).await;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj.clone()).unwrap(),
    )
    .await
}

fn phase(n: &Notification) -> NotificationPhase {
    n.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn condition<'a>(
    n: &'a Notification,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    n.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Mail bodies of our templates: `key=value` lines.
fn fields(m: &maildir::Message) -> BTreeMap<String, String> {
    m.body
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

const BODY: &str = "user={{ user.username }}\nname={{ user }}\ncluster={{ cluster }}\ninstances={% for i in instances %}{{ i.cluster }}/{{ i.name }}:{{ i.status }} {% endfor %}\n";

#[tokio::test]
async fn the_mailer_talks_to_the_real_smtp_server() {
    let _serial = SERIAL.lock().await;
    let root = setup().await;
    let run = run_id();
    let mailer = Mailer::from_secret_ref(&root, NS, SMTP_SECRET)
        .await
        .expect("the Secret parses");
    let to = format!("mailer-{run}@notif.test");

    // A plain send, UTF-8 in subject and body.
    let marker = format!("[{run} plain]");
    mailer
        .send(&Mail {
            to: to.clone(),
            subject: format!("{marker} greetings"),
            body: "Grüße aus dem Rechenzentrum.\nZweite Zeile.\n".into(),
        })
        .await
        .expect("sent");
    let got = maildir::wait_for(&marker, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to(), to);
    assert!(
        got[0].header("From").unwrap().contains("ganeti@notif.test"),
        "{:?}",
        got[0].headers
    );
    assert!(
        got[0]
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain; charset=utf-8"),
        "{:?}",
        got[0].headers
    );
    assert_eq!(
        got[0].body.trim_end(),
        "Grüße aus dem Rechenzentrum.\nZweite Zeile."
    );

    // Two steps: an abandoned transaction delivers nothing; a committed one delivers
    // once, with the Message-ID given.
    let marker = format!("[{run} abandoned]");
    let mail = Mail {
        to: to.clone(),
        subject: marker.clone(),
        body: "never".into(),
    };
    mailer.prepare(&mail, None).await.expect("prepared").abort().await;
    let prepared = mailer.prepare(&mail, None).await.expect("prepared");
    drop(prepared); // as if the process died
    let marker2 = format!("[{run} committed]");
    let id = format!("<test.{run}@notif.test>");
    let mail = Mail {
        to: to.clone(),
        subject: marker2.clone(),
        body: "once".into(),
    };
    mailer
        .prepare(&mail, Some(&id))
        .await
        .expect("prepared")
        .commit()
        .await
        .expect("committed");
    let got = maildir::wait_for(&marker2, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("Message-ID"), Some(id.as_str()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        maildir::with_subject(&marker).is_empty(),
        "abandoned transactions deliver nothing"
    );

    // Failures sorted: nothing listening is transient, a bad address permanent.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "x"},
        "stringData": {"host": "127.0.0.1", "port": "1", "tls": "none", "from": "a@notif.test"},
    }))
    .unwrap();
    let dead = Mailer::new(SmtpSettings::from_secret(&secret).unwrap()).unwrap();
    let e = dead.send(&mail).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let e = mailer
        .send(&Mail {
            to: "not an address".into(),
            ..mail.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::Permanent(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------
// Ganeti instances with owner tags.

/// Creates `notif-*` instances (fresh: an older one of the name is removed first),
/// each with its owner tag.
async fn create_instances(specs: &[(&str, &str, Option<Subject>)]) -> Instances {
    let specs: Vec<_> = specs
        .iter()
        .map(|(name, ip, owner)| {
            assert!(name.starts_with("notif-"));
            let tags = owner
                .iter()
                .map(|o| format_owner(DEFAULT_PREFIX, o).unwrap())
                .collect();
            (*name, *ip, tags)
        })
        .collect();
    ganeti::create_instances(&specs, "tests/testbed_notifications").await
}

/// A profile (as root: admins keep anyone's), verified or not.
async fn apply_profile(root: &kube::Client, user: &str, email: &str, groups: &[&str], verified: bool) {
    let api: Api<ganeti_operator::api::UserProfile> = Api::all(root.clone());
    let name = format!("notif-{user}");
    apply(
        &api,
        &name,
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
            "spec": {"username": user, "fullName": format!("Test {user}"), "email": email, "groups": groups},
        }),
    )
    .await;
    // Verification by mail is testbed_profiles' subject; here it is given.
    let status = if verified {
        json!({"verifiedEmail": email})
    } else {
        json!({})
    };
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
            "status": status,
        })),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn recipients_templates_and_one_mail_per_address() {
    let _serial = SERIAL.lock().await;
    let root = setup().await;
    let run = run_id();
    ganeti::apply_cluster(&root, CLUSTER, "notif-rapi", json!({})).await;
    let _instances = create_instances(&[
        (
            "notif-a.example.org",
            "198.51.100.90",
            Some(Subject::user("n-alice")),
        ),
        (
            "notif-b.example.org",
            "198.51.100.91",
            Some(Subject::group("n-ops")),
        ),
        (
            "notif-c.example.org",
            "198.51.100.92",
            Some(Subject::user("n-bob")),
        ),
        ("notif-d.example.org", "198.51.100.93", None),
    ])
    .await;
    apply_profile(&root, "n-alice", "n-alice@notif.test", &["n-ops"], true).await;
    apply_profile(&root, "n-dave", "n-dave@notif.test", &["n-ops"], true).await;
    apply_profile(&root, "n-carol", "n-carol@notif.test", &["n-ops"], false).await;
    apply_profile(&root, "n-bob", "n-bob@notif.test", &[], true).await;

    let op = Operator::start_with("notifications", with_smtp()).await;
    let admin = kube_client("admin").await;
    let api: Api<Notification> = Api::all(root.clone());
    let cases = [
        ("users", json!({"users": ["n-alice"]})),
        (
            "dedup",
            json!({"users": ["n-alice", "n-carol"], "groups": ["n-ops"]}),
        ),
        (
            "instances",
            json!({"instances": [{"cluster": CLUSTER, "name": "notif-c.example.org"}]}),
        ),
        ("cluster", json!({"clusters": [CLUSTER]})),
    ];
    for (case, recipients) in &cases {
        let subject = format!("[{run} {case}] for {{{{ user }}}}");
        create(
            &admin,
            &notification(&format!("notif-{case}"), &subject, BODY, recipients.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("an admin creates notification {case}: {e}"));
    }
    let mut done = BTreeMap::new();
    for (case, _) in &cases {
        let n = op
            .wait_for(&api, &format!("notif-{case}"), Duration::from_secs(90), |n| {
                matches!(
                    phase(n),
                    NotificationPhase::Sent | NotificationPhase::PartiallyFailed | NotificationPhase::Failed
                )
            })
            .await;
        assert_eq!(phase(&n), NotificationPhase::Sent, "{case}: {:#?}", n.status);
        done.insert(*case, n);
    }

    // Mails by case and address: (address, instances line).
    let mails = |case: &str| -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
        let mut by_to: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for m in maildir::with_subject(&format!("[{run} {case}]")) {
            by_to.entry(m.to()).or_default().push(fields(&m));
        }
        by_to
    };
    // Instances on our GanetiCluster (GanetiClusters of other tests may name the same
    // Ganeti cluster, so the same VMs show there too).
    let instances_of = |f: &BTreeMap<String, String>| -> Vec<String> {
        let mut v: Vec<String> = f["instances"]
            .split_whitespace()
            .filter_map(|s| {
                s.split(':')
                    .next()
                    .unwrap()
                    .strip_prefix(&format!("{CLUSTER}/"))
                    .map(String::from)
            })
            .collect();
        v.sort();
        v
    };

    // users: alice's own VMs and her group's, on the one cluster they are on.
    let m = mails("users");
    assert_eq!(m.keys().collect::<Vec<_>>(), vec!["n-alice@notif.test"], "{m:#?}");
    let f = &m["n-alice@notif.test"][0];
    assert_eq!(f["user"], "n-alice");
    assert_eq!(f["name"], "Test n-alice");
    assert_eq!(
        instances_of(f),
        vec!["notif-a.example.org", "notif-b.example.org"]
    );
    // Each instance comes with its facts from the inventory (here: its status).
    let a = format!("{CLUSTER}/notif-a.example.org:");
    let status = f["instances"]
        .split_whitespace()
        .find_map(|i| i.strip_prefix(&a))
        .unwrap_or_default();
    assert!(!status.is_empty() && status != "unknown", "{f:?}");

    // dedup: alice named directly and through n-ops gets one mail; carol (unverified)
    // none, and the archive says why.
    let m = mails("dedup");
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        vec!["n-alice@notif.test", "n-dave@notif.test"],
        "{m:#?}"
    );
    assert!(m.values().all(|v| v.len() == 1), "{m:#?}");
    let s = done["dedup"].status.clone().unwrap();
    assert_eq!(s.recipient_count, 2);
    assert!(
        s.skipped
            .iter()
            .any(|k| k.name == "user n-carol" && k.reason.contains("not verified")),
        "{:?}",
        s.skipped
    );

    // instances: the owner of that VM, with only that VM.
    let m = mails("instances");
    assert_eq!(m.keys().collect::<Vec<_>>(), vec!["n-bob@notif.test"], "{m:#?}");
    assert_eq!(
        instances_of(&m["n-bob@notif.test"][0]),
        vec!["notif-c.example.org"]
    );
    let f = &m["n-bob@notif.test"][0];
    assert!(
        f["instances"].starts_with(&format!("{CLUSTER}/notif-c.example.org:")),
        "{f:?}"
    );
    assert_eq!(f["instances"].split_whitespace().count(), 1, "{f:?}");
    assert_eq!(f["cluster"], CLUSTER, "the one cluster its instances are on");

    // cluster: every owner on it (others' VMs may be there too: look at ours), each
    // with their VMs on it; the owner group's members each get theirs.
    let m = mails("cluster");
    let expect = [
        (
            "n-alice@notif.test",
            vec!["notif-a.example.org", "notif-b.example.org"],
        ),
        ("n-dave@notif.test", vec!["notif-b.example.org"]),
        ("n-bob@notif.test", vec!["notif-c.example.org"]),
    ];
    for (to, vms) in expect {
        let got = m.get(to).unwrap_or_else(|| panic!("no mail to {to}: {m:#?}"));
        assert_eq!(got.len(), 1, "{to}");
        assert_eq!(got[0]["cluster"], CLUSTER, "the one cluster named");
        let on = format!("{CLUSTER}/");
        assert!(
            got[0]["instances"].split_whitespace().all(|i| i.starts_with(&on)),
            "only VMs on the named cluster: {:?}",
            got[0]
        );
        let mine: Vec<String> = instances_of(&got[0])
            .into_iter()
            .filter(|i| i.starts_with("notif-"))
            .collect();
        assert_eq!(mine, vms, "{to}");
    }
    assert!(!m.contains_key("n-carol@notif.test"));
    let s = done["cluster"].status.clone().unwrap();
    assert!(
        s.skipped.iter().any(|k| k.name == format!("cluster {CLUSTER}")),
        "the VM without owner: {:?}",
        s.skipped
    );

    // The archive: per recipient result, time and instances; printer columns.
    let s = done["instances"].status.clone().unwrap();
    assert_eq!(s.recipients.len(), 1);
    let r = &s.recipients[0];
    assert_eq!(
        (r.address.as_str(), r.result),
        ("n-bob@notif.test", DeliveryResult::Sent)
    );
    assert_eq!(r.instances, vec![format!("{CLUSTER}/notif-c.example.org")]);
    assert!(r.time.is_some() && s.sent_time.is_some());
    let (ok, out, err) = kubectl("root", &["get", "notification", "notif-instances"]);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "SUBJECT", "RECIPIENTS", "PHASE", "SENT", "AGE"]
    );
    assert!(out.contains(" 1 ") && out.contains("Sent"), "{out}");

    // Editing a sent Notification sends nothing again.
    let before = maildir::with_subject(&format!("[{run} instances]")).len();
    let patched = api
        .patch(
            "notif-instances",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&notification(
                "notif-instances",
                &format!("[{run} instances] edited"),
                "changed",
                json!({"users": ["n-alice"]}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(maildir::with_subject(&format!("[{run} instances]")).len(), before);
    let n = api.get("notif-instances").await.unwrap();
    assert_eq!(n.status.unwrap().recipients.len(), 1, "the archive is unchanged");

    // A template error: a condition saying why, and no mail; fixing it sends.
    let name = "notif-badtemplate";
    let marker = format!("[{run} bad]");
    create(
        &admin,
        &notification(
            name,
            &marker,
            "Dear {{ user.nickname }}",
            json!({"users": ["n-bob"]}),
        ),
    )
    .await
    .unwrap();
    let n = op
        .wait_for(&api, name, Duration::from_secs(30), |n| {
            phase(n) == NotificationPhase::Failed
        })
        .await;
    let c = condition(&n, "TemplateValid").expect("TemplateValid");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "TemplateError"));
    assert!(
        c.message.contains("body") && c.message.contains("undefined"),
        "{}",
        c.message
    );
    assert!(n.status.as_ref().unwrap().recipients.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(maildir::with_subject(&marker).is_empty(), "nothing is sent");
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&notification(
            name,
            &marker,
            "Dear {{ user.name }}",
            json!({"users": ["n-bob"]}),
        )),
    )
    .await
    .unwrap();
    op.wait_for(&api, name, Duration::from_secs(30), |n| {
        phase(n) == NotificationPhase::Sent
    })
    .await;
    let got = maildir::wait_for(&marker, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.trim(), "Dear Test n-bob");

    for (case, _) in &cases {
        let _ = api
            .delete(&format!("notif-{case}"), &DeleteParams::default())
            .await;
    }
    let _ = api.delete(name, &DeleteParams::default()).await;
    let clusters: Api<ganeti_operator::api::GanetiCluster> = Api::all(root.clone());
    let _ = clusters.delete(CLUSTER, &DeleteParams::default()).await;
}

/// Brings the SMTP server back when dropped, also if the test failed meanwhile.
struct SmtpBack;

impl Drop for SmtpBack {
    fn drop(&mut self) {
        testbed_script(&["up", "smtp"]);
    }
}

fn testbed_script(args: &[&str]) {
    let out = Command::new(support::repo_path("scripts/testbed"))
        .args(args)
        .output()
        .expect("scripts/testbed runs");
    assert!(
        out.status.success(),
        "scripts/testbed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn smtp_down_is_retried_then_delivered() {
    let _serial = SERIAL.lock().await;
    let root = setup().await;
    let run = run_id();
    let op = Operator::start_with("notifications-smtp-down", with_smtp()).await;
    let api: Api<Notification> = Api::all(root.clone());
    let name = "notif-smtp-down";
    let marker = format!("[{run} smtp-down]");
    let to = format!("smtp-down-{run}@notif.test");

    // The outage is kept short: other tests share the server.
    let back = SmtpBack;
    testbed_script(&["down", "smtp"]);
    create(
        &root,
        &notification(name, &marker, "hello", json!({"users": [to]})),
    )
    .await
    .unwrap();
    let n = op
        .wait_for(&api, name, Duration::from_secs(30), |n| {
            n.status
                .as_ref()
                .and_then(|s| s.recipients.first())
                .is_some_and(|r| r.attempts >= 2)
        })
        .await;
    let r = &n.status.as_ref().unwrap().recipients[0];
    assert_eq!(r.result, DeliveryResult::Pending);
    assert!(
        r.message.as_deref().unwrap_or_default().contains("transient"),
        "{r:?}"
    );
    let c = condition(&n, "Delivered").unwrap();
    assert_eq!(c.reason, "Retrying", "{c:?}");
    assert_eq!(phase(&n), NotificationPhase::Sending);
    drop(back);

    let n = op
        .wait_for(&api, name, Duration::from_secs(90), |n| {
            phase(n) == NotificationPhase::Sent
        })
        .await;
    let r = &n.status.as_ref().unwrap().recipients[0];
    assert_eq!(r.result, DeliveryResult::Sent);
    assert!(r.attempts >= 3, "{r:?}");
    let got = maildir::wait_for(&marker, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to(), to);
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn killed_mid_batch_every_address_gets_exactly_one_mail() {
    let _serial = SERIAL.lock().await;
    let root = setup().await;
    let run = run_id();
    let api: Api<Notification> = Api::all(root.clone());
    let name = "notif-crash";
    let marker = format!("[{run} crash]");
    // Usernames that are addresses need no profile.
    let addresses: Vec<String> = (0..40).map(|i| format!("k{i:02}-{run}@notif.test")).collect();

    // 1. The operator dies right after the SMTP server took the first mail, before it
    //    recorded that: the worst moment.
    let mut op = Operator::start_with(
        "notifications-crash",
        with_smtp().env(
            ganeti_operator::fault::CRASH_AT_ENV,
            "notification-after-smtp-accept",
        ),
    )
    .await;
    create(
        &root,
        &notification(name, &marker, "one copy only", json!({"users": addresses})),
    )
    .await
    .unwrap();
    let Some(status) = op.wait_exit(Duration::from_secs(60)).await else {
        panic!("the crash point was not reached in 60 s\n{}", op.log());
    };
    assert_eq!(
        status.code(),
        Some(ganeti_operator::fault::CRASH_EXIT_CODE),
        "{}",
        op.log()
    );
    let n = api.get(name).await.unwrap();
    let s = n.status.clone().unwrap();
    let sending: Vec<_> = s
        .recipients
        .iter()
        .filter(|r| r.result == DeliveryResult::Sending)
        .collect();
    assert_eq!(sending.len(), 1, "{s:#?}");
    assert_eq!(
        maildir::wait_for(&marker, 1, Duration::from_secs(5)).await.len(),
        1
    );
    drop(op);

    // 2. A new operator settles the interrupted one (not resent) and goes on; it is
    //    killed with SIGKILL in the middle of the batch.
    let op = Operator::start_with("notifications-crash-2", with_smtp()).await;
    let sent = |n: &Notification| {
        n.status
            .as_ref()
            .map(|s| {
                s.recipients
                    .iter()
                    .filter(|r| r.result == DeliveryResult::Sent)
                    .count()
            })
            .unwrap_or(0)
    };
    let n = op
        .wait_for(&api, name, Duration::from_secs(90), |n| sent(n) >= 10)
        .await;
    drop(op); // SIGKILL
    let at_kill = sent(&n);
    eprintln!("killed with {at_kill} of {} recorded as sent", addresses.len());

    // 3. After the last restart no address has two mails, and every address has one
    //    except, possibly, the one the SIGKILL caught between recording `Sending` and
    //    the SMTP server taking the message: at most once, never twice; such a mail is
    //    noted as interrupted in the archive.
    let op = Operator::start_with("notifications-crash-3", with_smtp()).await;
    let n = op
        .wait_for(&api, name, Duration::from_secs(120), |n| {
            phase(n) == NotificationPhase::Sent
        })
        .await;
    let s = n.status.unwrap();
    assert!(s.recipients.iter().all(|r| r.result == DeliveryResult::Sent));
    let settled: Vec<&str> = s
        .recipients
        .iter()
        .filter(|r| {
            r.message
                .as_deref()
                .is_some_and(|m| m.contains("operator stopped"))
        })
        .map(|r| r.address.as_str())
        .collect();
    assert!(
        !settled.is_empty() && settled.len() <= 2,
        "the interrupted mails (one per crash at most) are noted in the archive: {settled:?}"
    );
    let mails = maildir::wait_for(&marker, addresses.len(), Duration::from_secs(10)).await;
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        *per_address.entry(m.to()).or_default() += 1;
    }
    let mut missing = Vec::new();
    for a in &addresses {
        match per_address.get(a) {
            Some(1) => {}
            None if settled.contains(&a.as_str()) => missing.push(a.clone()),
            other => panic!("{a}: {other:?} mails\n{per_address:#?}"),
        }
    }
    assert!(
        missing.len() <= 1,
        "lost more than the one the SIGKILL caught: {missing:?}"
    );
    assert_eq!(mails.len() + missing.len(), addresses.len());
    // Copies of one mail would share this id; every address has its own.
    let ids: std::collections::BTreeSet<_> = mails.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids.len(), mails.len());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn only_admins_and_holders_of_the_right_send() {
    let _serial = SERIAL.lock().await;
    let root = setup().await;
    let op = Operator::start("notifications-admission").await;
    let carol = kube_client("carol").await; // group team-a
    let probe = notification("notif-probe", "s", "b", json!({"users": ["nobody@notif.test"]}));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let try_create = |client: kube::Client| {
        let probe = probe.clone();
        let dry = dry.clone();
        async move {
            Api::<Notification>::all(client)
                .create(&dry, &serde_json::from_value(probe).unwrap())
                .await
        }
    };
    let roles: Api<ganeti_operator::api::Role> = Api::all(root.clone());
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    for b in ["notif-senders-team-a", "notif-no-mail-carol"] {
        let _ = bindings.delete(b, &DeleteParams::default()).await;
    }
    let senders_cm: Api<ConfigMap> = Api::namespaced(root.clone(), NS);
    let wait_cm = |key: &'static str, name: &'static str, present: bool| {
        let senders_cm = senders_cm.clone();
        async move {
            for _ in 0..100 {
                let cm = senders_cm.get("ganeti-system-rights").await.unwrap();
                let has = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .is_some_and(|v| v.lines().any(|l| l == name));
                if has == present {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("ganeti-system-rights never had {key} {name} = {present}");
        }
    };
    wait_cm("notifications.allowedGroups", "team-a", false).await;
    // Whether carol comes to be allowed (`may`) or refused within 10 s: admission reads
    // the ConfigMap through an informer, which takes a moment.
    let carol_may_send = async |may: bool| {
        for _ in 0..50 {
            if try_create(carol.clone()).await.is_ok() == may {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };

    // An admin may; carol may not, and is told why.
    assert!(try_create(kube_client("admin").await).await.is_ok());
    let e = try_create(carol.clone()).await.unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("\"carol\"") && s.message.contains("notifications"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }

    // A binding of her group to a role that allows system.notifications lets her.
    apply(
        &roles,
        "notif-sender",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": "notif-sender"},
                "spec": {"system": {"notifications": "allowed"}}}),
    )
    .await;
    apply(
        &roles,
        "notif-no-mail",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": "notif-no-mail"},
                "spec": {"system": {"notifications": "forbidden"}}}),
    )
    .await;
    apply(
        &bindings,
        "notif-senders-team-a",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "notif-senders-team-a"},
                "spec": {"roleRef": "notif-sender", "subjects": [{"kind": "Group", "name": "team-a"}]}}),
    )
    .await;
    wait_cm("notifications.allowedGroups", "team-a", true).await;
    assert!(
        carol_may_send(true).await,
        "a holder of system.notifications may send\n{}",
        op.log()
    );

    // Forbidden beats allowed: a role forbidding it to carol herself wins.
    apply(
        &bindings,
        "notif-no-mail-carol",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "notif-no-mail-carol"},
                "spec": {"roleRef": "notif-no-mail", "subjects": [{"kind": "User", "name": "carol"}]}}),
    )
    .await;
    wait_cm("notifications.forbiddenUsers", "carol", true).await;
    assert!(carol_may_send(false).await, "forbidden beats allowed");

    for b in ["notif-senders-team-a", "notif-no-mail-carol"] {
        let _ = bindings.delete(b, &DeleteParams::default()).await;
    }
    for r in ["notif-sender", "notif-no-mail"] {
        let _ = roles.delete(r, &DeleteParams::default()).await;
    }
    wait_cm("notifications.allowedGroups", "team-a", false).await;
}
