//! The testbed's SMTP server: a mail sent with lettre arrives in the mail dir.

mod support;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use support::testbed::env;

#[tokio::test]
async fn a_mail_sent_with_lettre_arrives_in_the_mail_dir() {
    let marker = format!("testbed-round-trip-{}", std::process::id());
    let mail = Message::builder()
        .from("ganeti-operator@example.org".parse().unwrap())
        .to("alice@example.org".parse().unwrap())
        .subject(&marker)
        .body(String::from("Hello from the test suite."))
        .unwrap();
    let port: u16 = env("SMTP_PORT").parse().unwrap();
    // The testbed server listens on loopback without TLS, which is what "dangerous" means here.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(env("SMTP_HOST"))
        .port(port)
        .build();
    transport
        .send(mail)
        .await
        .expect("the SMTP server accepts the mail");

    let new_dir = std::path::Path::new(&env("MAIL_DIR")).join("new");
    let mut found = false;
    for _ in 0..50 {
        found = std::fs::read_dir(&new_dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .any(|m| m.contains(&marker) && m.contains("alice@example.org"));
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found, "the mail is stored under {}", new_dir.display());
}
