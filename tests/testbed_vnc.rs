//! The VNC console through the operator, against the real testbed: a kvm VM under qemu
//! software emulation, tickets from the API (bearer tokens reviewed by the real API
//! server), the operator's websocket proxy, Debian's noVNC page, and headless Debian
//! chromium looking at the VM's screen.
//!
//! Instances are `vnc-*` on 198.51.100.71-72.

mod support;

use ganeti_operator::api::{RoleBinding, Subject};
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::browser::Browser;
use support::ganeti::{apply_cluster, instance_request, rapi};
use support::operator::{Operator, Options};
use support::testbed::env;
use tokio_tungstenite::tungstenite::{self, Message};

const CLUSTER: &str = "vnc-tb";
/// Debian's novnc package.
const NOVNC: &str = "/usr/share/novnc";
/// The page's top bar; below it, the VM's screen.
const BAR_PX: u32 = 36;
/// The page's background where no screen is drawn: #333.
const PAGE_BACKGROUND: [u8; 3] = [0x33, 0x33, 0x33];

/// alice's kvm VM (a VNC server) and bob's fake one.
async fn instances() -> support::ganeti::Instances {
    let c = rapi();
    let guard = support::ganeti::Instances::fresh(vec!["vnc-alice".into(), "vnc-bob".into()]);
    let mut kvm = instance_request("vnc-alice", &support::ganeti::ip(72));
    kvm.hypervisor = Some("kvm".into());
    kvm.hvparams.insert("serial_console".into(), json!(false));
    kvm.tags = vec![format_owner(DEFAULT_PREFIX, &Subject::user("alice")).unwrap()];
    let mut fake = instance_request("vnc-bob", &support::ganeti::ip(71));
    fake.tags = vec![format_owner(DEFAULT_PREFIX, &Subject::user("bob")).unwrap()];
    let jobs = [
        c.create_instance(&kvm, "tests/testbed_vnc")
            .await
            .expect("kvm create accepted"),
        c.create_instance(&fake, "tests/testbed_vnc")
            .await
            .expect("fake create accepted"),
    ];
    for job in jobs {
        c.wait_job(job, support::ganeti::CREATE_DEADLINE)
            .await
            .expect("job wait")
            .into_success()
            .expect("instance created");
    }
    guard
}

async fn post(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A fresh ticket for alice's VM.
async fn ticket(http: &reqwest::Client, op: &Operator, token: &str) -> (String, String) {
    let (status, body) = post(
        http,
        &op.url(&format!("/api/v1/instances/{CLUSTER}/vnc-alice/console")),
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["ticket"].as_str().unwrap().to_string(),
        body["url"].as_str().unwrap().to_string(),
    )
}

/// Opens the websocket; the HTTP status it was refused with, or the first bytes the
/// VM's VNC server sent through it.
async fn open_socket(op: &Operator, query: &str) -> Result<Vec<u8>, u16> {
    let url = format!("ws://127.0.0.1:{}/console/ws?{query}", op.port);
    let (mut socket, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(resp)) => return Err(resp.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    };
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(15), socket.next())
        .await
        .expect("the VNC server greets within 15 s")
        .expect("a message")
        .expect("no websocket error");
    let _ = socket.close(None).await;
    match first {
        Message::Binary(b) => Ok(b.to_vec()),
        other => panic!("expected binary RFB, got {other:?}"),
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The screen area of the page (below the bar): how many of its pixels are not the page
/// background, and how many distinct colours they have.
fn screen_pixels(png_bytes: &[u8]) -> (usize, usize, usize) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "colour screenshot: {:?}", info.color_type);
    let (mut total, mut drawn) = (0, 0);
    let mut colours = std::collections::HashSet::new();
    for y in (BAR_PX + 4)..info.height {
        for x in 0..info.width {
            let i = ((y * info.width + x) as usize) * channels;
            let rgb = [buf[i], buf[i + 1], buf[i + 2]];
            total += 1;
            if rgb != PAGE_BACKGROUND {
                drawn += 1;
                colours.insert(rgb);
            }
        }
    }
    (total, drawn, colours.len())
}

