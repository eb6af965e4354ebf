//! The aggregated API `compute.ganeti.dev/v1alpha1` under load, through the operator's
//! own handler over its real TLS listener: the serving TLS configuration is the one the
//! operator builds (`RequestHeader::server_config`: client certificates required and
//! checked against the requestheader CA), the router is `server::compute::router`, and
//! every request carries a front-proxy client certificate (made here with rcgen) and
//! `X-Remote-User`/`X-Remote-Group`, so the front-proxy authentication runs on each.
//! Only the requestheader settings are given directly instead of read from the
//! ConfigMap `kube-system/extension-apiserver-authentication`. Prints `name value unit`.
//!
//! Two processes, so that memory figures count the server only:
//! - the server: this binary run again with `GANETI_BENCH_ROLE=serve`. It builds a
//!   synthetic world (clusters of 2,000 VMs, owner tags
//!   `ganeti-operator.io:owner:U:user<n>`, the preconfigured roles), the authorization
//!   snapshot, the catalog, and serves. On stdin it answers `rss` (its resident set,
//!   KiB), `prepare` (builds the next snapshot, where VM 0 of cluster c0 changed state;
//!   answers the build time) and `apply` (`Catalog::update` with it; answers the time).
//! - the driver (this process): reqwest with the front proxy's client identity.
//!   - `gi_list_10k_admin_p99`: 5 clusters × 2,000 VMs, LIST as a `meta.k8s.io` Table
//!     by a user whose group is bound to `administrator`; body read to the end.
//!   - `gi_list_user_of_100k_p99`: 50 clusters × 2,000 VMs, LIST (JSON list) by a user
//!     owning 10 of them (10,000 users own 10 VMs each, spread over 5 clusters).
//!   - `gi_watch_fanout`: on the 100k world, 1,000 watches of that same owner
//!     (`?watch=true&resourceVersion=<list rv>`, each its own TLS connection), then one
//!     change of one of the owner's VMs applied through `Catalog::update` (the snapshot
//!     built beforehand, reported apart as `gi_snapshot_build_100k`): time from the
//!     update until every watch has read its event line.
//!   - `gi_watch_memory_per_watch`: the server's RSS growth from opening the 1,000
//!     watches, divided by 1,000 (TLS session, HTTP connection, watch task).
//!
//! Requests go one after another on one kept-alive connection (as the aggregator's pool
//! does for one client); p99 is over every request after a warm-up.

use ganeti_operator::access::rules::{Rules, Snapshot};
use ganeti_operator::api::{Role, RoleBinding, RoleBindingSpec, Subject};
use ganeti_operator::authz::{ADMINISTRATOR, USER, preconfigured_roles};
use ganeti_operator::compute::catalog::Catalog;
use ganeti_operator::inventory::{ClusterInventory, Instance, Inventory, Node, NodeRole};
use ganeti_operator::server::api::ApiState;
use ganeti_operator::server::compute::auth::RequestHeader;
use ganeti_operator::server::compute::{ComputeState, router};
use ganeti_operator::shared::Shared;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "GANETI_BENCH_ROLE";
const PREFIX: &str = "ganeti-operator.io";
const VMS_PER_CLUSTER: usize = 2_000;
const NODES_PER_CLUSTER: usize = 40;
/// Users owning VMs: user `n` owns every VM whose global index is `n` modulo this.
const OWNERS: usize = 10_000;
const ADMIN_GROUP: &str = "ganeti-admins";
const USER_GROUP: &str = "ganeti-users";
const WATCHES: usize = 1_000;
const API: &str = "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn cluster_name(c: usize) -> String {
    format!("c{c}")
}

