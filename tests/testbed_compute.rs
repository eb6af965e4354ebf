//! The aggregated API `compute.ganeti.dev` against the real testbed: the operator
//! serves it over TLS, the testbed's kube-apiserver proxies to it with its front-proxy
//! certificate, and the testbed's own kubectl (no special flags) is the client.
//!
//! Instances are `gi-*` on 198.51.100.220-224.

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use kube::api::Api;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::compute::{ComputeCert, register_compute_api, unregister_compute_api, wait_available};
use support::ganeti::{apply_cluster, create_instances};
use support::operator::{Operator, Options};
use support::testbed::{kubectl, kubectl_ok};

const CLUSTER: &str = "gi-lab";
const SECRET: &str = "rapi-gi";
const WAIT: Duration = Duration::from_secs(120);

fn owner(user: &str) -> Vec<String> {
    vec![format_owner(DEFAULT_PREFIX, &Subject::user(user)).unwrap()]
}

fn group_owner(group: &str) -> Vec<String> {
    vec![format_owner(DEFAULT_PREFIX, &Subject::group(group)).unwrap()]
}

/// `cluster.instance`: the object name of a VM of the test's cluster.
fn gi(instance: &str) -> String {
    format!("{CLUSTER}.{instance}")
}

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        unregister_compute_api();
        support::testbed::delete_if_present(
            "rolebinding.ganeti.dev",
            &["gi-users", "gi-helpdesk", "gi-bob-views"],
        );
        support::testbed::delete_if_present("role.ganeti.dev", &["gi-helpdesk", "gi-viewer"]);
        support::testbed::delete_if_present("ganeticluster", &[CLUSTER]);
    }
}

async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `kubectl get gi` as `user` for the test's cluster: the object names.
fn names_as(user: &str) -> BTreeSet<String> {
    let out = kubectl_ok(
        user,
        &[
            "get",
            "gi",
            "--field-selector",
            &format!("spec.cluster={CLUSTER}"),
            "-o",
            "name",
        ],
    );
    out.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("ganetiinstance.compute.ganeti.dev/")
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// What `ganeti-operator explain` says `user` may view on the test's cluster.
fn explained(user: &str, groups: &[&str], instances: &[String]) -> BTreeSet<String> {
    instances
        .iter()
        .filter(|i| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ganeti-operator"));
            cmd.args(["explain", user, "vms.view", &format!("{CLUSTER}/{i}")])
                .args([
                    "--kubeconfig",
                    support::testbed::kubeconfig("root").to_str().unwrap(),
                ]);
            for g in groups {
                cmd.args(["--group", g]);
            }
            cmd.output().expect("explain runs").status.success()
        })
        .map(|i| gi(i))
        .collect()
}

fn get_json(user: &str, name: &str) -> Value {
    serde_json::from_str(&kubectl_ok(user, &["get", "gi", name, "-o", "json"])).unwrap()
}

