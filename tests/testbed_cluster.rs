//! The GanetiCluster controller against the real testbed: status and metrics match
//! what Ganeti reports; credential, TLS and reachability failures are reported with
//! their reasons and recover; an unchanged cluster costs no status writes; draining
//! the second node shows within one sync interval.

mod support;

use ganeti_operator::api::GanetiCluster;
use ganeti_operator::inventory::NodeRole;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use std::time::Duration;
use support::crds::install_crds;
use support::ganeti::{self, apply_rapi_secret, gnt, try_gnt};
use support::operator::{Operator, sample};
use support::testbed::{env, kube_client};

/// A GanetiCluster at `url`, trusting `ca`, with the credentials in `secret`.
async fn apply_cluster_at(client: &kube::Client, name: &str, url: &str, secret: &str, ca: &str) {
    let mut spec = ganeti::cluster_spec(secret);
    spec["rapiUrl"] = json!(url);
    spec["caBundle"] = json!(ca);
    ganeti::apply_cluster_spec(client, name, spec).await;
}

/// What both tests start from: one at a time, the CRDs and the operator's RBAC
/// installed, no GanetiCluster of the `names` left from an earlier run.
async fn setup(
    names: &[&str],
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    kube::Client,
    Api<GanetiCluster>,
) {
    let serial = SERIAL.lock().await;
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    let clusters: Api<GanetiCluster> = Api::all(root.clone());
    for name in names {
        let _ = clusters.delete(name, &DeleteParams::default()).await;
    }
    (serial, root, clusters)
}

/// Polls until the cluster's condition `type_` has `reason`; returns the cluster.
async fn wait_reason(
    api: &Api<GanetiCluster>,
    name: &str,
    type_: &str,
    reason: &str,
    op: &Operator,
) -> GanetiCluster {
    let mut last = None;
    for _ in 0..120 {
        let c = api.get(name).await.unwrap();
        let cond = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| (c.reason.clone(), c.message.clone()));
        if cond.as_ref().is_some_and(|(r, _)| r == reason) {
            return c;
        }
        last = cond;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{name}: {type_} never became {reason}; last {last:?}\n{}",
        op.log()
    );
}

/// Starts ganeti-rapi again when dropped, even if the test failed meanwhile.
struct RapiRestarter;

impl Drop for RapiRestarter {
    fn drop(&mut self) {
        gnt("/usr/lib/ganeti/daemon-util start ganeti-rapi");
    }
}

