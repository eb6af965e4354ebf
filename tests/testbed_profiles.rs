//! UserProfiles against the real testbed: email verification by a mailed single-use
//! link served by the operator's HTTP server, and SSH key checks.
//!
//! The tests of this file run one at a time (each starts its own operator).

mod support;

use ganeti_operator::api::UserProfile;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;
use support::MANAGER;
use support::maildir::{self, run_id};
use support::operator::{Operator, Options};
use support::testbed::kube_client;
use tokio::sync::MutexGuard;

const SMTP_SECRET: &str = "notif-smtp";
/// Links in mails point here; the tests send them to the operator's real address.
const PUBLIC_URL: &str = "https://ganeti.notif.test";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What each test starts from, once it has its turn (the guard, first: it must go
/// last): CRDs, user RBAC, admission policies and the SMTP settings Secret; this run's
/// id, the test's operator (`profiles-<what>`), the profiles API, and the name and
/// address of a profile for this run (`notif-<what>-<run>`, `<mailbox>-<run>@notif.test`).
async fn start(
    what: &str,
    mailbox: &str,
) -> (
    MutexGuard<'static, ()>,
    String,
    Operator,
    Api<UserProfile>,
    String,
    String,
) {
    let serial = SERIAL.lock().await;
    let root = support::install_with_smtp(SMTP_SECRET, "Ganeti VM service <ganeti@notif.test>").await;
    let run = run_id();
    let op = start_operator(&format!("profiles-{what}")).await;
    let (name, email) = (
        format!("notif-{what}-{run}"),
        format!("{mailbox}-{run}@notif.test"),
    );
    (serial, run, op, Api::all(root), name, email)
}

async fn start_operator(name: &str) -> Operator {
    Operator::start_with(
        name,
        Options::default()
            .arg("--smtp-secret")
            .arg(SMTP_SECRET)
            .arg("--public-url")
            .arg(PUBLIC_URL)
            .env("LINK_KEY", "testbed-profiles-link-key-0123456789abcdef"),
    )
    .await
}

fn profile(name: &str, user: &str, email: &str, keys: &[&str]) -> Value {
    json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
        "spec": {"username": user, "fullName": "Alice Liddell", "email": email, "sshKeys": keys},
    })
}

/// Polls the profile until `done` holds.
async fn wait_until(
    api: &Api<UserProfile>,
    name: &str,
    op: &Operator,
    done: impl Fn(&UserProfile) -> bool,
) -> UserProfile {
    op.wait_for(api, name, Duration::from_secs(30), done).await
}

