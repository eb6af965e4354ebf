//! The testbed SMTP server's Maildir ($MAIL_DIR): every mail it accepted, parsed into
//! headers and a (decoded) body.
#![allow(dead_code)]

use super::testbed::env;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::time::Duration;

/// Tells this run's mails from earlier runs' (the Maildir keeps them all): put it in
/// subjects and addresses.
pub fn run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}", std::process::id(), t.as_millis() % 1_000_000)
}

/// The SMTP settings Secret `name` in ganeti-system: the testbed's server, without TLS,
/// mails from `from`.
pub async fn apply_smtp_secret(client: &kube::Client, name: &str, from: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ganeti-system");
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ganeti-system"},
        "stringData": {"host": env("SMTP_HOST"), "port": env("SMTP_PORT"), "tls": "none", "from": from},
    });
    super::apply(&secrets, name, &secret).await;
}

#[derive(Debug, Clone)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or_default()
    }

    /// The envelope recipient the server recorded, else the To header.
    pub fn to(&self) -> String {
        self.header("X-RcptTo")
            .or(self.header("To"))
            .unwrap_or_default()
            .trim_matches(|c| c == '<' || c == '>' || c == ' ')
            .to_string()
    }
}

fn decode_quoted_printable(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(hex) = s.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Message {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut m = Message {
        headers,
        body: body.to_string(),
    };
    match m
        .header("Content-Transfer-Encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("quoted-printable") => m.body = decode_quoted_printable(&m.body),
        Some("base64") => {
            use base64::Engine;
            let compact: String = m.body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a base64 body");
            m.body = String::from_utf8_lossy(&bytes).into_owned();
        }
        _ => {}
    }
    m
}

/// Every mail in the Maildir now.
pub fn all() -> Vec<Message> {
    let dir = std::path::PathBuf::from(env("MAIL_DIR"));
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                out.push(parse(&text));
            }
        }
    }
    out
}

/// The mails whose subject contains `marker`.
pub fn with_subject(marker: &str) -> Vec<Message> {
    all()
        .into_iter()
        .filter(|m| m.subject().contains(marker))
        .collect()
}

/// Waits until at least `count` mails have `marker` in their subject; returns them.
pub async fn wait_for(marker: &str, count: usize, timeout: Duration) -> Vec<Message> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let found = with_subject(marker);
        if found.len() >= count || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A UserProfile `name` for `username` whose `email` is verified (status written as
/// the operator would), so the operator mails that address.
pub async fn apply_verified_profile(client: &kube::Client, name: &str, username: &str, email: &str) {
    use kube::api::{Api, Patch, PatchParams};
    let profiles: Api<ganeti_operator::api::UserProfile> = Api::all(client.clone());
    super::apply(
        &profiles,
        name,
        &serde_json::json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
            "spec": {"username": username, "fullName": username, "email": email, "groups": []},
        }),
    )
    .await;
    profiles
        .patch_status(
            name,
            &PatchParams::apply(super::MANAGER).force(),
            &Patch::Apply(&serde_json::json!({
                "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
                "status": {"verifiedEmail": email},
            })),
        )
        .await
        .unwrap();
}