/// VM `k` of cluster `c`; `flipped` changes its state (running ↔ ADMIN_down).
fn instance(c: usize, k: usize, flipped: bool) -> Instance {
    let g = c * VMS_PER_CLUSTER + k;
    let running = !k.is_multiple_of(7) ^ flipped;
    Instance {
        name: format!("vm{k}.c{c}.example.org"),
        uuid: format!("904d2888-beac-412d-a393-{g:012}"),
        status: if running { "running" } else { "ADMIN_down" }.into(),
        admin_up: running,
        running,
        primary_node: format!("node{}.c{c}.ganeti.test", k % NODES_PER_CLUSTER),
        secondary_nodes: vec![format!("node{}.c{c}.ganeti.test", (k + 1) % NODES_PER_CLUSTER)],
        os: "debootstrap+default".into(),
        hypervisor: "kvm".into(),
        disk_template: "drbd".into(),
        vcpus: 2,
        memory_mib: 2048,
        disk_mib: 122_880,
        ips: vec![format!("10.{c}.{}.{}", k / 250, k % 250)],
        macs: vec![format!("aa:00:00:{:02x}:{:02x}:{:02x}", c, k / 256, k % 256)],
        network_port: Some(11_000 + (k % 1000) as u16),
        vnc_bind_address: Some("0.0.0.0".into()),
        tags: vec![format!("{PREFIX}:owner:U:user{}", g % OWNERS)],
        ctime: Some(1_795_541_331.0 + g as f64),
    }
}

fn node(c: usize, n: usize) -> Node {
    Node {
        name: format!("node{n}.c{c}.ganeti.test"),
        role: if n == 0 {
            NodeRole::Master
        } else {
            NodeRole::Regular
        },
        memory_total_mib: 257_000,
        memory_free_mib: 128_000,
        disk_total_mib: 2_000_000,
        disk_free_mib: 1_500_000,
        cpus: 64,
        primary_instances: (VMS_PER_CLUSTER / NODES_PER_CLUSTER) as u32,
        secondary_instances: (VMS_PER_CLUSTER / NODES_PER_CLUSTER) as u32,
        primary_ip: Some(format!("10.255.{c}.{n}")),
        group: Some("default".into()),
        ..Default::default()
    }
}

fn cluster(c: usize, flipped_vm0: bool) -> Arc<ClusterInventory> {
    Arc::new(ClusterInventory {
        cluster: cluster_name(c),
        nodes: (0..NODES_PER_CLUSTER).map(|n| node(c, n)).collect(),
        instances: (0..VMS_PER_CLUSTER)
            .map(|k| instance(c, k, flipped_vm0 && k == 0))
            .collect(),
        tag_prefix: PREFIX.into(),
        reachable: true,
        ..Default::default()
    })
}

/// The preconfigured roles; administrators and plain users bound by group.
fn rules() -> (Vec<Arc<Role>>, Vec<Arc<RoleBinding>>) {
    let roles = preconfigured_roles().into_iter().map(Arc::new).collect();
    let binding = |name: &str, role: &str, group: &str| {
        Arc::new(RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: vec![Subject::group(group)],
                clusters: vec![],
                instances: vec![],
            },
        ))
    };
    let bindings = vec![
        binding("administrators", ADMINISTRATOR, ADMIN_GROUP),
        binding("users", USER, USER_GROUP),
    ];
    (roles, bindings)
}