#[tokio::test]
async fn the_console_shows_the_vms_screen_in_a_browser_through_single_use_tickets() {
    assert!(
        Path::new(NOVNC).join("core/rfb.js").is_file(),
        "Debian's novnc package is not installed (scripts/install-deps installs it)"
    );
    let (alice, bob) = (env("KUBE_TOKEN_ALICE"), env("KUBE_TOKEN_BOB"));
    let root = support::install_with_policies().await;
    apply_cluster(&root, CLUSTER, "vnc-rapi", json!({})).await;
    let bindings: kube::Api<RoleBinding> = kube::Api::all(root.clone());
    support::apply(
        &bindings,
        "vnc-users",
        &json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": "vnc-users"},
            "spec": {"roleRef": "user", "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]},
        }),
    )
    .await;
    let _instances = instances().await;
    let op = Operator::start_with(
        "vnc",
        Options::default()
            .arg("--novnc-dir")
            .arg(NOVNC)
            .arg("--public-url")
            .arg("http://127.0.0.1:{port}"),
    )
    .await;
    let http = reqwest::Client::new();

    // Wait until the operator's inventory has both VMs (it may first wait for the lease).
    let started = Instant::now();
    loop {
        let (status, body) = post(
            &http,
            &op.url(&format!("/api/v1/instances/{CLUSTER}/vnc-alice/console")),
            &bob,
        )
        .await;
        // bob holds no right on alice's VM: the same 404 as for no VM at all, once the
        // cluster has been read (503 before).
        // ("no cluster" until this replica has read it.)
        if status == 404 && body["error"] == format!("no VM vnc-alice on {CLUSTER}") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the operator never knew vnc-alice: {status} {body}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A ticket for alice's VM is no ticket for bob's: neither the page nor the socket.
    let (t1, page_url) = ticket(&http, &op, &alice).await;
    assert!(page_url.starts_with(&op.url(&format!("/console/{CLUSTER}/vnc-alice?ticket="))));
    let other = http
        .get(op.url(&format!("/console/{CLUSTER}/vnc-bob?ticket={}", encode(&t1))))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 403);
    assert!(other.text().await.unwrap().contains("another VM"));
    let refused = open_socket(
        &op,
        &format!("ticket={}&cluster={CLUSTER}&instance=vnc-bob", encode(&t1)),
    )
    .await;
    assert_eq!(refused, Err(403));
    let forged = open_socket(&op, &format!("ticket={}x", encode(&t1))).await;
    assert_eq!(forged, Err(403), "a damaged signature");

    // The ticket opens the VM's VNC server (RFB greeting through the proxy), once.
    let t = Instant::now();
    let greeting = open_socket(&op, &format!("ticket={}", encode(&t1)))
        .await
        .expect("the ticket opens the console");
    println!("RFB greeting through the proxy after {:?}", t.elapsed());
    assert!(greeting.starts_with(b"RFB 003."), "{greeting:?}");
    assert_eq!(
        open_socket(&op, &format!("ticket={}", encode(&t1))).await,
        Err(410),
        "a used ticket"
    );

    // bob's VM runs under the fake hypervisor: no VNC, said as such.
    let (status, body) = post(
        &http,
        &op.url(&format!("/api/v1/instances/{CLUSTER}/vnc-bob/console")),
        &bob,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resp = http
        .get(format!(
            "http://127.0.0.1:{}/console/ws?ticket={}",
            op.port,
            encode(body["ticket"].as_str().unwrap())
        ))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let why = resp.text().await.unwrap();
    assert!(why.contains("no graphical console"), "{why}");

    // A browser: the page, noVNC, the websocket, the VM's screen.
    let (_, page_url) = ticket(&http, &op, &alice).await;
    let mut browser = Browser::start().await;
    let t = Instant::now();
    browser.open(&page_url).await;
    let connected = browser
        .wait_for(
            "document.getElementById('status').textContent.startsWith('Connected')",
            Duration::from_secs(60),
        )
        .await;
    let status = browser
        .eval("document.getElementById('status').textContent")
        .await;
    assert!(connected, "the page did not connect: {status}\n{}", op.log());
    println!("console page connected after {:?}", t.elapsed());
    // QEMU names its VNC desktop after the VM; noVNC puts that in the title.
    assert!(
        browser
            .wait_for(
                "document.title.includes('QEMU (vnc-alice')",
                Duration::from_secs(10)
            )
            .await,
        "title: {}",
        browser.eval("document.title").await
    );
    assert_eq!(
        browser.eval("location.search").await,
        json!(""),
        "the ticket is gone from the address bar"
    );
    // Frames arrive after the connect: wait until the screen is drawn.
    let started = Instant::now();
    let (total, drawn, colours, png) = loop {
        let png = browser.screenshot().await;
        let (total, drawn, colours) = screen_pixels(&png);
        if (drawn * 5 > total && colours >= 2) || started.elapsed() > Duration::from_secs(30) {
            break (total, drawn, colours, png);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("screen area: {drawn} of {total} pixels drawn, {colours} colours");
    let shot = std::env::temp_dir().join(format!("ganeti-operator-console-{}.png", std::process::id()));
    std::fs::write(&shot, &png).unwrap();
    assert!(
        drawn * 5 > total && colours >= 2,
        "the VM's screen is not on the page ({drawn} of {total} pixels drawn, {colours} colours; see {})",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
    // The browser went through the websocket: its ticket is spent.
    let ticket_of_page = page_url.rsplit_once("ticket=").unwrap().1;
    assert_eq!(
        open_socket(&op, &format!("ticket={ticket_of_page}")).await,
        Err(410)
    );
    drop(browser);
    // The browser closed: the session ends (and is logged with its byte counts).
    let started = Instant::now();
    while !op.log().contains("console session ended") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", op.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
