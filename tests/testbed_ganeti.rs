//! The testbed's Ganeti cluster: its Remote API answers over TLS with the pinned CA,
//! refuses a wrong password, and refuses writes from the read-only user.

mod support;

use support::testbed::env;

fn pinned_client() -> reqwest::Client {
    let ca = std::fs::read(env("GANETI_RAPI_CA")).expect("the testbed's RAPI CA file");
    let ca = reqwest::Certificate::from_pem(&ca).expect("CA is PEM");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

fn url(path: &str) -> String {
    format!("{}{path}", env("GANETI_RAPI_URL").trim_end_matches('/'))
}

#[tokio::test]
async fn rapi_info_over_tls_with_the_pinned_ca() {
    let resp = pinned_client()
        .get(url("/2/info"))
        .basic_auth(env("GANETI_RAPI_USER"), Some(env("GANETI_RAPI_PASSWORD")))
        .send()
        .await
        .expect("RAPI answers over TLS with the pinned CA");
    assert_eq!(resp.status(), 200);
    let info: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(info["name"], env("GANETI_CLUSTER_NAME"));
    assert!(
        info["software_version"].as_str().unwrap().starts_with("3."),
        "{info}"
    );
    let hypervisors = info["enabled_hypervisors"].as_array().unwrap();
    assert!(hypervisors.iter().any(|h| h == "fake"), "{info}");
    assert!(hypervisors.iter().any(|h| h == "kvm"), "{info}");
}

#[tokio::test]
async fn an_unpinned_client_does_not_trust_the_cluster() {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let err = client
        .get(url("/2/info"))
        .send()
        .await
        .expect_err("the testbed CA is not a public CA");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_401() {
    let resp = pinned_client()
        .get(url("/2/instances"))
        .basic_auth(env("GANETI_RAPI_USER"), Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn the_read_only_user_reads_but_cannot_write() {
    let client = pinned_client();
    let user = env("GANETI_RAPI_RO_USER");
    let password = env("GANETI_RAPI_RO_PASSWORD");
    let read = client
        .get(url("/2/nodes"))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .put(url("/2/tags?tag=ganeti-operator-test"))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "{:?}", write.text().await);
}
