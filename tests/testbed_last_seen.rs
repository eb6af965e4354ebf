//! `UserProfile.status.lastSeen` against the real testbed: a request the operator
//! authenticates writes it for the user's profiles, at most once an hour, and the profile
//! controller's own status writes leave it alone.

mod support;

use ganeti_operator::api::UserProfile;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};
use support::operator::Operator;
use support::testbed::env;

const PROFILES: [&str; 4] = ["seen-alice", "seen-alice-old", "seen-bob", "seen-alice-late"];

async fn last_seen(api: &Api<UserProfile>, name: &str) -> Option<String> {
    let p = api.get(name).await.unwrap();
    p.status.and_then(|s| s.last_seen).map(|t| t.0.to_string())
}

async fn create(api: &Api<UserProfile>, name: &str, user: &str) {
    let profile = json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
        "metadata": {"name": name},
        "spec": {"username": user, "email": format!("{name}@seen.test")},
    });
    api.patch(
        name,
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&profile),
    )
    .await
    .unwrap();
}

async fn get_as(op: &Operator, token: &str) -> u16 {
    reqwest::Client::new()
        .get(op.url("/api/v1/instances"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_authenticated_request_records_last_seen_at_most_once_an_hour() {
    let root = support::install_with_policies().await;
    let api: Api<UserProfile> = Api::all(root.clone());
    // First: the operator writes the admission policies' parameters profiles need.
    let op = Operator::start("last-seen").await;
    for name in PROFILES {
        let _ = api.delete(name, &DeleteParams::default()).await;
        support::delete_and_wait(&api, name).await;
    }
    for (name, user) in PROFILES[..3].iter().zip(["alice", "alice", "bob"]) {
        create(&api, name, user).await;
    }
    // Seen three hours ago (by an earlier operator): due again.
    let old = "2026-01-01T00:00:00Z";
    api.patch_status(
        "seen-alice-old",
        &PatchParams::apply("tests").force(),
        &Patch::Apply(json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
            "status": {"lastSeen": old},
        })),
    )
    .await
    .unwrap();

    let alice = env("KUBE_TOKEN_ALICE");
    let started = Instant::now();
    let seen = loop {
        // Until the operator has the profiles in its snapshot, a request finds none.
        let status = get_as(&op, &alice).await;
        // Authenticated (503 only says no cluster is read: there is none here).
        assert_ne!(status, 401);
        let a = last_seen(&api, "seen-alice").await;
        let b = last_seen(&api, "seen-alice-old").await;
        if let (Some(a), Some(b)) = (&a, &b)
            && b != old
        {
            break (a.clone(), b.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "lastSeen not written (HTTP {status}, {a:?}, {b:?}):\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("lastSeen written in {:?}: {seen:?}", started.elapsed());
    // Only alice's profiles: bob made no request.
    assert_eq!(last_seen(&api, "seen-bob").await, None);

    // More requests within the hour write nothing: same value, and the profile
    // controller's status writes keep the field. (The API server keeps whole seconds:
    // a second later, a rewrite would show.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        get_as(&op, &alice).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(last_seen(&api, "seen-alice").await.as_ref(), Some(&seen.0));
    assert_eq!(last_seen(&api, "seen-alice-old").await.as_ref(), Some(&seen.1));
    // A second replica (a new process, nothing remembered) reads the fresh value from
    // the profile and writes nothing to it, while it does write a profile made since.
    drop(op);
    create(&api, "seen-alice-late", "alice").await;
    let op = Operator::start("last-seen-2").await;
    let started = Instant::now();
    while last_seen(&api, "seen-alice-late").await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second replica wrote no lastSeen:\n{}",
            op.log()
        );
        get_as(&op, &alice).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last_seen(&api, "seen-alice").await.as_ref(), Some(&seen.0));
    // A token the API server refuses is nobody: nothing is written for it.
    assert_eq!(get_as(&op, "not-a-token").await, 401);
    assert_eq!(last_seen(&api, "seen-bob").await, None);
    for name in PROFILES {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}