#[tokio::test]
async fn status_metrics_failures_and_recovery() {
    let (_serial, root, clusters) =
        setup(&["tb-main", "tb-wrong-ca", "tb-unreachable", "tb-no-secret"]).await;
    let ca = std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap();
    let password = env("GANETI_RAPI_PASSWORD");
    let url = env("GANETI_RAPI_URL");
    apply_rapi_secret(&root, "rapi-tb-main", &password).await;
    apply_cluster_at(&root, "tb-main", &url, "rapi-tb-main", &ca).await;
    // A CA that did not sign the RAPI certificate: the kube testbed's own.
    let other_ca = std::fs::read_to_string(env("KUBE_CA_FILE")).unwrap();
    apply_cluster_at(&root, "tb-wrong-ca", &url, "rapi-tb-main", &other_ca).await;
    // Nothing listens there (port 1 on the Ganeti node).
    let dead = format!("https://{}:1", env("GANETI_NODE_IP"));
    apply_cluster_at(&root, "tb-unreachable", &dead, "rapi-tb-main", &ca).await;
    apply_cluster_at(&root, "tb-no-secret", &url, "no-such-secret", &ca).await;

    let mut op = Operator::start("cluster").await;

    // Status matches Ganeti's own view.
    let c = wait_reason(&clusters, "tb-main", "Ready", "Synced", &op).await;
    let status = c.status.unwrap();
    assert_eq!(status.master.as_deref(), Some(env("GANETI_NODE").as_str()));
    assert_eq!(
        status.cluster_name.as_deref(),
        Some(env("GANETI_CLUSTER_NAME").as_str())
    );
    let version = gnt("gnt-cluster --version");
    assert!(
        version.contains(status.software_version.as_deref().unwrap()),
        "{version}"
    );
    let nodes = gnt("gnt-node list --no-headers -o name");
    assert_eq!(status.node_count, Some(nodes.lines().count() as u32));
    assert!(
        status.hypervisors.iter().any(|h| h == "kvm"),
        "{:?}",
        status.hypervisors
    );
    assert_eq!(status.nodes[0].role, "master");
    assert!(status.nodes[0].memory_total_bytes > 0);
    assert!(status.last_sync_time.is_some());

    // The other clusters say what is wrong.
    wait_reason(&clusters, "tb-wrong-ca", "Reachable", "TLSError", &op).await;
    wait_reason(&clusters, "tb-unreachable", "Reachable", "Unreachable", &op).await;
    let c = wait_reason(&clusters, "tb-no-secret", "Reachable", "MissingSecret", &op).await;
    let msg = &c
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Reachable")
        .unwrap()
        .message
        .clone();
    assert!(msg.contains("no-such-secret"), "{msg}");

    // Metrics: cluster, node and instance series, valid exposition format.
    let metrics = op.metrics().await;
    assert_eq!(
        sample(&metrics, "ganeti_cluster_up{cluster=\"tb-main\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ganeti_cluster_up{cluster=\"tb-wrong-ca\"}"),
        None,
        "never read, no series"
    );
    let node = env("GANETI_NODE");
    let mem = sample(
        &metrics,
        &format!("ganeti_node_memory_total_bytes{{cluster=\"tb-main\",node=\"{node}\"}}"),
    );
    assert_eq!(mem.map(|b| b as u64), Some(status.nodes[0].memory_total_bytes));
    assert!(
        metrics.contains("ganeti_operator_rapi_request_duration_seconds_bucket{operation=\"instances_bulk\""),
        "{metrics}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    use std::io::Write;
    promtool
        .stdin
        .as_ref()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check metrics: {problems}");

    // Steady state: two more sync intervals, no status writes. Counted per cluster
    // from the operator's log: other tests on the shared testbed keep GanetiClusters
    // of their own (with instances coming and going), which this operator
    // reconciles too.
    let reads = |m: &str| {
        sample(
            m,
            "ganeti_operator_reconciles_total{controller=\"ganeticluster\"}",
        )
        .unwrap_or(0.0)
    };
    let writes_of = |log: &str, cluster: &str| {
        let field = format!("\"cluster\":\"{cluster}\"");
        log.lines()
            .filter(|l| l.contains("writing status") && l.contains(&field))
            .count()
    };
    // What tb-main's status reflects: instances, node roles, free memory in 1% steps
    // of the total (as status rounds it), job counts.
    let ganeti_state = || {
        let nodes: Vec<String> =
            gnt("gnt-node list --no-headers --units=m --separator='|' -o name,role,mtotal,mfree")
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    let (total, free) = (f[2].parse::<u64>().unwrap_or(0), f[3].parse::<u64>().unwrap_or(0));
                    format!("{} {} {}", f[0], f[1], free / (total / 100).max(1))
                })
                .collect();
        let mut jobs: Vec<String> = gnt("gnt-job list --no-headers -o status")
            .lines()
            .map(str::to_owned)
            .collect();
        jobs.sort();
        (
            gnt("gnt-instance list --no-headers -o name,status,pnode"),
            nodes,
            jobs,
        )
    };
    // What each failing cluster reports: a failure that itself changes (e.g. refused
    // vs timed out under load) is rightly written again.
    let failures = || async {
        let mut out = Vec::new();
        for name in ["tb-wrong-ca", "tb-unreachable", "tb-no-secret"] {
            let c = clusters.get(name).await.unwrap();
            out.push(c.status.map(|s| {
                s.conditions
                    .iter()
                    .map(|c| (c.type_.clone(), c.reason.clone(), c.message.clone()))
                    .collect::<Vec<_>>()
            }));
        }
        out
    };
    let failures_before = failures().await;
    let (before, log_before, state_before) = (op.metrics().await, op.log(), ganeti_state());
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (after, log_after, state_after) = (op.metrics().await, op.log(), ganeti_state());
    let failures_after = failures().await;
    let read_delta = reads(&after) - reads(&before);
    assert!(read_delta >= 4.0, "each cluster re-read: {read_delta}");
    let window: Vec<&str> = log_after
        .get(log_before.len()..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("writing status"))
        .collect();
    // Failures that stay the same are never rewritten.
    for (i, name) in ["tb-wrong-ca", "tb-unreachable", "tb-no-secret"]
        .into_iter()
        .enumerate()
    {
        if failures_before[i] != failures_after[i] {
            continue;
        }
        assert_eq!(
            writes_of(&log_after, name),
            writes_of(&log_before, name),
            "{name}'s unchanged failure was written again:\n{}",
            window.join("\n")
        );
    }
    // The live cluster may really change meanwhile: a 1% step of the host's free
    // memory, other tests' instances and jobs (then it is not unchanged, and not
    // judged). One write of slack: the step may fall between our read and the CLI's.
    let main_writes = writes_of(&log_after, "tb-main") - writes_of(&log_before, "tb-main");
    assert!(
        main_writes <= 1 || state_before != state_after,
        "an unchanged cluster costs no status write ({main_writes} writes of tb-main in {read_delta} reads):\n{}",
        window.join("\n")
    );

    // Wrong password: AuthFailed, then recovery when the Secret is fixed.
    apply_rapi_secret(&root, "rapi-tb-main", "not-the-password").await;
    wait_reason(&clusters, "tb-main", "Reachable", "AuthFailed", &op).await;
    let m = op.metrics().await;
    assert_eq!(sample(&m, "ganeti_cluster_up{cluster=\"tb-main\"}"), Some(0.0));
    apply_rapi_secret(&root, "rapi-tb-main", &password).await;
    wait_reason(&clusters, "tb-main", "Reachable", "Synced", &op).await;

    // RAPI daemon stopped: Unreachable, then recovery when it is back.
    {
        let _restart = RapiRestarter;
        gnt("/usr/lib/ganeti/daemon-util stop ganeti-rapi");
        wait_reason(&clusters, "tb-main", "Reachable", "Unreachable", &op).await;
    }
    wait_reason(&clusters, "tb-main", "Reachable", "Synced", &op).await;

    // A deleted cluster disappears from the metrics.
    clusters
        .delete("tb-wrong-ca", &DeleteParams::default())
        .await
        .unwrap();
    clusters
        .delete("tb-main", &DeleteParams::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..60 {
        if !op.metrics().await.contains("cluster=\"tb-main\"") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "tb-main's series outlive its deletion:\n{}", op.log());

    let (exit, log) = op.stop();
    assert!(exit.success(), "{log}");
    assert!(
        !log.contains(&password),
        "the RAPI password never reaches the log"
    );
    for name in ["tb-main", "tb-wrong-ca", "tb-unreachable", "tb-no-secret"] {
        let _ = clusters.delete(name, &DeleteParams::default()).await;
    }
}

