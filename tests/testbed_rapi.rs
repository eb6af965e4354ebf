//! The RAPI client against the testbed's real Ganeti 3.0 cluster. Tests run in
//! parallel: each uses its own instance name and IP (198.51.100.80-89) and removes
//! what it creates, also when it fails.

mod support;

use ganeti_operator::inventory::{self, NodeRole};
use ganeti_operator::rapi::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::ganeti::{Instances, gnt, instance_request, rapi as writer, rapi_as};
use support::testbed::env;

const REASON: &str = "tests/testbed_rapi by cargo test";
const JOB_DEADLINE: Duration = Duration::from_secs(120);

fn ca() -> Vec<u8> {
    std::fs::read(env("GANETI_RAPI_CA")).expect("the testbed's RAPI CA file")
}

fn reader() -> RapiClient {
    rapi_as(&env("GANETI_RAPI_RO_USER"), &env("GANETI_RAPI_RO_PASSWORD"))
}

fn create_request(name: &str, ip: &str) -> InstanceCreate {
    let mut req = instance_request(name, ip);
    req.osparams.insert(
        env("GANETI_OS_SSH_KEYS_PARAM"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIexample test@example".into(),
    );
    req.tags = vec!["ganeti-operator:test".into(), "owner:rapi-test".into()];
    req
}

/// Waits for the job to end, whichever way.
async fn finished(c: &RapiClient, id: JobId) -> Job {
    c.wait_job(id, JOB_DEADLINE).await.expect("job wait")
}

async fn run_job(c: &RapiClient, id: JobId) -> Job {
    finished(c, id).await.into_success().expect("job succeeds")
}

#[tokio::test]
async fn info_and_features() {
    let c = reader();
    let info = c.info().await.expect("info");
    assert_eq!(info.name, env("GANETI_CLUSTER_NAME"));
    let facts = inventory::ClusterFacts::from(info);
    assert_eq!(facts.master, env("GANETI_NODE"));
    assert!(facts.software_version.starts_with("3."), "{facts:?}");
    assert!(facts.enabled_hypervisors.contains(&env("GANETI_HYPERVISOR")));
    let features = c.features().await.expect("features");
    assert!(
        features.iter().any(|f| f == FEATURE_INSTANCE_CREATE_V1),
        "{features:?}"
    );
    assert!(!c.is_insecure());
}

#[tokio::test]
async fn bulk_nodes_groups_and_instances_match_the_cli() {
    let c = reader();
    let cli_nodes = gnt("gnt-node list --no-headers --separator='|' -o name,mtotal,role,group.uuid");
    let nodes: Vec<inventory::Node> = c
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(Into::into)
        .collect();
    assert_eq!(nodes.len(), cli_nodes.lines().count());
    for line in cli_nodes.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let node = nodes.iter().find(|n| n.name == f[0]).expect("node in RAPI");
        assert_eq!(node.memory_total_mib.to_string(), f[1]);
        assert_eq!(Some(node.role), NodeRole::from_letter(f[2]));
        assert_eq!(node.group.as_deref(), Some(f[3]));
    }
    let master = nodes.iter().find(|n| n.name == env("GANETI_NODE")).unwrap();
    assert_eq!(master.role, NodeRole::Master);
    assert!(master.cpus > 0 && master.memory_free_mib > 0);

    let groups = c.groups().await.expect("groups");
    assert!(
        groups
            .iter()
            .any(|g| g.uuid == master.group && g.node_list.contains(&master.name)),
        "{groups:?}"
    );

    // Other tests create and remove instances meanwhile: compare against the CLI
    // before and after the RAPI read.
    let list = || -> BTreeSet<String> {
        gnt("gnt-instance list --no-headers -o name")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let before = list();
    let instances: Vec<inventory::Instance> = c
        .instances()
        .await
        .expect("instances")
        .into_iter()
        .map(Into::into)
        .collect();
    let after = list();
    let names: BTreeSet<String> = instances.iter().map(|i| i.name.clone()).collect();
    assert!(
        before.intersection(&after).all(|n| names.contains(n)),
        "{names:?} vs {before:?}/{after:?}"
    );
    assert!(names.iter().all(|n| before.contains(n) || after.contains(n)));

    let jobs = c.jobs().await.expect("jobs");
    assert!(jobs.iter().any(|j| j.id == 1), "the cluster's init job");
}

#[tokio::test]
async fn instance_lifecycle_tags_power_console_and_remove() {
    const NAME: &str = "rapi-test-life.ganeti.test";
    const IP: &str = "198.51.100.80";
    let _cleanup = Instances(vec![NAME.into()]);
    let c = writer();

    let job = c
        .create_instance(&create_request(NAME, IP), REASON)
        .await
        .expect("create accepted");
    // The job shows among the unfinished ones, with the summary a restarted operator
    // looks for (an instance creation takes Ganeti about a second).
    let unfinished = c.unfinished_jobs().await.expect("job query");
    assert!(
        unfinished
            .iter()
            .any(|j| j.id == job.0 && j.summary == vec![format!("INSTANCE_CREATE({NAME})")]),
        "{unfinished:?}"
    );
    let done = run_job(&c, job).await;
    assert!(!c.unfinished_jobs().await.unwrap().iter().any(|j| j.id == job.0));
    let counts = c.job_counts().await.expect("job counts");
    assert!(counts.get("success").is_some_and(|n| *n > 0), "{counts:?}");
    assert_eq!(done.opresult, vec![serde_json::json!([env("GANETI_NODE")])]);
    assert!(done.end_ts.is_some());

    let inst: inventory::Instance = c.instance(NAME).await.expect("instance").into();
    assert_eq!(inst.ips, vec![IP]);
    assert_eq!(inst.os, env("GANETI_OS"));
    assert_eq!((inst.vcpus, inst.memory_mib, inst.disk_mib), (1, 128, 0));
    assert!(inst.admin_up && inst.running, "{inst:?}");
    assert!(inst.tags.contains(&"owner:rapi-test".to_string()));
    let bulk = c.instances().await.expect("bulk");
    let from_bulk: inventory::Instance = bulk.into_iter().find(|i| i.name == NAME).expect("in bulk").into();
    assert!(from_bulk.tags.contains(&"ganeti-operator:test".to_string()));
    let hvs = c.instance_hypervisors().await.expect("query");
    assert_eq!(hvs.get(NAME), Some(&env("GANETI_HYPERVISOR")));
    // The OS parameter arrived.
    assert!(gnt(&format!("gnt-instance info {NAME}")).contains("AAAAC3NzaC1lZDI1NTE5AAAAIexample"));

    // Two tags in one call, one job; then both removed in one call.
    let tags = ["rapi:one", "rapi:two"];
    run_job(&c, c.add_instance_tags(NAME, &tags, REASON).await.unwrap()).await;
    let now = c.instance_tags(NAME).await.unwrap();
    assert!(tags.iter().all(|t| now.iter().any(|n| n == t)), "{now:?}");
    run_job(&c, c.remove_instance_tags(NAME, &tags, REASON).await.unwrap()).await;
    let now = c.instance_tags(NAME).await.unwrap();
    assert!(tags.iter().all(|t| !now.iter().any(|n| n == t)), "{now:?}");

    // The reason lands in the job's reason trail.
    let ops = gnt(&format!("gnt-job info {job}"));
    assert!(ops.contains("tests/testbed_rapi by cargo test"), "{ops}");

    let console = c.console(NAME).await.expect("console");
    assert!(
        matches!(console, Console::Msg { ref instance, .. } if instance == NAME),
        "{console:?}"
    );

    run_job(
        &c,
        c.shutdown_instance(NAME, Some(Duration::from_secs(10)), REASON)
            .await
            .unwrap(),
    )
    .await;
    let inst: inventory::Instance = c.instance(NAME).await.unwrap().into();
    assert_eq!(inst.status, "ADMIN_down");
    assert!(!inst.admin_up && !inst.running);
    match c.console(NAME).await {
        Err(RapiError::Unavailable { status: 503, .. }) => {}
        other => panic!("console of a stopped instance: {other:?}"),
    }

    run_job(&c, c.startup_instance(NAME, REASON).await.unwrap()).await;
    run_job(
        &c,
        c.reboot_instance(NAME, RebootType::Hard, REASON).await.unwrap(),
    )
    .await;
    let inst: inventory::Instance = c.instance(NAME).await.unwrap().into();
    assert_eq!(inst.status, "running");

    // Creating it again fails inside the job, with Ganeti's ecode.
    let dup = c
        .create_instance(&create_request(NAME, "198.51.100.81"), REASON)
        .await
        .expect("accepted; fails in the job");
    let job = finished(&c, dup).await;
    assert_eq!(job.status, JobStatus::Error);
    match job.into_success() {
        Err(RapiError::JobFailed(f)) => {
            assert_eq!(f.ecode, Some(ErrorCode::AlreadyExists), "{f:?}");
            assert_eq!(f.error_type, "OpPrereqError");
            assert!(f.message.contains(NAME), "{f:?}");
        }
        other => panic!("{other:?}"),
    }

    run_job(&c, c.remove_instance(NAME, REASON).await.unwrap()).await;
    assert!(matches!(c.instance(NAME).await, Err(RapiError::NotFound { .. })));
    assert!(c.instances().await.unwrap().iter().all(|i| i.name != NAME));
}

#[tokio::test]
async fn refusals_are_typed_errors() {
    let wrong = rapi_as(&env("GANETI_RAPI_USER"), "not-the-password");
    let err = wrong.info().await.unwrap_err();
    assert!(matches!(err, RapiError::Unauthorized), "{err:?}");
    assert_eq!(err.category(), "auth_failed");

    let err = reader()
        .startup_instance("rapi-test-nothing.ganeti.test", REASON)
        .await
        .unwrap_err();
    assert!(matches!(err, RapiError::Forbidden), "{err:?}");

    let c = writer();
    let err = c.instance("rapi-test-unknown.ganeti.test").await.unwrap_err();
    assert!(matches!(err, RapiError::NotFound { .. }), "{err:?}");
    let err = c.job(JobId(987_654_321)).await.unwrap_err();
    assert!(matches!(err, RapiError::NotFound { .. }), "{err:?}");
    let err = c
        .wait_job(JobId(987_654_321), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, RapiError::NotFound { .. }), "{err:?}");

    // A bad parameter is refused before any job exists.
    let bad = InstanceCreate::new("rapi-test-never.ganeti.test", "no-such-template");
    let err = c.create_instance(&bad, REASON).await.unwrap_err();
    assert!(
        matches!(&err, RapiError::BadRequest { message } if message.contains("'OP_INSTANCE_CREATE.disk_template' fails validation")),
        "{err:?}"
    );

    // A write on an unknown instance fails inside its job.
    let job = c
        .startup_instance("rapi-test-unknown.ganeti.test", REASON)
        .await
        .unwrap();
    let failure = finished(&c, job).await.failure().expect("the job fails");
    assert_eq!(failure.ecode, Some(ErrorCode::UnknownEntity), "{failure:?}");
}

