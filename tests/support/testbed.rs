//! Access to the real testbed (scripts/testbed). A missing testbed fails the test:
//! these tests never skip.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A variable from the testbed's env file (exported by `make test`).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "testbed variable {name} is not set: the real testbed is required. \
             Run `scripts/testbed up && source /var/tmp/ganeti-operator-testbed/env` (make test does this)"
        )
    })
}

/// A kube client authenticated as one of the testbed identities
/// (`root`, `admin`, `alice`, `bob`, `carol`).
pub async fn kube_client(identity: &str) -> kube::Client {
    let path = kubeconfig(identity);
    let kc = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig loads");
    kube::Client::try_from(config).expect("kube client")
}

pub fn kubeconfig(identity: &str) -> PathBuf {
    PathBuf::from(env(&format!("KUBECONFIG_{}", identity.to_uppercase())))
}

/// Runs kubectl as `identity`; returns (success, stdout, stderr).
pub fn kubectl(identity: &str, args: &[&str]) -> (bool, String, String) {
    // A fresh discovery cache per call: CRDs installed a moment ago must be found.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cache = std::env::temp_dir().join(format!("kubectl-cache-{}-{n}", std::process::id()));
    let out = Command::new(env("KUBECTL"))
        .arg(format!("--cache-dir={}", cache.display()))
        .arg("--kubeconfig")
        .arg(kubeconfig(identity))
        .args(args)
        .output()
        .expect("running kubectl");
    let _ = std::fs::remove_dir_all(&cache);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deletes the named objects of `kind` as the superuser, those that exist (for test
/// clean-up in `Drop`, so failures are ignored).
pub fn delete_if_present(kind: &str, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    let mut args = vec!["delete", kind];
    args.extend_from_slice(names);
    args.push("--ignore-not-found");
    let _ = kubectl("root", &args);
}

/// Runs kubectl and panics with its output when it fails.
pub fn kubectl_ok(identity: &str, args: &[&str]) -> String {
    let (ok, stdout, stderr) = kubectl(identity, args);
    assert!(ok, "kubectl {args:?} as {identity} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Deletes the ConfigMap `name` of ganeti-system if it exists (clean-up: failures ignored).
pub fn delete_config_map(name: &str) {
    let _ = kubectl(
        "root",
        &[
            "delete",
            "configmap",
            "-n",
            "ganeti-system",
            name,
            "--ignore-not-found",
        ],
    );
}