fn condition(p: &UserProfile, type_: &str) -> Option<(String, String, String)> {
    let c = p.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The verification links mailed to `to`, oldest first, pointed at the operator.
async fn links_to(to: &str, count: usize, op: &Operator) -> Vec<String> {
    for _ in 0..200 {
        let mut mails: Vec<_> = maildir::all()
            .into_iter()
            .filter(|m| m.to() == to && m.subject().contains("Confirm your email address"))
            .collect();
        if mails.len() >= count {
            mails.sort_by_key(|m| m.header("Date").map(String::from));
            return mails
                .iter()
                .map(|m| {
                    let line = m
                        .body
                        .lines()
                        .find(|l| l.starts_with(PUBLIC_URL))
                        .unwrap_or_else(|| panic!("no link in {}", m.body));
                    op.url(line.trim().strip_prefix(PUBLIC_URL).unwrap())
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} verification mails to {to}\n{}", op.log());
}

fn token_of(link: &str) -> String {
    link.split_once("token=").unwrap().1.to_string()
}

async fn post(op: &Operator, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(op.url("/verify-email"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn an_address_is_verified_once_by_the_mailed_link() {
    let (_serial, run, op, api, name, email) = start("verify", "alice").await;

    // Alice keeps her own profile.
    let alice: Api<UserProfile> = Api::all(kube_client("alice").await);
    alice
        .create(
            &PostParams::default(),
            &serde_json::from_value(profile(&name, "alice", &email, &[])).unwrap(),
        )
        .await
        .expect("alice creates her profile");

    let links = links_to(&email, 1, &op).await;
    let p = wait_until(&api, &name, &op, |p| {
        condition(p, "EmailVerified").is_some_and(|(_, r, _)| r == "LinkSent")
    })
    .await;
    let (status, _, message) = condition(&p, "EmailVerified").unwrap();
    assert_eq!(status, "False");
    assert!(message.contains(&email), "{message}");

    // GET shows a confirmation page and verifies nothing (mail scanners follow links).
    let page = reqwest::get(&links[0]).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&email) && html.contains("method=\"post\""),
        "{html}"
    );
    assert!(
        api.get(&name)
            .await
            .unwrap()
            .status
            .unwrap()
            .verified_email
            .is_none()
    );

    // A forged or damaged token is refused.
    let token = token_of(&links[0]);
    let (payload, signature) = token.split_once('.').unwrap();
    // The same signature over claims for another address.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
    let other = claims.replace(&email, "mallory@notif.test");
    assert_ne!(claims, other);
    let forged = format!("{}.{signature}", b64.encode(other));
    assert_eq!(post(&op, &forged).await.0, 403);
    assert_eq!(post(&op, "garbage").await.0, 400);

    // The button verifies.
    let (code, body) = post(&op, &token).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("is verified"), "{body}");
    let p = wait_until(&api, &name, &op, |p| {
        condition(p, "EmailVerified").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let s = p.status.unwrap();
    assert_eq!(s.verified_email.as_deref(), Some(email.as_str()));
    assert!(s.pending_verification.is_none());

    // Once: the same link again is refused.
    let (code, body) = post(&op, &token).await;
    assert_eq!(code, 410, "{body}");
    assert!(body.contains("already used"), "{body}");

    // A changed address is unverified until its own link is followed; the old link
    // stays spent.
    let new_email = format!("alice-new-{run}@notif.test");
    alice
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&profile(&name, "alice", &new_email, &[])),
        )
        .await
        .unwrap();
    let new_links = links_to(&new_email, 1, &op).await;
    wait_until(&api, &name, &op, |p| {
        condition(p, "EmailVerified").is_some_and(|(s, r, _)| s == "False" && r == "LinkSent")
    })
    .await;
    assert_eq!(post(&op, &token).await.0, 410);
    let (code, body) = post(&op, &token_of(&new_links[0])).await;
    assert_eq!(code, 200, "{body}");
    let p = wait_until(&api, &name, &op, |p| {
        condition(p, "EmailVerified").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    assert_eq!(
        p.status.unwrap().verified_email.as_deref(),
        Some(new_email.as_str())
    );
    let to_old = maildir::all().into_iter().filter(|m| m.to() == email).count();
    assert_eq!(to_old, 1, "no second mail to the old address");

    let _ = api.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_new_link_on_request_replaces_the_old_one() {
    let (_serial, _, op, api, name, email) = start("resend", "resend").await;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(profile(&name, "bob", &email, &[])).unwrap(),
    )
    .await
    .unwrap();
    let first = links_to(&email, 1, &op).await;
    api.patch(
        &name,
        &PatchParams::apply("resender"),
        &Patch::Apply(&json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
            "metadata": {"name": name, "annotations": {"ganeti.dev/resend-verification": "1"}},
        })),
    )
    .await
    .unwrap();
    let both = links_to(&email, 2, &op).await;
    assert_ne!(both[0], both[1]);
    let (code, body) = post(&op, &token_of(&first[0])).await;
    assert_eq!(code, 410, "the replaced link: {body}");
    assert!(body.contains("newer"), "{body}");
    let newest = both.iter().find(|l| **l != first[0]).unwrap();
    assert_eq!(post(&op, &token_of(newest)).await.0, 200);
    let _ = api.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn ssh_keys_are_parsed_fingerprinted_and_private_keys_refused() {
    let (_serial, _, op, api, name, email) = start("keys", "keys").await;
    // From ssh-keygen; `ssh-keygen -lf` prints this fingerprint for it.
    let good =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICXcY0axmIdfCwWJuClD+uBiHH4Zm/UXE10jgbbpyt9 alice@laptop";
    let fingerprint = "SHA256:/VOZh0gU/r2JIjAzt8K+K6NNofftK4bTVLICAgXSZxg";
    // The right shape for the API server's pattern, but not a key.
    let truncated = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICXcY0axmIdfCwWJuClD alice@laptop";

    // A pasted private key never gets stored: the API server refuses it and says what
    // to do instead.
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----";
    let e = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(profile(&name, "alice", &email, &[good, private])).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");

    api.create(
        &PostParams::default(),
        &serde_json::from_value(profile(&name, "alice", &email, &[good, truncated])).unwrap(),
    )
    .await
    .unwrap();
    let p = wait_until(&api, &name, &op, |p| condition(p, "KeysValid").is_some()).await;
    let (status, reason, message) = condition(&p, "KeysValid").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidKey"));
    assert!(
        message.starts_with("key 2 is not an OpenSSH public key"),
        "{message}"
    );
    assert_eq!(p.status.unwrap().key_fingerprints, vec![fingerprint.to_string()]);

    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&profile(&name, "alice", &email, &[good])),
    )
    .await
    .unwrap();
    let p = wait_until(&api, &name, &op, |p| {
        condition(p, "KeysValid").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    assert_eq!(p.status.unwrap().key_fingerprints, vec![fingerprint.to_string()]);
    let _ = api.delete(&name, &DeleteParams::default()).await;
}
