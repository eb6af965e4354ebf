//! GanetiCluster sync benchmark: a synthetic RAPI (answers shaped like Ganeti 3.0.2's,
//! recorded from the testbed and scaled) served over TLS on loopback, read by the real
//! client and controller code. Prints `name value unit` lines.
//!
//! Three processes, so that each figure measures what it names:
//! - the synthetic RAPI server: this binary run again with `GANETI_BENCH_ROLE=serve`.
//!   It pre-renders the answers and counts writes (any request but a GET).
//! - the timing driver (this process):
//!   - `sync_ratio_<n>`: full sync (fetch + parse into the inventory + inventory swap,
//!     which frees the previous snapshot + status plan + status body when it changed)
//!     over the raw fetch + parse of the same answers with the same client into the
//!     plain wire types (`RapiClient::{info, features, nodes, instances}`, and the job
//!     status counts both read the same way).
//!     Medians of interleaved rounds; `sync_{read,swap,plan}_<n>` break the full sync
//!     down. The sync parses only the fields the inventory keeps (the baseline parses
//!     every field the wire types name), so the ratio can come out below 1.
//!   - `sync_second_pass_{rapi,apiserver}_writes_<n>`: writes on unchanged passes.
//!   - `metrics_render_<n>`: rendering /metrics from the inventory.
//! - the memory probe: this binary run again with `GANETI_BENCH_ROLE=rss`. It does only
//!   what the operator does for one 10k-instance cluster (sync passes with status
//!   plans, /metrics renders) and reports its own peak RSS (`VmHWM`): `rss_peak_10k`
//!   counts neither the server and its answers nor the driver's baseline parses. The
//!   operator's Kubernetes watches and HTTP server are not part of it.
//! - the fleet probe: this binary run again with `GANETI_BENCH_ROLE=fleet`: one replica
//!   following 50 clusters × 2,000 instances (one synthetic RAPI serves every cluster,
//!   each through its own client, as the registry keeps one per cluster). Per sync
//!   interval (`DEFAULT_SYNC_INTERVAL`, 30 s) every cluster is read once and put into
//!   the inventory, with a few instances changed since the previous read (the server
//!   alternates two answers, 4 instances apart). The reads are spread evenly over the
//!   interval (no two coincide: the most rebuilds). The authorization snapshot is
//!   rebuilt over every inventory (`Snapshot::build_after` the previous one, reusing
//!   the unchanged clusters' facts) when `Rules::watch` would: after
//!   a change, no sooner than `pause_after` the previous build (the same function),
//!   on a clock that advances by the reads' spacing; the compute catalog is brought up
//!   to each (`Catalog::update`, as `Catalog::follow` does); /metrics is rendered once
//!   per interval. The intervals are run back to back:
//!   - `sync_50x2k_cpu`: the probe's CPU time (user + system, all threads) per interval,
//!     divided by the interval (median over the intervals after the first);
//!   - `sync_50x2k_rss`: its peak RSS (`VmHWM`) after them, with the inventory, the
//!     snapshots and the catalog holding the 100k instances (and whatever the catalog's
//!     watch history keeps alive).
//!
//!   Not in it: the tag sync (a Kubernetes client's work on each snapshot), watches.

use axum::{Router, extract::State, routing::get};
use ganeti_operator::access::rules::{Snapshot, pause_after};
use ganeti_operator::api::{GanetiCluster, Role, RoleBinding, RoleBindingSpec, Subject};
use ganeti_operator::compute::catalog::{Catalog, HISTORY};
use ganeti_operator::controllers::cluster::DEFAULT_SYNC_INTERVAL;
use ganeti_operator::controllers::cluster::{plan, read_cluster};
use ganeti_operator::inventory::Inventory;
use ganeti_operator::metrics::Metrics;
use ganeti_operator::rapi::{Credentials, RapiClient, RapiConfig, TlsMode};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

const ROLE: &str = "GANETI_BENCH_ROLE";
const HEARTBEAT: SignedDuration = SignedDuration::from_secs(300);