fn snapshot(inventories: Vec<Arc<ClusterInventory>>) -> Snapshot {
    let (roles, bindings) = rules();
    Snapshot::build(roles, bindings, Vec::new(), inventories)
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// The server process. Env: the cluster count, the serving certificate and key, the
/// front proxy's CA. Prints `PORT <port>`, then answers commands on stdin.
fn serve_main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = |name: &str| std::env::var(name).unwrap();
    let clusters: usize = env("GANETI_BENCH_CLUSTERS").parse().unwrap();
    let rt = runtime();
    let mut inventories: Vec<Arc<ClusterInventory>> = (0..clusters).map(|c| cluster(c, false)).collect();
    let catalog = Arc::new(Catalog::default());
    // One value for the whole run: a new one would make every update compare every VM.
    let applications = Arc::default();
    catalog.update(Arc::new(snapshot(inventories.clone())), &applications);
    let port = rt.block_on(async {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let inventory = Inventory::default();
        for i in &inventories {
            inventory.put((**i).clone());
        }
        let metrics = Arc::new(ganeti_operator::metrics::Metrics::new(inventory.clone()).unwrap());
        let policy = ganeti_operator::clusters::Policy {
            allow_insecure: false,
        };
        let shared = Shared {
            client,
            inventory,
            metrics: metrics.clone(),
            config: ganeti_operator::config::Config {
                secrets_namespace: "ganeti-system".into(),
                smtp_secret: None,
                mail_unverified: false,
                public_url: None,
                rapi_policy: policy,
            },
            keys: Arc::new(ganeti_operator::keys::Keys::for_tests(7)),
            clusters: Arc::new(ganeti_operator::clusters::Registry::new(policy, metrics)),
            // The catalog's snapshot decides what is listed; these only name the
            // caller's profile groups (none here) and say the rules are loaded.
            rules: Rules::fixed(snapshot(Vec::new())),
        };
        let api = ApiState::new(shared, vec![], vec![]);
        let requestheader = RequestHeader {
            client_ca: env("GANETI_BENCH_FRONT_PROXY_CA"),
            allowed_names: vec!["front-proxy-client".into()],
            user_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
        };
        let tls = requestheader
            .server_config(
                env("GANETI_BENCH_CERT").as_bytes(),
                env("GANETI_BENCH_KEY").as_bytes(),
            )
            .unwrap();
        let state = ComputeState::new(api, catalog.clone(), requestheader);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        // The operator's own listener (TCP_NODELAY: see `server::listen`).
        let server = ganeti_operator::server::listen::tls_from_tcp(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )
        .unwrap();
        tokio::spawn(async move {
            server
                .serve(router(state).into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap()
        });
        port
    });
    println!("PORT {port}");
    std::io::stdout().flush().unwrap();
    let mut next: Option<Arc<Snapshot>> = None;
    let mut flipped = false;
    for line in std::io::stdin().lock().lines() {
        let answer = match line.unwrap().trim() {
            "rss" => resident_kib().to_string(),
            "prepare" => {
                flipped = !flipped;
                inventories[0] = cluster(0, flipped);
                let t = Instant::now();
                next = Some(Arc::new(snapshot(inventories.clone())));
                format!("{}", t.elapsed().as_micros())
            }
            "apply" => {
                let t = Instant::now();
                let changed = catalog.update(next.take().expect("prepared"), &applications);
                assert_eq!(changed, 1, "one VM changed");
                format!("{}", t.elapsed().as_micros())
            }
            other => panic!("unknown command {other:?}"),
        };
        println!("{answer}");
        std::io::stdout().flush().unwrap();
    }
    drop(rt);
}

/// The certificates: the operator's serving certificate (its CA trusted by the
/// driver), and the front proxy's CA and client certificate.
struct Certs {
    serving_ca: String,
    cert: String,
    key: String,
    front_proxy_ca: String,
    client_identity: String,
}

fn certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |cn: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let serving_ca = ca("bench serving CA");
    let (cert, key) = leaf(
        &serving_ca,
        "ganeti-operator-api",
        vec!["127.0.0.1".into(), "localhost".into()],
    );
    let front_proxy_ca = ca("bench front-proxy CA");
    let (client_cert, client_key) = leaf(&front_proxy_ca, "front-proxy-client", vec![]);
    Certs {
        serving_ca: serving_ca.pem(),
        cert,
        key,
        front_proxy_ca: front_proxy_ca.pem(),
        client_identity: client_cert + &client_key,
    }
}

/// The server process; ended (by its own pid) when dropped.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    base: String,
}

