//! Every right does what its description says, through the user API on the real
//! testbed: cluster rights on the actions that move a VM's data, resize within quota
//! (`vms.modify`), free-form tags (`vms.tags`), the admin lock (`vms.lock`), cluster and
//! node views (`clusters.view`, `system.nodes`), and a profile group counting like an
//! authenticated one.
//!
//! Instances are `rights-*` on 198.51.100.210-214.

mod support;

use ganeti_operator::api::Subject;
use ganeti_operator::rapi::JobId;
use ganeti_operator::tags::{DEFAULT_PREFIX, format_owner};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apply;
use support::ganeti::{gnt, rapi};
use support::operator::Operator;
use support::testbed::env;

const CLUSTER: &str = "rights-tb";
const JOB_DEADLINE: Duration = Duration::from_secs(180);
const ROLES: &[&str] = &[
    "rights-no-moves",
    "rights-no-views",
    "rights-vm-extra",
    "rights-cluster-mover",
    "rights-cluster-viewer",
    "rights-nodes",
    "rights-viewer",
];
const BINDINGS: &[&str] = &[
    "rights-alice-no-moves",
    "rights-alice-no-views",
    "rights-users",
    "rights-alice-extra",
    "rights-alice-cluster-mover",
    "rights-alice-cluster-viewer",
    "rights-alice-nodes",
    "rights-team-view",
];
const QUOTA: &str = "rights-alice-quota";
const PROFILE: &str = "rights-bob";

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        use support::testbed::delete_if_present;
        delete_if_present("rolebindings.ganeti.dev", BINDINGS);
        delete_if_present("roles.ganeti.dev", ROLES);
        delete_if_present("clusterquotas.ganeti.dev", &[QUOTA]);
        delete_if_present("userprofiles.ganeti.dev", &[PROFILE]);
    }
}

fn owner(user: &str) -> Vec<String> {
    vec![format_owner(DEFAULT_PREFIX, &Subject::user(user)).unwrap()]
}