#[tokio::test]
async fn the_read_only_user_waits_for_jobs_by_polling() {
    let tag = "rapi-test:ro-wait";
    let w = writer();
    let job = w.add_cluster_tags(&[tag], REASON).await.unwrap();
    let r = reader();
    // The long-poll needs the write right ...
    assert!(matches!(
        r.wait_job_change(job, None).await,
        Err(RapiError::Forbidden)
    ));
    // ... so wait_job falls back to polling.
    let done = r.wait_job(job, JOB_DEADLINE).await.expect("polled");
    assert_eq!(done.status, JobStatus::Success);
    assert!(r.cluster_tags().await.unwrap().iter().any(|t| t == tag));
    run_job(&w, w.remove_cluster_tags(&[tag], REASON).await.unwrap()).await;
    assert!(!w.cluster_tags().await.unwrap().iter().any(|t| t == tag));
}

#[tokio::test]
async fn node_roles_read_and_the_master_refuses_a_drain() {
    // Ganeti refuses to change the master's flags, so the drain fails inside its job
    // and nothing changes for other tests (draining node2 is tested in
    // tests/testbed_cluster.rs, where status and metrics must show it).
    let c = writer();
    let node = env("GANETI_NODE");
    assert_eq!(c.node_role(&node).await.unwrap(), NodeRole::Master);
    let job = c
        .set_node_role(&node, NodeRole::Drained, false, REASON)
        .await
        .unwrap();
    let failure = finished(&c, job).await.failure().expect("the job fails");
    assert_eq!(failure.ecode, Some(ErrorCode::WrongInput), "{failure:?}");
    assert!(failure.message.contains("master"), "{failure:?}");
    assert_eq!(c.node_role(&node).await.unwrap(), NodeRole::Master);
    let err = reader()
        .set_node_role(&node, NodeRole::Regular, false, REASON)
        .await
        .unwrap_err();
    assert!(matches!(err, RapiError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn tls_trusts_only_what_is_pinned() {
    let url = env("GANETI_RAPI_URL");
    let creds = Credentials::new(env("GANETI_RAPI_RO_USER"), env("GANETI_RAPI_RO_PASSWORD"));
    // Insecure mode reaches the cluster (and says so).
    let insecure = RapiClient::new(RapiConfig::new(&url, creds.clone(), TlsMode::Insecure)).unwrap();
    assert!(insecure.is_insecure());
    insecure.info().await.expect("insecure mode connects");
    // Another CA: a TLS error, not "unreachable".
    let other = RapiClient::new(RapiConfig::new(
        &url,
        creds,
        TlsMode::CaBundle(include_bytes!("../src/rapi/testdata/v3-ca.pem").to_vec()),
    ))
    .unwrap();
    let err = other.info().await.unwrap_err();
    assert_eq!(err.category(), "tls_error", "{err:?}");
}

/// An `openssl s_server` with a Ganeti-style v1 self-signed certificate; killed on drop.
struct V1Server {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl V1Server {
    fn start(tag: &str, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("rapi-v1-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |cmd: String| {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .current_dir(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{cmd}");
        };
        // Like Ganeti's own: v1 (no extensions), self-signed, CN = a cluster name.
        sh("openssl req -newkey rsa:2048 -nodes -keyout key.pem -subj /CN=cluster.ganeti.test -out req.csr 2>/dev/null".into());
        sh("openssl x509 -req -in req.csr -signkey key.pem -days 30 -out cert.pem 2>/dev/null".into());
        let port = support::free_port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-cert", "cert.pem", "-key", "key.pem"])
            .args(extra)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn cert(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("cert.pem")).unwrap()
    }

    fn client(&self, tls: TlsMode) -> RapiClient {
        RapiClient::new(RapiConfig::new(
            format!("https://127.0.0.1:{}", self.port),
            Credentials::new("u", "p"),
            tls,
        ))
        .unwrap()
    }
}

impl Drop for V1Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_pinned_v1_certificate_is_accepted_exactly() {
    let a = V1Server::start("a13", &["-tls1_3"]);
    let b = V1Server::start("b12", &["-tls1_2"]);
    for server in [&a, &b] {
        // The handshake succeeds: s_server's HTML status page then fails to decode.
        let err = server
            .client(TlsMode::CaBundle(server.cert()))
            .info()
            .await
            .unwrap_err();
        assert_eq!(err.category(), "decode_error", "{err:?}");
    }
    // Pinned to the other server's certificate: refused at TLS.
    let err = a.client(TlsMode::CaBundle(b.cert())).info().await.unwrap_err();
    assert_eq!(err.category(), "tls_error", "{err:?}");
    let err = b.client(TlsMode::CaBundle(ca())).info().await.unwrap_err();
    assert_eq!(err.category(), "tls_error", "{err:?}");
}