/// The tests of this file run one after the other: each starts an operator that
/// reconciles every GanetiCluster, and a drained node changes what every cluster on
/// the testbed reports (the steady-state check above counts status writes).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes node2 regular again when dropped before the test did so itself, i.e. when
/// it failed half-way (no panic here: it may run while a failed assertion unwinds).
struct Undrain {
    node: String,
    done: bool,
}

impl Drop for Undrain {
    fn drop(&mut self) {
        if !self.done {
            let _ = try_gnt(&format!("gnt-node modify --drained=no {}", self.node));
        }
    }
}

/// How long after a change in Ganeti the operator may take to show it: one
/// `syncInterval` (the next periodic read; `ganeti::cluster_spec` sets 5s) plus that read,
/// the status write and one poll of this test.
const DRAIN_INTERVAL: Duration = Duration::from_secs(5);
const DRAIN_SLACK: Duration = Duration::from_secs(2);

/// Polls status and /metrics until both say `node` has `role`; how long that took.
async fn until_role_seen(
    clusters: &Api<GanetiCluster>,
    cluster: &str,
    node: &str,
    role: &str,
    op: &Operator,
) -> (Duration, GanetiCluster) {
    let started = std::time::Instant::now();
    let series = |name: &str, extra: &str| format!("{name}{{cluster=\"{cluster}\",node=\"{node}\"{extra}}}");
    let mut last = (None, None, None);
    while started.elapsed() < DRAIN_INTERVAL * 4 {
        let c = clusters.get(cluster).await.unwrap();
        let in_status = c
            .status
            .as_ref()
            .and_then(|s| s.nodes.iter().find(|n| n.name == node))
            .map(|n| n.role.clone());
        let m = op.metrics().await;
        let role_metric = sample(&m, &series("ganeti_node_role", &format!(",role=\"{role}\"")));
        let drained_metric = sample(&m, &series("ganeti_node_drained", ""));
        if in_status.as_deref() == Some(role)
            && role_metric == Some(1.0)
            && drained_metric == Some(f64::from(u8::from(role == "drained")))
        {
            return (started.elapsed(), c);
        }
        last = (in_status, role_metric, drained_metric);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{cluster}: {node} never showed as {role} (status role, role metric, drained metric: {last:?})\n{}",
        op.log()
    );
}