async fn role(root: &kube::Client, name: &str, spec: Value) {
    let roles: Api<ganeti_operator::api::Role> = Api::all(root.clone());
    apply(
        &roles,
        name,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
}

async fn bind(root: &kube::Client, name: &str, role: &str, subjects: Value, extra: Value) {
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    let mut spec = json!({"roleRef": role, "subjects": subjects});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    apply(
        &bindings,
        name,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
}

async fn unbind(root: &kube::Client, name: &str) {
    let bindings: Api<ganeti_operator::api::RoleBinding> = Api::all(root.clone());
    let _ = bindings.delete(name, &DeleteParams::default()).await;
}

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// An action; waits out the per-user action rate limit (this test acts a lot).
    async fn act(&self, vm: &str, action: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        for _ in 0..20 {
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("/instances/{CLUSTER}/{vm}/{action}"),
                    token,
                    body.clone(),
                )
                .await;
            if answer.0 != 429 {
                return answer;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        panic!("{action} {vm}: rate-limited for a minute");
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// Repeats `call` until `done` holds (a binding reaches the watched cache in a
    /// moment), at most 30 s; returns the last answer.
    async fn until<F, Fut>(
        &self,
        what: &str,
        op: &Operator,
        call: F,
        done: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = (u16, Value)>,
    {
        let started = Instant::now();
        loop {
            let (status, body) = call().await;
            if done(status, &body) {
                return (status, body);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: last answer {status} {body}\n{}",
                op.log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn tags_of(vm: &str) -> Vec<String> {
    gnt(&format!("gnt-instance list --no-headers -o tags {vm}"))
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect()
}

async fn job_succeeds(answer: &Value) {
    let id = answer["job"]
        .as_u64()
        .unwrap_or_else(|| panic!("no job in {answer}"));
    rapi()
        .wait_job(JobId(id), JOB_DEADLINE)
        .await
        .unwrap()
        .into_success()
        .unwrap_or_else(|e| panic!("job {id} failed: {e:?}"));
}

#[tokio::test]
async fn each_right_does_what_it_says_through_the_api() {
    let (alice, bob) = (env("KUBE_TOKEN_ALICE"), env("KUBE_TOKEN_BOB"));
    let root = support::install_with_policies().await;
    let _cleanup = Cleanup;
    support::ganeti::apply_cluster(&root, CLUSTER, "rights-rapi", json!({})).await;
    bind(
        &root,
        "rights-users",
        "user",
        json!([{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]),
        json!({}),
    )
    .await;
    let _vms = support::ganeti::create_instances(
        &[
            ("rights-a1", "198.51.100.210", owner("alice")),
            ("rights-a2", "198.51.100.211", owner("alice")),
        ],
        "tests/testbed_rights_api",
    )
    .await;
    let op = Operator::start("rights-api").await;
    let http = Http {
        client: reqwest::Client::new(),
        base: op.url("/api/v1"),
    };
    let a1_path = format!("/instances/{CLUSTER}/rights-a1");
    http.until(
        "alice sees rights-a1",
        &op,
        || http.get(&a1_path, &alice),
        |s, _| s == 200,
    )
    .await;

    // 1. migrate: the VM right alone is not enough, the cluster right completes it.
    role(
        &root,
        "rights-vm-extra",
        json!({"vms": {"migrate": "allowed", "modify": "allowed", "tags": "allowed", "lock": "allowed"}}),
    )
    .await;
    bind(
        &root,
        "rights-alice-extra",
        "rights-vm-extra",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    // Roles are cluster-wide and other tests on the shared apiserver may have given
    // alice cluster rights: a role forbidding clusters.migrate shows that the cluster
    // right is consulted whatever else she holds (the unit tests show the VM right
    // alone is refused).
    role(
        &root,
        "rights-no-moves",
        json!({"clusters": {"migrate": "forbidden"}}),
    )
    .await;
    bind(
        &root,
        "rights-alice-no-moves",
        "rights-no-moves",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    let (status, body) = http
        .until(
            "migrate refused for want of the cluster right",
            &op,
            || http.act("rights-a1", "migrate", &alice, None),
            |s, b| s == 403 && b.to_string().contains("clusters.migrate"),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    unbind(&root, "rights-alice-no-moves").await;
    role(
        &root,
        "rights-cluster-mover",
        json!({"clusters": {"migrate": "allowed"}}),
    )
    .await;
    bind(
        &root,
        "rights-alice-cluster-mover",
        "rights-cluster-mover",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    let (_, body) = http
        .until(
            "migrate allowed with the cluster right",
            &op,
            || http.act("rights-a1", "migrate", &alice, None),
            |s, _| s == 200,
        )
        .await;
    // Allowed and submitted: whether Ganeti can migrate a diskless VM on this testbed is
    // Ganeti's answer, not the operator's.
    let job = rapi()
        .wait_job(JobId(body["job"].as_u64().unwrap()), JOB_DEADLINE)
        .await
        .unwrap();
    assert!(
        job.summary.iter().any(|s| s.contains("MIGRATE")),
        "{:?}",
        job.summary
    );

    // 2. resize within alice's quota works; beyond it is refused with the numbers.
    let quotas: Api<ganeti_operator::api::ClusterQuota> = Api::all(root.clone());
    apply(
        &quotas,
        QUOTA,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "ClusterQuota", "metadata": {"name": QUOTA},
                "spec": {"cluster": CLUSTER, "subject": {"kind": "User", "name": "alice"},
                         "limits": {"vcpus": 4, "memory": "512Mi"}}}),
    )
    .await;
    // Two VMs of 128Mi: growing one to 256Mi leaves 512Mi in use.
    let (status, body) = http
        .act(
            "rights-a2",
            "resize",
            &alice,
            Some(json!({"vcpus": 2, "memory": "256Mi"})),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", op.log());
    assert_eq!(
        body["needsReboot"],
        json!(true),
        "a running VM takes new parameters at its next start: {body}"
    );
    job_succeeds(&body).await;
    let be = gnt("gnt-instance list --no-headers --units=m --separator='|' -o be/vcpus,be/maxmem rights-a2");
    assert_eq!(be.trim(), "2|256", "Ganeti has the new size");
    let (status, body) = http
        .act("rights-a2", "resize", &alice, Some(json!({"memory": "1Gi"})))
        .await;
    assert_eq!(status, 403, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("over quota") && msg.contains("512") && msg.contains(QUOTA),
        "{msg}"
    );
    let be = gnt("gnt-instance list --no-headers --units=m -o be/maxmem rights-a2");
    assert_eq!(be.trim(), "256", "nothing changed");

    // 3. tags: free-form ones come and go; permission and lock tags are refused.
    let (status, body) = http
        .act("rights-a1", "tags", &alice, Some(json!({"add": ["rights-web"]})))
        .await;
    assert_eq!(status, 200, "{body}");
    job_succeeds(&body).await;
    assert!(tags_of("rights-a1").contains(&"rights-web".to_string()));
    for forged in ["GANETI_WEB_MANAGER:admin:U:alice", "ganetimgr:adminlock"] {
        let (status, body) = http
            .act("rights-a1", "tags", &alice, Some(json!({"add": [forged]})))
            .await;
        assert_eq!(status, 403, "{forged}: {body}");
        let (status, _) = http
            .act(
                "rights-a1",
                "tags",
                &alice,
                Some(json!({"remove": [&owner("alice")[0]]})),
            )
            .await;
        assert_eq!(status, 403, "an owner tag is not removed through tags");
    }

    // 4. lock: the owner locks the VM (her reboot is refused), then unlocks it.
    let (status, body) = http.act("rights-a1", "lock", &alice, None).await;
    assert_eq!(status, 200, "{body}");
    job_succeeds(&body).await;
    assert!(tags_of("rights-a1").contains(&"ganetimgr:adminlock".to_string()));
    let (status, body) = http.act("rights-a1", "reboot", &alice, None).await;
    assert_eq!(status, 403, "a locked VM refuses its owner's reboot: {body}");
    let (status, body) = http.act("rights-a1", "unlock", &alice, None).await;
    assert_eq!(status, 200, "{body}");
    job_succeeds(&body).await;
    assert!(!tags_of("rights-a1").contains(&"ganetimgr:adminlock".to_string()));

    // 5. clusters.view and system.nodes; as above, forbidden first, so what other tests
    //    granted alice cannot hide a check.
    let listed = |b: &Value| {
        b["clusters"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["name"] == CLUSTER))
    };
    role(
        &root,
        "rights-no-views",
        json!({"clusters": {"view": "forbidden"}, "system": {"nodes": "forbidden"}}),
    )
    .await;
    bind(
        &root,
        "rights-alice-no-views",
        "rights-no-views",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    http.until(
        "the cluster hidden from alice",
        &op,
        || http.get("/clusters", &alice),
        |s, b| s == 200 && !listed(b),
    )
    .await;
    let nodes_path = format!("/clusters/{CLUSTER}/nodes");
    let (_, body) = http
        .until(
            "nodes refused",
            &op,
            || http.get(&nodes_path, &alice),
            |s, _| s == 403,
        )
        .await;
    assert!(body.to_string().contains("system.nodes"), "{body}");
    unbind(&root, "rights-alice-no-views").await;
    role(
        &root,
        "rights-cluster-viewer",
        json!({"clusters": {"view": "allowed"}, "scope": {"kind": "Clusters", "clusters": [CLUSTER]}}),
    )
    .await;
    bind(
        &root,
        "rights-alice-cluster-viewer",
        "rights-cluster-viewer",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    let (_, body) = http
        .until(
            "alice sees the cluster",
            &op,
            || http.get("/clusters", &alice),
            |s, b| s == 200 && listed(b),
        )
        .await;
    let cluster = body["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == CLUSTER)
        .unwrap();
    assert!(
        cluster["capacity"]["memoryTotalBytes"].as_u64().unwrap() > 0,
        "{cluster}"
    );
    role(&root, "rights-nodes", json!({"system": {"nodes": "allowed"}})).await;
    bind(
        &root,
        "rights-alice-nodes",
        "rights-nodes",
        json!([{"kind": "User", "name": "alice"}]),
        json!({}),
    )
    .await;
    let (_, body) = http
        .until(
            "alice sees the nodes",
            &op,
            || http.get(&nodes_path, &alice),
            |s, _| s == 200,
        )
        .await;
    assert!(
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == env("GANETI_NODE").as_str() && n["role"] == "master"),
        "{body}"
    );

    // 6. A group from bob's UserProfile counts at the API as an authenticated one.
    role(
        &root,
        "rights-viewer",
        json!({"vms": {"view": "allowed"}, "scope": {"kind": "All"}}),
    )
    .await;
    bind(
        &root,
        "rights-team-view",
        "rights-viewer",
        json!([{"kind": "Group", "name": "rights-team"}]),
        json!({"instances": [{"cluster": CLUSTER, "name": "rights-a1"}]}),
    )
    .await;
    let (status, _) = http.get(&a1_path, &bob).await;
    assert_eq!(status, 404, "bob is in no group rights-team yet");
    let profiles: Api<ganeti_operator::api::UserProfile> = Api::all(root.clone());
    apply(
        &profiles,
        PROFILE,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": PROFILE},
                "spec": {"username": "bob", "email": "bob@rights.test", "groups": ["rights-team"]}}),
    )
    .await;
    http.until(
        "bob sees rights-a1 through his profile's group",
        &op,
        || http.get(&a1_path, &bob),
        |s, _| s == 200,
    )
    .await;
    let (status, _) = http.get(&format!("/instances/{CLUSTER}/rights-a2"), &bob).await;
    assert_eq!(status, 404, "the group's binding reaches rights-a1 only");
}