/// `kubectl create --raw` of a subresource as `user`: (ok, stdout, stderr).
fn post(user: &str, name: &str, subresource: &str, body: &str) -> (bool, String, String) {
    let file = std::env::temp_dir().join(format!("gi-body-{}", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let path = format!("/apis/compute.ganeti.dev/v1alpha1/ganetiinstances/{name}/{subresource}");
    let out = kubectl(user, &["create", "--raw", &path, "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    out
}

/// `kubectl ganeti ARGS` as `user`: the testbed's kubectl finds the plugin on PATH
/// (the operator binary, linked as `kubectl-ganeti`).
fn plugin(user: &str, args: &[&str]) -> std::process::Command {
    let dir = std::env::temp_dir().join(format!("gi-plugin-{}", std::process::id()));
    let link = dir.join("kubectl-ganeti");
    if !link.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ganeti-operator"), &link).unwrap();
    }
    let mut cmd = std::process::Command::new(support::testbed::env("KUBECTL"));
    cmd.env(
        "PATH",
        format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()),
    )
    .env("KUBECONFIG", support::testbed::kubeconfig(user))
    .arg("ganeti")
    .args(args);
    cmd
}

fn plugin_ok(user: &str, args: &[&str]) -> String {
    let out = plugin(user, args).output().expect("kubectl ganeti runs");
    assert!(
        out.status.success(),
        "kubectl ganeti {args:?} as {user}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state_of(user: &str, name: &str) -> (String, String) {
    let o = get_json(user, name);
    (
        o["status"]["state"].as_str().unwrap_or_default().to_string(),
        o["spec"]["runStrategy"].as_str().unwrap_or_default().to_string(),
    )
}

async fn role(root: &kube::Client, name: &str, spec: Value) {
    let roles: Api<ganeti_operator::api::Role> = Api::all(root.clone());
    let obj = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": name}, "spec": spec});
    support::apply(&roles, name, &obj).await;
}

async fn bind(root: &kube::Client, name: &str, role: &str, subjects: Value, extra: Value) {
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    let mut spec = json!({"roleRef": role, "subjects": subjects});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let obj = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec});
    support::apply(&bindings, name, &obj).await;
}

/// Every Ganeti instance the test's cluster shows (other tests' VMs included: the
/// testbed has one Ganeti cluster).
async fn ganeti_instances() -> Vec<String> {
    support::ganeti::rapi()
        .instance_names()
        .await
        .expect("RAPI lists instances")
}

#[tokio::test]
async fn kubectl_reaches_ganeti_through_the_aggregation_layer() {
    let root = support::install_with_policies().await;
    let _cleanup = Cleanup;
    apply_cluster(&root, CLUSTER, SECRET, json!({})).await;
    role(
        &root,
        "gi-helpdesk",
        json!({"vms": {"view": "allowed", "start": "allowed", "shutdown": "allowed", "lock": "allowed", "admin": "allowed"}, "scope": {"kind": "All"}}),
    )
    .await;
    role(
        &root,
        "gi-viewer",
        json!({"vms": {"view": "allowed"}, "scope": {"kind": "All"}}),
    )
    .await;
    bind(
        &root,
        "gi-users",
        "user",
        json!([{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "team-a"}]),
        json!({}),
    )
    .await;
    bind(
        &root,
        "gi-helpdesk",
        "gi-helpdesk",
        json!([{"kind": "Group", "name": "ganeti-admins"}]),
        json!({}),
    )
    .await;
    // bob may view alice's gi-a1 and nothing more on it.
    bind(
        &root,
        "gi-bob-views",
        "gi-viewer",
        json!([{"kind": "User", "name": "bob"}]),
        json!({"instances": [{"cluster": CLUSTER, "name": "gi-a1"}]}),
    )
    .await;
    let _vms = create_instances(
        &[
            ("gi-a1", "198.51.100.220", owner("alice")),
            ("gi-a2", "198.51.100.221", owner("alice")),
            ("gi-b1", "198.51.100.222", owner("bob")),
            ("gi-t1", "198.51.100.223", group_owner("team-a")),
        ],
        "tests/testbed_compute",
    )
    .await;
    // A kvm VM as Ganeti makes it by default (serial_console: true).
    let c = support::ganeti::rapi();
    let _kvm = support::ganeti::Instances::fresh(vec!["gi-k1".into()]);
    let mut kvm = support::ganeti::instance_request("gi-k1", "198.51.100.224");
    kvm.hypervisor = Some("kvm".into());
    kvm.tags = owner("alice");
    let job = c
        .create_instance(&kvm, "tests/testbed_compute")
        .await
        .expect("kvm create accepted");
    c.wait_job(job, Duration::from_secs(300))
        .await
        .expect("job wait")
        .into_success()
        .expect("the kvm VM is created");
    let cert = ComputeCert::generate();
    let dir = std::env::temp_dir().join(format!("gi-certs-{}", std::process::id()));
    let files = cert.write_to(&dir);
    let port = support::free_port();
    let op = Operator::start_with(
        "compute",
        Options::default()
            .arg("--compute-api-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--compute-api-cert")
            .arg(files.cert.to_str().unwrap())
            .arg("--compute-api-key")
            .arg(files.key.to_str().unwrap()),
    )
    .await;
    register_compute_api(port, &cert.ca_pem);
    wait_available(WAIT).await;

    // 1. Each user lists exactly what the engine lets them view.
    until("alice's VMs listed", || {
        let names = names_as("alice");
        (names.contains(&gi("gi-a1")) && names.contains(&gi("gi-a2"))).then_some(())
    })
    .await;
    let instances = ganeti_instances().await;
    for (user, groups) in [
        ("alice", vec!["system:authenticated"]),
        ("bob", vec!["system:authenticated"]),
        ("carol", vec!["team-a", "system:authenticated"]),
        ("admin", vec!["ganeti-admins", "system:authenticated"]),
    ] {
        let listed = names_as(user);
        let allowed = explained(user, &groups, &instances);
        assert_eq!(listed, allowed, "{user} lists what explain allows\n{}", op.log());
    }
    assert!(names_as("alice").contains(&gi("gi-a1")) && !names_as("alice").contains(&gi("gi-b1")));
    assert!(
        names_as("bob").contains(&gi("gi-a1")),
        "bob's view-only binding shows gi-a1"
    );
    assert!(names_as("carol").contains(&gi("gi-t1")), "team-a's VM is carol's");
    for vm in ["gi-a1", "gi-a2", "gi-b1", "gi-t1"] {
        assert!(names_as("admin").contains(&gi(vm)), "the helpdesk sees {vm}");
    }

    // 2. The object: its uid is Ganeti's UUID; the table has the operator's columns.
    let a1 = get_json("alice", &gi("gi-a1"));
    let uuid = support::ganeti::rapi()
        .instance("gi-a1")
        .await
        .unwrap()
        .uuid
        .unwrap();
    assert_eq!(a1["metadata"]["uid"], json!(uuid));
    assert_eq!(a1["metadata"]["labels"]["compute.ganeti.dev/owner-user"], "alice");
    assert_eq!(a1["spec"]["cluster"], CLUSTER);
    let table = kubectl_ok("alice", &["get", "gi", &gi("gi-a1")]);
    for column in ["NAME", "CLUSTER", "STATE", "NODE", "OWNER"] {
        assert!(table.contains(column), "kubectl get prints {column}:\n{table}");
    }
    let by_label = kubectl_ok(
        "alice",
        &[
            "get",
            "gi",
            "-l",
            "compute.ganeti.dev/owner-user=alice",
            "-o",
            "name",
        ],
    );
    assert!(by_label.contains(&gi("gi-a2")), "{by_label}");

    // 3. kubectl explain reads the OpenAPI document.
    let explained_fields = kubectl_ok("alice", &["explain", "gi.spec"]);
    for field in ["runStrategy", "locked", "isolated"] {
        assert!(
            explained_fields.contains(field),
            "kubectl explain documents {field}:\n{explained_fields}"
        );
    }

    // 4. No existence leak: bob gets 404 for alice's gi-a2 and for a VM that does not exist.
    let (ok, _, err) = kubectl("bob", &["get", "gi", &gi("gi-a2")]);
    assert!(!ok && err.contains("NotFound"), "hidden VM: {err}");
    let (ok, _, missing) = kubectl("bob", &["get", "gi", &gi("gi-nothing")]);
    assert!(!ok && missing.contains("NotFound"), "missing VM: {missing}");
    // 403 for an action on a VM bob may view but not act on.
    let (ok, _, err) = post("bob", &gi("gi-a1"), "shutdown", "{}");
    assert!(!ok && err.contains("Forbidden"), "view-only: {err}");

    // 5. A watch sees alice stop her VM through the shutdown subresource.
    let watch_out = std::env::temp_dir().join(format!("gi-watch-{}", std::process::id()));
    let mut watcher = std::process::Command::new(support::testbed::env("KUBECTL"))
        .args([
            "--kubeconfig",
            support::testbed::kubeconfig("alice").to_str().unwrap(),
        ])
        .args([
            "get",
            "gi",
            &gi("gi-a2"),
            "-w",
            "-o",
            "jsonpath={.status.state}{\"\\n\"}",
        ])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    until("the watch's first event", || {
        std::fs::read_to_string(&watch_out)
            .ok()
            .filter(|s| s.contains("running"))
    })
    .await;
    // By its Ganeti name: the plugin finds the object.
    let job = plugin_ok("alice", &["stop", "gi-a2"]);
    assert!(
        job.trim().parse::<u64>().is_ok(),
        "kubectl ganeti stop prints the job id: {job}"
    );
    until("the watch sees gi-a2 stopped", || {
        std::fs::read_to_string(&watch_out)
            .ok()
            .filter(|s| s.contains("ADMIN_down"))
    })
    .await;
    let _ = watcher.kill();
    let _ = watcher.wait();

    // 6. Declarative: runStrategy starts and stops.
    let patch = |user: &str, name: &str, spec: &str| {
        kubectl(
            user,
            &[
                "patch",
                "gi",
                name,
                "--type",
                "merge",
                "-p",
                &format!("{{\"spec\":{spec}}}"),
            ],
        )
    };
    let (ok, _, err) = patch("alice", &gi("gi-a2"), r#"{"runStrategy":"Always"}"#);
    assert!(ok, "runStrategy Always: {err}");
    until("gi-a2 running again", || {
        (state_of("alice", &gi("gi-a2")).0 == "running").then_some(())
    })
    .await;
    let (ok, _, err) = patch("alice", &gi("gi-a2"), r#"{"runStrategy":"Halted"}"#);
    assert!(ok, "runStrategy Halted: {err}");
    until("gi-a2 halted", || {
        (state_of("alice", &gi("gi-a2")) == ("ADMIN_down".to_string(), "Halted".to_string())).then_some(())
    })
    .await;
    // Only the spec is declarative.
    let (ok, _, err) = kubectl(
        "alice",
        &[
            "patch",
            "gi",
            &gi("gi-a2"),
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"cluster":"x"}}"#,
        ],
    );
    assert!(
        !ok && err.contains("spec.cluster: Invalid value") || err.contains("spec.cluster cannot change"),
        "{err}"
    );

    // 7. A lock: the owner's actions are refused, the helpdesk's allowed.
    let (ok, _, err) = patch("alice", &gi("gi-a1"), r#"{"locked":true}"#);
    assert!(!ok && err.contains("Forbidden"), "alice has no vms.lock: {err}");
    let (ok, _, err) = patch("admin", &gi("gi-a1"), r#"{"locked":true}"#);
    assert!(ok, "the helpdesk locks gi-a1: {err}");
    until("gi-a1 shows locked", || {
        get_json("alice", &gi("gi-a1"))["spec"]["locked"]
            .as_bool()
            .filter(|l| *l)
    })
    .await;
    let (ok, _, err) = post("alice", &gi("gi-a1"), "shutdown", "{}");
    assert!(
        !ok && err.contains("Forbidden"),
        "a locked VM refuses its owner: {err}"
    );
    let (ok, _, err) = post("admin", &gi("gi-a1"), "shutdown", "{}");
    assert!(ok, "the helpdesk acts on a locked VM: {err}");
    until("gi-a1 stopped by the helpdesk", || {
        (state_of("admin", &gi("gi-a1")).0 == "ADMIN_down").then_some(())
    })
    .await;
    let (ok, _, err) = patch(
        "admin",
        &gi("gi-a1"),
        r#"{"locked":false,"runStrategy":"Always"}"#,
    );
    assert!(ok, "the helpdesk unlocks and starts: {err}");
    until("gi-a1 unlocked and running", || {
        let o = get_json("alice", &gi("gi-a1"));
        (o["spec"]["locked"] == json!(false) && o["status"]["state"] == "running").then_some(())
    })
    .await;

    // 8. VNC through `kubectl ganeti vnc` on a kvm VM with Ganeti's defaults (its
    // console answer is the serial console; its VNC server is on network_port).
    let port = support::free_port();
    let mut vnc = plugin("alice", &["vnc", &gi("gi-k1"), "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl ganeti vnc starts");
    let banner = until("an RFB banner through kubectl ganeti vnc", || {
        use std::io::Read;
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut banner = [0u8; 12];
        tcp.read_exact(&mut banner).ok()?;
        Some(String::from_utf8_lossy(&banner).into_owned())
    })
    .await;
    let _ = vnc.kill();
    let _ = vnc.wait();
    assert!(
        banner.starts_with("RFB 003."),
        "the VM's VNC server speaks RFB: {banner:?}"
    );
    let listed = plugin_ok("alice", &["list", "--cluster", CLUSTER]);
    assert!(listed.contains("gi-a1") && !listed.contains("gi-b1"), "{listed}");

    // 9. Nodes need system.nodes: alice is refused, the administrator binding is not.
    let (ok, _, err) = kubectl("alice", &["get", "ganetinodes"]);
    assert!(!ok && err.contains("Forbidden"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