#[tokio::test]
async fn a_drained_node_shows_in_status_and_metrics_within_one_interval() {
    let (_serial, root, clusters) = setup(&["tb-drain"]).await;
    let node2 = env("GANETI_NODE2");
    ganeti::apply_cluster(&root, "tb-drain", "rapi-tb-drain", json!({})).await;
    let op = Operator::start("cluster-drain").await;
    let rapi = ganeti::rapi();
    let set_role = |role: NodeRole| {
        let (rapi, node2) = (&rapi, &node2);
        async move {
            let job = rapi
                .set_node_role(node2, role, false, "tests/testbed_cluster drain test")
                .await
                .expect("role change accepted");
            rapi.wait_job(job, Duration::from_secs(60))
                .await
                .expect("role change job ends")
                .into_success()
                .expect("role change job succeeds");
        }
    };

    // Every node, with the role `gnt-node list` gives it.
    let c = wait_reason(&clusters, "tb-drain", "Ready", "Synced", &op).await;
    let status = c.status.unwrap();
    let cli = gnt("gnt-node list --no-headers --separator='|' -o name,role");
    assert_eq!(status.nodes.len(), cli.lines().count(), "{cli}");
    for line in cli.lines() {
        let (name, letter) = line.split_once('|').unwrap();
        let role = NodeRole::from_letter(letter).unwrap_or_else(|| panic!("role {letter}"));
        let n = status.nodes.iter().find(|n| n.name == name).expect(name);
        assert_eq!(n.role, role.as_str(), "{name}");
    }
    let node2_cpus = status
        .nodes
        .iter()
        .find(|n| n.name == node2)
        .expect("node2 in status")
        .cpus;
    assert!(node2_cpus > 0);
    until_role_seen(&clusters, "tb-drain", &node2, "regular", &op).await;

    // Drain node2 through RAPI, as an admin would.
    let mut undrain = Undrain {
        node: node2.clone(),
        done: false,
    };
    let capacity_before = status.capacity.unwrap().cpus;
    set_role(NodeRole::Drained).await;
    let cli_role = gnt(&format!("gnt-node list --no-headers -o role {node2}"));
    assert_eq!(cli_role.trim(), "D");
    let (took, c) = until_role_seen(&clusters, "tb-drain", &node2, "drained", &op).await;
    eprintln!("drain of {node2} visible in status and metrics after {took:?}");
    assert!(
        took <= DRAIN_INTERVAL + DRAIN_SLACK,
        "the drain showed after {took:?}, more than one sync interval ({DRAIN_INTERVAL:?}) and {DRAIN_SLACK:?} of slack"
    );
    assert_eq!(
        c.status.unwrap().capacity.unwrap().cpus,
        capacity_before - node2_cpus,
        "a drained node's CPUs are not capacity"
    );
    let m = op.metrics().await;
    let regular = format!("ganeti_node_role{{cluster=\"tb-drain\",node=\"{node2}\",role=\"regular\"}}");
    assert_eq!(sample(&m, &regular), Some(0.0), "one role at a time");

    // And back.
    set_role(NodeRole::Regular).await;
    undrain.done = true;
    let (took, c) = until_role_seen(&clusters, "tb-drain", &node2, "regular", &op).await;
    eprintln!("undrain of {node2} visible in status and metrics after {took:?}");
    assert!(
        took <= DRAIN_INTERVAL + DRAIN_SLACK,
        "undraining showed after {took:?}"
    );
    assert_eq!(c.status.unwrap().capacity.unwrap().cpus, capacity_before);
    let cli_role = gnt(&format!("gnt-node list --no-headers -o role {node2}"));
    assert_eq!(cli_role.trim(), "R", "node2 is regular again");

    drop(op);
    let _ = clusters.delete("tb-drain", &DeleteParams::default()).await;
}

