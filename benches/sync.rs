//! GanetiCluster sync benchmark: a synthetic RAPI (answers shaped like Ganeti 3.0.2's,
//! recorded from the testbed and scaled) served over TLS on loopback, read by the real
//! client and controller code. Prints `name value unit` lines.
//!
//! - `sync_ratio_<n>`: full sync (fetch + parse + convert + inventory + status plan +
//!   status body) over the raw fetch + parse of the same answers, medians, interleaved.
//! - `sync_second_pass_{rapi,apiserver}_writes_<n>`: writes on an unchanged second pass.
//! - `metrics_render_<n>`: rendering /metrics from the inventory.
//! - `rss_peak_10k`: the process's peak RSS after the 10k runs (includes the in-process
//!   synthetic server and its pre-rendered answers).

use axum::{Router, extract::State, routing::get};
use ganeti_operator::api::GanetiCluster;
use ganeti_operator::controllers::cluster::{plan, read_cluster};
use ganeti_operator::inventory::Inventory;
use ganeti_operator::metrics::Metrics;
use ganeti_operator::rapi::{Credentials, RapiClient, RapiConfig, TlsMode};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Answers {
    info: Vec<u8>,
    features: Vec<u8>,
    nodes: Vec<u8>,
    instances: Vec<u8>,
    jobs: Vec<u8>,
    writes: AtomicU64,
}

fn node(i: usize) -> Value {
    json!({"name": format!("node{i}.ganeti.test"), "offline": false, "master_candidate": i < 10, "drained": false,
        "dtotal": 2_000_000, "dfree": 1_500_000, "sptotal": null, "spfree": null, "mtotal": 257_000, "mnode": 1351,
        "mfree": 128_000, "pinst_cnt": 10, "sinst_cnt": 10, "ctotal": 64, "cnos": 64, "cnodes": 2, "csockets": 2,
        "pip": format!("10.0.{}.{}", i / 250, i % 250), "sip": format!("10.1.{}.{}", i / 250, i % 250),
        "role": if i == 0 { "M" } else if i < 10 { "C" } else { "R" }, "pinst_list": [], "sinst_list": [],
        "master_capable": true, "vm_capable": true, "ndparams": {"oob_program": "", "spindle_count": 1},
        "group.uuid": "557cabb3-3d53-488c-a93d-a2e903431d7e", "ctime": 1795541317.5783312, "mtime": 1795541317.5783312,
        "uuid": format!("8b14cfb1-a886-4c1d-89af-{i:012}"), "serial_no": 1, "tags": []})
}

fn instance(i: usize, nodes: usize) -> Value {
    json!({"name": format!("vm{i}.example.org"), "admin_state": "up", "os": "debootstrap+default",
        "pnode": format!("node{}.ganeti.test", i % nodes), "snodes": [format!("node{}.ganeti.test", (i + 1) % nodes)],
        "disk_template": "drbd", "nic.ips": [format!("10.2.{}.{}", i / 250, i % 250)], "nic.macs": ["aa:00:00:2f:e7:87"],
        "nic.modes": ["bridged"], "nic.uuids": ["51fe46ce-6661-4315-b343-8dd38bf4b683"], "nic.names": [null],
        "nic.links": ["br0"], "nic.networks": [null], "nic.networks.names": [null], "nic.bridges": ["br0"],
        "network_port": 11000 + (i % 1000), "disk.sizes": [20480, 102400], "disk.spindles": [null, null],
        "disk_usage": 122880, "disk.uuids": ["a", "b"], "disk.names": [null, null],
        "beparams": {"minmem": 2048, "maxmem": 2048, "vcpus": 2, "auto_balance": true, "always_failover": false,
            "spindle_use": 1, "memory": 2048},
        "hvparams": {"vnc_bind_address": "0.0.0.0", "kernel_path": ""}, "oper_state": !i.is_multiple_of(7), "oper_ram": 2048,
        "oper_vcpus": 2, "status": if !i.is_multiple_of(7) { "running" } else { "ADMIN_down" }, "custom_hvparams": {},
        "custom_beparams": {}, "custom_nicparams": [{}], "ctime": 1795541331.996601, "mtime": 1795541332.2330883,
        "uuid": format!("904d2888-beac-412d-a393-{i:012}"), "serial_no": 2,
        "tags": [format!("GANETI_WEB_MANAGER:owner:U:user{}", i % 500), "GANETI_WEB_MANAGER:power:G:ops"]})
}