impl Server {
    fn start(clusters: usize, certs: &Certs) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "serve")
            .env("GANETI_BENCH_CLUSTERS", clusters.to_string())
            .env("GANETI_BENCH_CERT", &certs.cert)
            .env("GANETI_BENCH_KEY", &certs.key)
            .env("GANETI_BENCH_FRONT_PROXY_CA", &certs.front_proxy_ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        Server {
            child,
            stdin,
            stdout,
            base: format!("https://127.0.0.1:{port}{API}"),
        }
    }

    fn ask(&mut self, command: &str) -> u64 {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(certs: &Certs) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs.serving_ca.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(certs.client_identity.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap()
}

/// A request as the aggregator proxies it for `user` in `groups`.
fn request(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    groups: &[&str],
    table: bool,
) -> reqwest::RequestBuilder {
    let mut r = client.get(url).header("X-Remote-User", user);
    for g in groups.iter().chain(&["system:authenticated"]) {
        r = r.header("X-Remote-Group", *g);
    }
    if table {
        r = r.header("Accept", TABLE);
    }
    r
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Times `rounds` LISTs (after `warmup`), each body read to the end; checks it holds
/// `expect` items. Returns the sorted times in ms.
async fn time_lists(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    groups: &[&str],
    table: bool,
    expect: usize,
    (warmup, rounds): (usize, usize),
) -> Vec<f64> {
    let mut times = Vec::with_capacity(rounds);
    let mut headers = Vec::with_capacity(rounds);
    for n in 0..warmup + rounds {
        let t = Instant::now();
        let response = request(client, url, user, groups, table).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        if n >= warmup {
            headers.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let body = response.bytes().await.unwrap();
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if n == 0 {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let items = if table { &v["rows"] } else { &v["items"] };
            assert_eq!(items.as_array().map(Vec::len), Some(expect), "items listed");
        }
        if n >= warmup {
            times.push(elapsed);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    headers.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if std::env::var_os("GANETI_BENCH_VERBOSE").is_some() {
        eprintln!(
            "{url} as {user}: until the headers p50 {:.2} ms, p99 {:.2} ms",
            percentile(&headers, 0.5),
            percentile(&headers, 0.99)
        );
        // The slowest: a bimodal tail (e.g. +40 ms, a delayed ACK) shows here.
        let slowest: Vec<String> = times.iter().rev().take(10).map(|t| format!("{t:.2}")).collect();
        eprintln!("{url} as {user}: the 10 slowest, ms: {}", slowest.join(" "));
    }
    times
}

/// The list's resourceVersion.
async fn list_rv(client: &reqwest::Client, url: &str, user: &str) -> String {
    let v: serde_json::Value = request(client, url, user, &[USER_GROUP], false)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["metadata"]["resourceVersion"].as_str().unwrap().to_string()
}

async fn admin_list(certs: &Certs) {
    let server = Server::start(5, certs);
    let client = client(certs);
    let times = time_lists(
        &client,
        &server.base,
        "admin",
        &[ADMIN_GROUP],
        true,
        10_000,
        (5, 100),
    )
    .await;
    println!("gi_list_10k_admin_p50 {:.1} ms", percentile(&times, 0.50));
    println!("gi_list_10k_admin_p99 {:.1} ms", percentile(&times, 0.99));
    drop(server);
    list_steps();
}

/// What the handler does for the administrator's 10k list, step by step, in this
/// process (the same calls as `read::list_instances`, without HTTP): medians, ms.
fn list_steps() {
    use ganeti_operator::api::role::VmRight;
    use ganeti_operator::authz::Principal;
    use ganeti_operator::compute::table::{IncludeObject, Table};
    let inventories: Vec<Arc<ClusterInventory>> = (0..5).map(|c| cluster(c, false)).collect();
    let catalog = Catalog::default();
    catalog.update(Arc::new(snapshot(inventories)), &Arc::default());
    let snapshot = catalog.snapshot().unwrap();
    let groups = vec![ADMIN_GROUP.to_string(), "system:authenticated".to_string()];
    let p = Principal::new("admin", &groups);
    let mut steps: [Vec<f64>; 5] = Default::default();
    let mut bytes = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let permitted = snapshot.index.permitted_instances(&p, VmRight::View);
        steps[0].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (revision, clusters) = catalog.instances.list();
        let by_cluster: std::collections::HashMap<&str, _> =
            clusters.iter().map(|(c, o)| (&**c, o)).collect();
        let mut items = Vec::new();
        for (cluster, instance) in permitted {
            if let Some(o) =
                by_cluster[cluster].get(&ganeti_operator::compute::object_name(cluster, instance))
            {
                items.push(o.clone());
            }
        }
        items.sort_by(|a, b| a.name().cmp(b.name()));
        steps[1].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let now = k8s_openapi::jiff::Timestamp::now();
        let table = Table::new(
            items.iter().map(|o| &**o),
            IncludeObject::Metadata,
            Some(revision.to_string()),
            true,
            now,
        );
        let body = table.to_vec().unwrap();
        steps[2].push(t.elapsed().as_secs_f64());
        bytes = body.len();
        let t = Instant::now();
        let rows: Vec<_> = items
            .iter()
            .map(|o| ganeti_operator::compute::table::Row::cells(&**o, now))
            .collect();
        steps[3].push(t.elapsed().as_secs_f64());
        drop(rows);
        let t = Instant::now();
        let list = serde_json::to_vec(&items.iter().map(|o| &**o).collect::<Vec<_>>()).unwrap();
        steps[4].push(t.elapsed().as_secs_f64());
        drop((body, list));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2] * 1e3
    };
    println!("gi_list_10k_admin_step_permitted {:.1} ms", median(&mut steps[0]));
    println!(
        "gi_list_10k_admin_step_lookup_sort {:.1} ms",
        median(&mut steps[1])
    );
    println!(
        "gi_list_10k_admin_step_table_json {:.1} ms",
        median(&mut steps[2])
    );
    println!(
        "gi_list_10k_admin_step_cells_only {:.1} ms",
        median(&mut steps[3])
    );
    println!("gi_list_10k_admin_step_list_json {:.1} ms", median(&mut steps[4]));
    println!("gi_list_10k_admin_table_size {:.1} MB", bytes as f64 / 1e6);
}

async fn fleet(certs: &Certs) {
    let mut server = Server::start(50, certs);
    let client = client(certs);
    let (user, groups) = ("user0", &[USER_GROUP][..]);
    let times = time_lists(&client, &server.base, user, groups, false, 10, (20, 500)).await;
    println!("gi_list_user_of_100k_p50 {:.2} ms", percentile(&times, 0.50));
    println!("gi_list_user_of_100k_p99 {:.2} ms", percentile(&times, 0.99));
    let times = time_lists(&client, &server.base, user, groups, true, 10, (20, 500)).await;
    println!(
        "gi_list_user_of_100k_table_p99 {:.2} ms",
        percentile(&times, 0.99)
    );

    // The watches: each on its own connection (a streaming response holds it).
    let rv = list_rv(&client, &server.base, user).await;
    let url = format!("{}?watch=true&resourceVersion={rv}", server.base);
    let rss_before = server.ask("rss");
    let (read_tx, mut read_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut opened = Vec::with_capacity(WATCHES);
    for _ in 0..WATCHES {
        let (client, url, read_tx) = (client.clone(), url.clone(), read_tx.clone());
        let (open_tx, open_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut response = request(&client, &url, user, groups, false).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            open_tx.send(()).unwrap();
            let mut line = Vec::new();
            while !line.contains(&b'\n') {
                let chunk = response.chunk().await.unwrap().expect("an event before the end");
                line.extend_from_slice(&chunk);
            }
            read_tx.send(Instant::now()).unwrap();
            let event: serde_json::Value =
                serde_json::from_slice(&line[..line.iter().position(|b| *b == b'\n').unwrap()]).unwrap();
            assert_eq!(event["type"], "MODIFIED");
            // Keeps the watch open until the end.
            std::future::pending::<()>().await;
        });
        opened.push(open_rx);
    }
    for o in opened {
        o.await.unwrap();
    }
    // Let the server's tasks settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.ask("rss");
    let build_us = server.ask("prepare");
    let t = Instant::now();
    let update_us = server.ask("apply");
    let mut last = t;
    for _ in 0..WATCHES {
        last = last.max(read_rx.recv().await.unwrap());
    }
    println!("gi_snapshot_build_100k {:.0} ms", build_us as f64 / 1e3);
    println!("gi_catalog_update_one_change {:.1} ms", update_us as f64 / 1e3);
    println!("gi_watch_fanout {:.0} ms", (last - t).as_secs_f64() * 1e3);
    println!(
        "gi_watch_memory_per_watch {:.0} KiB",
        rss_after.saturating_sub(rss_before) as f64 / WATCHES as f64
    );
    drop(server);
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("serve") {
        return serve_main();
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = certs();
    let rt = runtime();
    // `GANETI_BENCH_ONLY=admin` or `=fleet`: one part alone.
    let only = std::env::var("GANETI_BENCH_ONLY").ok();
    if only.as_deref() != Some("fleet") {
        rt.block_on(admin_list(&certs));
    }
    if only.as_deref() != Some("admin") {
        rt.block_on(fleet(&certs));
    }
}