/// Counts the TCP connections made to a local port: a stand-in for a server of an
/// attacker's choosing, which must never hear from the operator.
struct Listener {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
        Listener {
            port,
            connections,
            task,
        }
    }

    fn seen(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until this operator holds the leader Lease (only the leader writes status;
/// another test's operator on the shared testbed may hold it for minutes).
async fn wait_leading(op: &Operator) {
    for _ in 0..1200 {
        if op.log().contains("leading: starting the controllers") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the operator never led:\n{}", op.log());
}

#[tokio::test]
async fn unlabelled_secrets_are_never_read_and_insecure_needs_the_operator_flag() {
    let names = ["tb-unlabelled", "tb-insecure"];
    let (_serial, root, clusters) = setup(&names).await;
    let ca = std::fs::read_to_string(env("GANETI_RAPI_CA")).unwrap();
    let password = env("GANETI_RAPI_PASSWORD");
    // A Secret that is not RAPI credentials for the operator (no label), named by a
    // cluster whose URL is "the attacker's" server.
    let trap = Listener::start().await;
    ganeti::apply_rapi_secret_labelled(&root, "rapi-tb-unlabelled", &password, false).await;
    apply_cluster_at(
        &root,
        "tb-unlabelled",
        &format!("https://127.0.0.1:{}", trap.port),
        "rapi-tb-unlabelled",
        &ca,
    )
    .await;
    // The real RAPI with a labelled Secret, but without certificate checks.
    apply_rapi_secret(&root, "rapi-tb-insecure", &password).await;
    let mut spec = ganeti::cluster_spec("rapi-tb-insecure");
    spec["insecure"] = json!(true);
    spec.as_object_mut().unwrap().remove("caBundle");
    ganeti::apply_cluster_spec(&root, "tb-insecure", spec).await;

    let mut op = Operator::start("cluster-policy").await;
    wait_leading(&op).await;
    let condition = |c: &GanetiCluster| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let c = wait_reason(&clusters, "tb-unlabelled", "Ready", "SecretNotLabelled", &op).await;
    let msg = condition(&c);
    assert!(
        msg.contains("kubectl -n ganeti-system label secret rapi-tb-unlabelled ganeti.dev/credentials=rapi"),
        "{msg}"
    );
    let c = wait_reason(&clusters, "tb-insecure", "Ready", "InsecureNotAllowed", &op).await;
    let msg = condition(&c);
    assert!(msg.contains("--allow-insecure-rapi"), "{msg}");
    // Two more sync intervals, then this operator's own account: it never tried to
    // read that cluster.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        !op.log()
            .lines()
            .any(|l| l.contains("cluster read failed") && l.contains("tb-unlabelled")),
        "{}",
        op.log()
    );
    // And not a single connection to that URL. (Every operator on the apiserver reads
    // every GanetiCluster, followers too: this holds when all of them are builds with
    // the label check, as in `make test`; an older build running beside it fails it.)
    assert_eq!(
        trap.seen(),
        0,
        "an operator reached out with an unlabelled Secret"
    );
    assert!(!op.log().contains(&password), "no password in the log");

    // The control: labelled, the same Secret goes to that URL (whose TLS fails here),
    // so the trap above would have seen it.
    apply_rapi_secret(&root, "rapi-tb-unlabelled", &password).await;
    for _ in 0..120 {
        if trap.seen() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(trap.seen() > 0, "labelled, it is used:\n{}", op.log());
    let _ = clusters.delete("tb-unlabelled", &DeleteParams::default()).await;

    // An operator run with --allow-insecure-rapi reads the insecure cluster.
    let (exit, log) = op.stop();
    assert!(exit.success(), "{log}");
    let op = Operator::start_with(
        "cluster-insecure",
        support::operator::Options::default().arg("--allow-insecure-rapi"),
    )
    .await;
    wait_leading(&op).await;
    wait_reason(&clusters, "tb-insecure", "Ready", "Synced", &op).await;
    let c = wait_reason(
        &clusters,
        "tb-insecure",
        "InsecureTransport",
        "InsecureFlagSet",
        &op,
    )
    .await;
    assert!(c.status.is_some());
    drop(op);
    let _ = clusters.delete("tb-insecure", &DeleteParams::default()).await;
}