fn answers(instances: usize, nodes: usize) -> Answers {
    let jobs: Vec<Value> = (0..200u64)
        .map(|i| json!({"id": i, "ops": [{"OP_ID": "OP_INSTANCE_STARTUP"}], "status": if i.is_multiple_of(10) { "error" } else { "success" },
            "summary": ["INSTANCE_STARTUP(vm1)"], "opstatus": ["success"], "received_ts": [1795541319, 859656],
            "start_ts": [1795541320, 5618], "end_ts": [1795541320, 45064]}))
        .collect();
    Answers {
        info: serde_json::to_vec(&json!({"software_version": "3.0.2", "protocol_version": 3000000, "name": "cluster.example.org",
            "master": "node0.ganeti.test", "default_hypervisor": "kvm", "enabled_hypervisors": ["kvm"],
            "beparams": {"default": {"vcpus": 1}}, "candidate_pool_size": 10, "tags": [], "enabled_disk_templates": ["drbd"]}))
        .unwrap(),
        features: serde_json::to_vec(&json!(["instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1"])).unwrap(),
        nodes: serde_json::to_vec(&(0..nodes).map(node).collect::<Vec<_>>()).unwrap(),
        instances: serde_json::to_vec(&(0..instances).map(|i| instance(i, nodes)).collect::<Vec<_>>()).unwrap(),
        jobs: serde_json::to_vec(&jobs).unwrap(),
        writes: AtomicU64::new(0),
    }
}

async fn serve(answers: Arc<Answers>) -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let body = |f: fn(&Answers) -> &Vec<u8>| {
        move |State(a): State<Arc<Answers>>| async move { ([("content-type", "application/json")], f(&a).clone()) }
    };
    let app = Router::new()
        .route("/2/info", get(body(|a| &a.info)))
        .route("/2/features", get(body(|a| &a.features)))
        .route("/2/nodes", get(body(|a| &a.nodes)))
        .route("/2/instances", get(body(|a| &a.instances)))
        .route("/2/jobs", get(body(|a| &a.jobs)))
        .fallback(
            |State(a): State<Arc<Answers>>, method: axum::http::Method| async move {
                if method != axum::http::Method::GET {
                    a.writes.fetch_add(1, Ordering::Relaxed);
                }
                axum::http::StatusCode::NOT_FOUND
            },
        )
        .with_state(answers);
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem.clone().into_bytes(), key_pem.into_bytes())
            .await
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
    (port, cert_pem)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn run(instances: usize, nodes: usize, rounds: usize, label: &str) {
    let answers = Arc::new(answers(instances, nodes));
    let (port, ca) = serve(answers.clone()).await;
    let client = RapiClient::new(RapiConfig::new(
        format!("https://127.0.0.1:{port}"),
        Credentials::new("bench", "bench"),
        TlsMode::CaBundle(ca.into_bytes()),
    ))
    .unwrap();
    let inventory = Inventory::default();
    let metrics = Metrics::new(inventory.clone()).unwrap();
    let mut cluster: GanetiCluster = serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": "bench", "generation": 1},
        "spec": {"rapiUrl": format!("https://127.0.0.1:{port}"), "credentialsSecret": {"name": "s"}}
    }))
    .unwrap();
    let heartbeat = SignedDuration::from_secs(300);

    // Warm up, and the first pass that writes status.
    let inv = read_cluster(&client, "bench", "GANETI_WEB_MANAGER".into())
        .await
        .ok()
        .unwrap();
    inventory.put(inv);
    let snapshot = inventory.get("bench").unwrap();
    let first = plan::plan_status(
        &cluster,
        &plan::SyncOutcome::Synced(&snapshot),
        Timestamp::now(),
        heartbeat,
    );
    cluster.status = first;

    let (mut raw, mut full) = (Vec::new(), Vec::new());
    let mut apiserver_writes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let (a, b, c, d, e) = tokio::join!(
            client.info(),
            client.features(),
            client.nodes(),
            client.instances(),
            client.jobs()
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok());
        raw.push(t.elapsed().as_secs_f64());
        drop((a, b, c, d, e));

        let t = Instant::now();
        let inv = read_cluster(&client, "bench", "GANETI_WEB_MANAGER".into())
            .await
            .ok()
            .unwrap();
        inventory.put(inv);
        let snapshot = inventory.get("bench").unwrap();
        if let Some(status) = plan::plan_status(
            &cluster,
            &plan::SyncOutcome::Synced(&snapshot),
            Timestamp::now(),
            heartbeat,
        ) {
            apiserver_writes += 1;
            let _body = serde_json::to_vec(&status).unwrap();
        }
        full.push(t.elapsed().as_secs_f64());
    }
    let ratio = median(full.clone()) / median(raw.clone());
    println!("sync_raw_fetch_parse_{label} {:.1} ms", median(raw) * 1e3);
    println!("sync_full_{label} {:.1} ms", median(full) * 1e3);
    println!("sync_ratio_{label} {ratio:.2} x");
    println!(
        "sync_second_pass_rapi_writes_{label} {} writes",
        answers.writes.load(Ordering::Relaxed)
    );
    println!("sync_second_pass_apiserver_writes_{label} {apiserver_writes} writes");
    let renders: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let text = metrics.render();
            assert!(text.len() > 1000);
            t.elapsed().as_secs_f64()
        })
        .collect();
    println!("metrics_render_{label} {:.1} ms", median(renders) * 1e3);
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(1_000, 100, 30, "1k").await;
        run(10_000, 1_000, 10, "10k").await;
    });
    println!("rss_peak_10k {:.0} MiB", peak_rss_mib());
}