struct Answers {
    info: Vec<u8>,
    features: Vec<u8>,
    nodes: Vec<u8>,
    instances: Vec<u8>,
    /// The same instances, a few of them changed (every 500th stopped or started).
    instances_changed: Vec<u8>,
    /// Which of the two `/2/instances` answers (`flip` on stdin toggles it).
    changed: AtomicBool,
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

fn instance(i: usize, nodes: usize, changed: bool) -> Value {
    // Every 500th instance stops (or starts) in the changed answer.
    let up = !i.is_multiple_of(7) ^ (changed && i.is_multiple_of(500));
    json!({"name": format!("vm{i}.example.org"), "admin_state": "up", "os": "debootstrap+default",
        "pnode": format!("node{}.ganeti.test", i % nodes), "snodes": [format!("node{}.ganeti.test", (i + 1) % nodes)],
        "disk_template": "drbd", "nic.ips": [format!("10.2.{}.{}", i / 250, i % 250)], "nic.macs": ["aa:00:00:2f:e7:87"],
        "nic.modes": ["bridged"], "nic.uuids": ["51fe46ce-6661-4315-b343-8dd38bf4b683"], "nic.names": [null],
        "nic.links": ["br0"], "nic.networks": [null], "nic.networks.names": [null], "nic.bridges": ["br0"],
        "network_port": 11000 + (i % 1000), "disk.sizes": [20480, 102400], "disk.spindles": [null, null],
        "disk_usage": 122880, "disk.uuids": ["a", "b"], "disk.names": [null, null],
        "beparams": {"minmem": 2048, "maxmem": 2048, "vcpus": 2, "auto_balance": true, "always_failover": false,
            "spindle_use": 1, "memory": 2048},
        "hvparams": {"vnc_bind_address": "0.0.0.0", "kernel_path": ""}, "oper_state": up, "oper_ram": 2048,
        "oper_vcpus": 2, "status": if up { "running" } else { "ADMIN_down" }, "custom_hvparams": {},
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
        instances: serde_json::to_vec(&(0..instances).map(|i| instance(i, nodes, false)).collect::<Vec<_>>()).unwrap(),
        instances_changed: serde_json::to_vec(&(0..instances).map(|i| instance(i, nodes, true)).collect::<Vec<_>>())
            .unwrap(),
        changed: AtomicBool::new(false),
        // As `GET /2/query/job?fields=status` answers: one `[[status, value]]` row per job.
        jobs: serde_json::to_vec(&json!({
            "fields": [{"name": "status", "title": "Status", "kind": "text", "doc": "Job status"}],
            "data": jobs.iter().map(|j| json!([[0, j["status"]]])).collect::<Vec<_>>(),
        }))
        .unwrap(),
        writes: AtomicU64::new(0),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The server process: prints `PORT <port>`, the CA PEM and `END`; then answers
/// `writes` on stdin with the write count, and exits when stdin closes.
fn serve_main() {
    let size = |name: &str| -> usize { std::env::var(name).unwrap().parse().unwrap() };
    let answers = Arc::new(answers(
        size("GANETI_BENCH_INSTANCES"),
        size("GANETI_BENCH_NODES"),
    ));
    let rt = runtime();
    let (port, ca) = rt.block_on(serve(answers.clone()));
    println!("PORT {port}\n{}END", ca);
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().trim() {
            "writes" => println!("{}", answers.writes.load(Ordering::Relaxed)),
            "flip" => {
                answers.changed.fetch_xor(true, Ordering::Relaxed);
                println!("ok");
            }
            _ => continue,
        }
        std::io::stdout().flush().unwrap();
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
        .route(
            "/2/instances",
            get(|State(a): State<Arc<Answers>>| async move {
                let body = if a.changed.load(Ordering::Relaxed) {
                    &a.instances_changed
                } else {
                    &a.instances
                };
                ([("content-type", "application/json")], body.clone())
            }),
        )
        .route("/2/query/job", get(body(|a| &a.jobs)))
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

/// This binary, run again in another role.
fn spawn_role(role: &str, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The synthetic RAPI in its own process; ended (by its own pid) when dropped.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    url: String,
    ca: String,
}

impl Server {
    fn start(instances: usize, nodes: usize) -> Self {
        let mut child = spawn_role(
            "serve",
            &[
                ("GANETI_BENCH_INSTANCES", instances.to_string()),
                ("GANETI_BENCH_NODES", nodes.to_string()),
            ],
        );
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        let mut ca = String::new();
        loop {
            line.clear();
            stdout.read_line(&mut line).unwrap();
            if line.trim() == "END" {
                break;
            }
            ca.push_str(&line);
        }
        Server {
            child,
            stdin,
            stdout,
            url: format!("https://127.0.0.1:{port}"),
            ca,
        }
    }

    /// Switches `/2/instances` to the other answer (a few instances changed).
    fn flip(&mut self) {
        writeln!(self.stdin, "flip").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
    }

    /// Requests other than GETs the server has seen.
    fn writes(&mut self) -> u64 {
        writeln!(self.stdin, "writes").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }

    fn client(&self) -> RapiClient {
        RapiClient::new(RapiConfig::new(
            &self.url,
            Credentials::new("bench", "bench"),
            TlsMode::CaBundle(self.ca.clone().into_bytes()),
        ))
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_object(url: &str) -> GanetiCluster {
    serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster", "metadata": {"name": "bench", "generation": 1},
        "spec": {"rapiUrl": url, "credentialsSecret": {"name": "s"}}
    }))
    .unwrap()
}

/// One full sync as the controller does it: read, swap into the shared inventory,
/// plan the status and serialise it when it changed. Returns the status written (if
/// any) and the time of each phase.
async fn full_sync(
    client: &RapiClient,
    inventory: &Inventory,
    cluster: &GanetiCluster,
) -> (
    Option<ganeti_operator::api::cluster::GanetiClusterStatus>,
    [f64; 3],
) {
    full_sync_of("bench", client, inventory, cluster).await
}

/// [`full_sync`] of the cluster called `name`.
async fn full_sync_of(
    name: &str,
    client: &RapiClient,
    inventory: &Inventory,
    cluster: &GanetiCluster,
) -> (
    Option<ganeti_operator::api::cluster::GanetiClusterStatus>,
    [f64; 3],
) {
    let t = Instant::now();
    let inv = read_cluster(client, name, "GANETI_WEB_MANAGER".into())
        .await
        .ok()
        .unwrap();
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    inventory.put(inv);
    let swap = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let snapshot = inventory.get(name).unwrap();
    let status = plan::plan_status(
        cluster,
        &plan::SyncOutcome::Synced(&snapshot),
        Timestamp::now(),
        HEARTBEAT,
    );
    if let Some(status) = &status {
        let body = serde_json::to_vec(status).unwrap();
        assert!(!body.is_empty());
    }
    (status, [read, swap, t.elapsed().as_secs_f64()])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn run(server: &mut Server, rounds: usize, label: &str) {
    let client = server.client();
    let inventory = Inventory::default();
    let metrics = Metrics::new(inventory.clone()).unwrap();
    let mut cluster = cluster_object(&server.url);

    // Warm up, and the first pass, which writes status.
    let (first, _) = full_sync(&client, &inventory, &cluster).await;
    cluster.status = Some(first.expect("the first pass writes status"));

    let (mut raw, mut full) = (Vec::new(), Vec::new());
    let mut phases: [Vec<f64>; 3] = Default::default();
    let mut apiserver_writes = 0;
    let writes_before = server.writes();
    for _ in 0..rounds {
        let t = Instant::now();
        let (a, b, c, d, e) = tokio::join!(
            client.info(),
            client.features(),
            client.nodes(),
            client.instances(),
            client.job_counts()
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok());
        raw.push(t.elapsed().as_secs_f64());
        drop((a, b, c, d, e));

        let t = Instant::now();
        let (status, times) = full_sync(&client, &inventory, &cluster).await;
        full.push(t.elapsed().as_secs_f64());
        apiserver_writes += usize::from(status.is_some());
        for (p, t) in phases.iter_mut().zip(times) {
            p.push(t);
        }
    }
    let rapi_writes = server.writes() - writes_before;
    let ratio = median(full.clone()) / median(raw.clone());
    println!("sync_raw_fetch_parse_{label} {:.1} ms", median(raw) * 1e3);
    println!("sync_full_{label} {:.1} ms", median(full) * 1e3);
    for (name, p) in ["read", "swap", "plan"].iter().zip(phases) {
        println!("sync_{name}_{label} {:.1} ms", median(p) * 1e3);
    }
    println!("sync_ratio_{label} {ratio:.2} x");
    println!("sync_second_pass_rapi_writes_{label} {rapi_writes} writes");
    println!("sync_second_pass_apiserver_writes_{label} {apiserver_writes} writes");
    let renders: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert!(scrape(&metrics) > 1000);
            t.elapsed().as_secs_f64()
        })
        .collect();
    println!("metrics_render_{label} {:.1} ms", median(renders) * 1e3);
}

/// What `/metrics` does for a scrape: the text rendered in chunks, each handed on (here
/// counted and dropped, there sent). Returns the bytes.
fn scrape(metrics: &Metrics) -> usize {
    let mut bytes = 0;
    metrics.render_chunks(|chunk| {
        bytes += chunk.len();
        true
    });
    bytes
}

/// The memory probe: the operator's work for one cluster, then its own peak RSS.
fn rss_main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::var("GANETI_BENCH_URL").unwrap();
    let ca = std::env::var("GANETI_BENCH_CA").unwrap();
    runtime().block_on(async {
        let client = RapiClient::new(RapiConfig::new(
            &url,
            Credentials::new("bench", "bench"),
            TlsMode::CaBundle(ca.into_bytes()),
        ))
        .unwrap();
        let inventory = Inventory::default();
        let metrics = Metrics::new(inventory.clone()).unwrap();
        let mut cluster = cluster_object(&url);
        for _ in 0..3 {
            let (status, _) = full_sync(&client, &inventory, &cluster).await;
            if status.is_some() {
                cluster.status = status;
            }
            assert!(scrape(&metrics) > 1000);
        }
    });
    println!("{}", peak_rss_kib());
}

const FLEET_CLUSTERS: usize = 50;
const FLEET_INSTANCES: usize = 2_000;
const FLEET_NODES: usize = 40;
/// Instances the changed answer differs in (every 500th of 2,000).
const FLEET_CHANGES: usize = FLEET_INSTANCES / 500;

/// CPU time of this process (user + system, every thread), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command name (in parentheses, may hold spaces) come fields 3, 4, ...:
    // utime and stime are fields 14 and 15 of proc(5), in USER_HZ (100 on Linux).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The roles and bindings of the fleet: the preconfigured roles, administrators and
/// users by group, and 100 users bound to `advanced-user` on one cluster each.
fn fleet_rules() -> (Vec<Arc<Role>>, Vec<Arc<RoleBinding>>) {
    let roles = ganeti_operator::authz::preconfigured_roles()
        .into_iter()
        .map(Arc::new)
        .collect();
    let binding = |name: String, role: &str, subject: Subject, clusters: Vec<String>| {
        Arc::new(RoleBinding::new(
            &name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: vec![subject],
                clusters,
                instances: vec![],
            },
        ))
    };
    let mut bindings = vec![
        binding(
            "administrators".into(),
            ganeti_operator::authz::ADMINISTRATOR,
            Subject::group("ganeti-admins"),
            vec![],
        ),
        binding(
            "users".into(),
            ganeti_operator::authz::USER,
            Subject::group("ganeti-users"),
            vec![],
        ),
    ];
    for n in 0..100 {
        bindings.push(binding(
            format!("advanced-{n}"),
            ganeti_operator::authz::ADVANCED_USER,
            Subject::user(format!("user{n}")),
            vec![format!("c{}", n % FLEET_CLUSTERS)],
        ));
    }
    (roles, bindings)
}

/// The fleet probe: on each `go` on stdin, one sync interval's work for every
/// cluster; prints `<cpu seconds> <wall seconds> <RSS KiB>`. At the end of stdin,
/// prints `VmHWM` in KiB.
fn fleet_main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::var("GANETI_BENCH_URL").unwrap();
    let ca = std::env::var("GANETI_BENCH_CA").unwrap();
    runtime().block_on(async {
        let clients: Vec<RapiClient> = (0..FLEET_CLUSTERS)
            .map(|_| {
                RapiClient::new(RapiConfig::new(
                    &url,
                    Credentials::new("bench", "bench"),
                    TlsMode::CaBundle(ca.clone().into_bytes()),
                ))
                .unwrap()
            })
            .collect();
        let names: Vec<String> = (0..FLEET_CLUSTERS).map(|c| format!("c{c}")).collect();
        let mut objects: Vec<GanetiCluster> = (0..FLEET_CLUSTERS).map(|_| cluster_object(&url)).collect();
        let inventory = Inventory::default();
        let metrics = Metrics::new(inventory.clone()).unwrap();
        let catalog = Catalog::default();
        let applications = Arc::default();
        let (roles, bindings) = fleet_rules();
        let limit_kib: u64 = std::env::var("GANETI_BENCH_RSS_LIMIT_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3072)
            * 1024;
        let mut stdin = BufReader::new(std::io::stdin());
        let mut line = String::new();
        // The simulated clock: intervals run back to back here, but the pacing of
        // rebuilds is decided as if each lasted `DEFAULT_SYNC_INTERVAL`.
        let spacing = DEFAULT_SYNC_INTERVAL / FLEET_CLUSTERS as u32;
        let mut interval_start = std::time::Duration::ZERO;
        let mut next_build = std::time::Duration::ZERO;
        let mut pending = false;
        // The snapshot last published, as `Rules::watch` builds the next after it.
        let mut last: Option<Arc<Snapshot>> = None;
        while {
            line.clear();
            stdin.read_line(&mut line).unwrap() > 0
        } {
            let (cpu, wall) = (cpu_seconds(), Instant::now());
            // Wall time of: sync (read, put, status), snapshot build, catalog update.
            let mut phases = [0f64; 4];
            // Each build is followed by the catalog update that follows it, as
            // `Catalog::follow` does on each published snapshot.
            let build = |phases: &mut [f64; 4], last: &mut Option<Arc<Snapshot>>| {
                let t = Instant::now();
                let snapshot = Arc::new(Snapshot::build_after(
                    last.as_deref(),
                    roles.clone(),
                    bindings.clone(),
                    Vec::new(),
                    inventory.all(),
                ));
                let took = t.elapsed();
                phases[1] += took.as_secs_f64();
                *last = Some(snapshot.clone());
                let t = Instant::now();
                catalog.update(snapshot, &applications);
                phases[2] += t.elapsed().as_secs_f64();
                phases[3] += 1.0;
                took
            };
            for c in 0..FLEET_CLUSTERS {
                // Where this read lands in the interval (the reads spread evenly: the
                // case where no two coincide), on the clock `Rules::watch` paces by.
                let at = interval_start + spacing * c as u32;
                if pending && next_build <= at {
                    // The rebuild the pacing let through before this read.
                    let took = build(&mut phases, &mut last);
                    next_build += took + pause_after(took);
                }
                let t = Instant::now();
                let (status, _) = full_sync_of(&names[c], &clients[c], &inventory, &objects[c]).await;
                if status.is_some() {
                    objects[c].status = status;
                }
                phases[0] += t.elapsed().as_secs_f64();
                // This read is a change the next build must cover.
                pending = true;
                if next_build <= at {
                    let took = build(&mut phases, &mut last);
                    next_build = at + took + pause_after(took);
                    pending = false;
                }
                // The machine is shared: a leak is reported, not followed to the OOM killer.
                let rss = rss_kib();
                if rss > limit_kib {
                    println!("ABORT {rss}");
                    std::process::exit(0);
                }
            }
            interval_start += DEFAULT_SYNC_INTERVAL;
            assert!(scrape(&metrics) > 1000);
            println!(
                "{} {} {} {} {} {} {}",
                cpu_seconds() - cpu,
                wall.elapsed().as_secs_f64(),
                rss_kib(),
                phases[0],
                phases[1],
                phases[2],
                phases[3]
            );
            std::io::stdout().flush().unwrap();
        }
        let (_, listed) = catalog.instances.list();
        assert_eq!(
            listed.iter().map(|(_, o)| o.len()).sum::<usize>(),
            FLEET_CLUSTERS * FLEET_INSTANCES
        );
    });
    println!("{}", peak_rss_kib());
}

/// Runs the fleet probe against `server` for `intervals` intervals; prints the figures.
fn fleet(server: &mut Server, intervals: usize) {
    let mut probe = spawn_role(
        "fleet",
        &[
            ("GANETI_BENCH_URL", server.url.clone()),
            ("GANETI_BENCH_CA", server.ca.clone()),
        ],
    );
    let mut stdin = probe.stdin.take().unwrap();
    let mut stdout = BufReader::new(probe.stdout.take().unwrap());
    let mut cpu = Vec::new();
    let mut walls = Vec::new();
    let mut line = String::new();
    for n in 0..intervals {
        server.flip();
        writeln!(stdin, "go").unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if let Some(rss) = line.strip_prefix("ABORT ") {
            let rss: f64 = rss.trim().parse().unwrap();
            eprintln!(
                "the fleet probe stopped in interval {n}: {:.0} MiB resident, over GANETI_BENCH_RSS_LIMIT_MIB",
                rss / 1024.0
            );
            let _ = probe.wait();
            println!("sync_50x2k_rss {:.0} MiB", rss / 1024.0);
            return;
        }
        let figures: Vec<f64> = line.split_whitespace().map(|f| f.parse().unwrap()).collect();
        if std::env::var_os("GANETI_BENCH_VERBOSE").is_some() {
            eprintln!(
                "interval {n}: cpu {:.2} s, wall {:.2} s (sync {:.2} s, {} snapshot builds {:.2} s, catalog updates {:.2} s), rss {:.0} MiB",
                figures[0],
                figures[1],
                figures[3],
                figures[6],
                figures[4],
                figures[5],
                figures[2] / 1024.0
            );
        }
        // The first interval creates every object: not the steady state.
        if n > 0 {
            cpu.push(figures[0]);
            walls.push(figures[1]);
        }
    }
    drop(stdin);
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let hwm: f64 = line.trim().parse().unwrap();
    assert!(probe.wait().unwrap().success(), "the fleet probe failed");
    let interval = DEFAULT_SYNC_INTERVAL.as_secs_f64();
    println!("sync_50x2k_cpu {:.3} cores", median(cpu) / interval);
    println!("sync_50x2k_interval_wall {:.2} s", median(walls));
    println!("sync_50x2k_rss {:.0} MiB", hwm / 1024.0);
    // What the catalog's watch history keeps per update: the facts of the update's VMs
    // (`FLEET_CHANGES` of them), one per cluster read, up to `HISTORY` events, with the
    // rules alone compiled once and shared by every event (`EventRules`).
    let (roles, bindings) = fleet_rules();
    let rules = Arc::new(Snapshot::build(roles, bindings, Vec::new(), Vec::new()));
    let vms: Vec<_> = (0..FLEET_CHANGES)
        .map(|i| ganeti_operator::inventory::Instance {
            name: format!("vm{i}.example.org"),
            tags: vec![format!("GANETI_WEB_MANAGER:owner:U:user{i}")],
            ..Default::default()
        })
        .collect();
    let before = rss_kib();
    let kept: Vec<_> = (0..10_000)
        .map(|_| {
            Arc::new((
                rules.clone(),
                ganeti_operator::authz::DetachedVms::new("c0", "GANETI_WEB_MANAGER", &vms),
            ))
        })
        .collect();
    let per = rss_kib().saturating_sub(before) as f64 / kept.len() as f64;
    println!("sync_50x2k_event_rules {per:.1} KiB");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("serve") => return serve_main(),
        Ok("rss") => return rss_main(),
        Ok("fleet") => return fleet_main(),
        _ => {}
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime();
    // `GANETI_BENCH_ONLY=fleet`: the 50 × 2k figures alone.
    let only_fleet = std::env::var("GANETI_BENCH_ONLY").as_deref() == Ok("fleet");
    for (instances, nodes, rounds, label) in [(1_000, 100, 30, "1k"), (10_000, 1_000, 15, "10k")] {
        if only_fleet {
            break;
        }
        let mut server = Server::start(instances, nodes);
        rt.block_on(run(&mut server, rounds, label));
        if label == "10k" {
            let probe = spawn_role(
                "rss",
                &[
                    ("GANETI_BENCH_URL", server.url.clone()),
                    ("GANETI_BENCH_CA", server.ca.clone()),
                ],
            );
            let out = probe.wait_with_output().unwrap();
            assert!(out.status.success(), "the memory probe failed");
            let kib: f64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
            println!("rss_peak_10k {:.0} MiB", kib / 1024.0);
        }
    }
    // Enough intervals for the catalog's watch history to fill (its steady state).
    let intervals = std::env::var("GANETI_BENCH_INTERVALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(HISTORY.div_ceil(FLEET_CLUSTERS * FLEET_CHANGES) + 2);
    let mut server = Server::start(FLEET_INSTANCES, FLEET_NODES);
    fleet(&mut server, intervals);
}
