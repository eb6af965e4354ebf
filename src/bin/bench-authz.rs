//! Authorization benchmark: a seeded random world (1k bindings, 100 groups, 10k
//! instances), then 200k decisions timed one by one; then the same requests as the
//! HTTP API decides them, from the published snapshot (`access::rules`): take the
//! snapshot, add the profile's groups, decide; then the listing of the VMs one user may
//! view (`permitted_instances`) in a 100k-instance index. Prints `name value unit` lines.
//! Run in release: `cargo run --release --bin bench-authz`.

use ganeti_operator::access::rules::{Rules, Snapshot};
use ganeti_operator::api::binding::RoleBindingSpec;
use ganeti_operator::api::common::{InstanceRef, Subject};
use ganeti_operator::api::profile::{UserProfile, UserProfileSpec};
use ganeti_operator::api::role::{
    ClusterRight, ClusterRights, Permission, RoleSpec, Scope, ScopeKind, SystemRight, SystemRights, VmRight,
    VmRights,
};
use ganeti_operator::api::{Role, RoleBinding};
use ganeti_operator::authz::{AuthzIndex, Principal, Request};
use ganeti_operator::inventory::{ClusterInventory, Instance};
use ganeti_operator::tags::{self, DEFAULT_PREFIX, GwmPerm};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const CLUSTERS: usize = 5;
const INSTANCES: usize = 10_000;
const USERS: usize = 2_000;
const GROUPS: usize = 100;
const ROLES: usize = 20;
const BINDINGS: usize = 1_000;
const DECISIONS: usize = 200_000;
/// The listing world: this many instances on this many clusters.
const BIG_INSTANCES: usize = 100_000;
const BIG_CLUSTERS: usize = 10;
/// VMs the listing's user owns, and listings timed.
const OWNED: usize = 10;
const LISTINGS: usize = 2_000;

/// splitmix64: enough randomness for a benchmark, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn cluster(n: usize) -> String {
    format!("cluster-{n}")
}
fn instance(n: usize) -> (String, String) {
    (cluster(n % CLUSTERS), format!("vm{n}.example.org"))
}
fn user(n: usize) -> String {
    format!("user{n}@example.org")
}
fn group(n: usize) -> String {
    format!("group-{n}")
}

fn random_subject(rng: &mut Rng) -> Subject {
    if rng.chance(50) {
        Subject::user(user(rng.below(USERS)))
    } else {
        Subject::group(group(rng.below(GROUPS)))
    }
}

fn random_role(rng: &mut Rng) -> RoleSpec {
    let pick = |rng: &mut Rng| match rng.below(10) {
        0..=5 => None,
        6..=8 => Some(Permission::Allowed),
        _ => Some(Permission::Forbidden),
    };
    let mut vms = VmRights::default();
    for r in VmRight::ALL {
        vms.set(*r, pick(rng));
    }
    let mut clusters = ClusterRights::default();
    for r in ClusterRight::ALL {
        clusters.set(*r, pick(rng));
    }
    let mut system = SystemRights::default();
    for r in SystemRight::ALL {
        system.set(*r, pick(rng));
    }
    let kind = [
        ScopeKind::All,
        ScopeKind::Own,
        ScopeKind::Clusters,
        ScopeKind::Instances,
    ][rng.below(4)];
    let scope = Scope {
        kind,
        clusters: if kind == ScopeKind::Clusters {
            (0..1 + rng.below(2))
                .map(|_| cluster(rng.below(CLUSTERS)))
                .collect()
        } else {
            vec![]
        },
        instances: if kind == ScopeKind::Instances {
            (0..1 + rng.below(50))
                .map(|_| instance_ref(rng.below(INSTANCES)))
                .collect()
        } else {
            vec![]
        },
    };
    RoleSpec {
        description: None,
        vms: Some(vms),
        clusters: Some(clusters),
        system: Some(system),
        scope,
    }
}

fn instance_ref(n: usize) -> InstanceRef {
    let (cluster, name) = instance(n);
    InstanceRef { cluster, name }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let mut rng = Rng(0x5EED_A017);
    let roles: Vec<(String, RoleSpec)> = (0..ROLES)
        .map(|n| (format!("role-{n}"), random_role(&mut rng)))
        .collect();
    let role_names: Vec<&str> = roles
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(["user", "advanced-user", "administrator"])
        .collect();
    let bindings: Vec<RoleBindingSpec> = (0..BINDINGS)
        .map(|_| {
            // Mostly the everyday roles, as in a real service; few administrators.
            let role = match rng.below(100) {
                0 => "administrator",
                1..=40 => "user",
                41..=55 => "advanced-user",
                _ => role_names[rng.below(ROLES)],
            };
            let narrowed = rng.chance(20);
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: (0..1 + rng.below(3)).map(|_| random_subject(&mut rng)).collect(),
                clusters: if narrowed && rng.chance(50) {
                    vec![cluster(rng.below(CLUSTERS))]
                } else {
                    vec![]
                },
                instances: if narrowed {
                    (0..rng.below(5))
                        .map(|_| instance_ref(rng.below(INSTANCES)))
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect();
    let instance_tags: Vec<Vec<String>> = (0..INSTANCES)
        .map(|_| {
            let mut t = vec!["webserver".to_owned()];
            t.push(tags::format_owner(DEFAULT_PREFIX, &random_subject(&mut rng)).expect("short tag"));
            for _ in 0..rng.below(3) {
                let perm = GwmPerm::ALL[rng.below(GwmPerm::ALL.len())];
                t.push(
                    tags::format_grant(DEFAULT_PREFIX, perm, &random_subject(&mut rng)).expect("short tag"),
                );
            }
            if rng.chance(2) {
                t.push("ganetimgr:adminlock".into());
            }
            t
        })
        .collect();
    // Each user is in 1 to 8 groups.
    let memberships: Vec<Vec<String>> = (0..USERS)
        .map(|_| (0..1 + rng.below(8)).map(|_| group(rng.below(GROUPS))).collect())
        .collect();
    let users: Vec<String> = (0..USERS).map(user).collect();
    let instances: Vec<(String, String)> = (0..INSTANCES).map(instance).collect();
    let clusters: Vec<String> = (0..CLUSTERS).map(cluster).collect();

    let start = Instant::now();
    let mut builder = AuthzIndex::builder();
    for (name, spec) in &roles {
        builder = builder.role(name, spec);
    }
    for (n, spec) in bindings.iter().enumerate() {
        builder = builder.binding(&format!("binding-{n}"), spec);
    }
    for ((c, i), t) in instances.iter().zip(&instance_tags) {
        builder = builder.instance(c, i, t, DEFAULT_PREFIX);
    }
    let index = builder.build();
    let build_ms = start.elapsed().as_secs_f64() * 1000.0;

    let requests: Vec<(usize, Request<'_>)> = (0..DECISIONS)
        .map(|_| {
            let who = rng.below(USERS);
            let request = match rng.below(100) {
                0..=79 => {
                    let (c, i) = &instances[rng.below(INSTANCES)];
                    Request::Vm {
                        cluster: c,
                        instance: i,
                        right: VmRight::ALL[rng.below(VmRight::ALL.len())],
                    }
                }
                80..=94 => Request::Cluster {
                    cluster: &clusters[rng.below(CLUSTERS)],
                    right: ClusterRight::ALL[rng.below(ClusterRight::ALL.len())],
                },
                _ => Request::System(SystemRight::ALL[rng.below(SystemRight::ALL.len())]),
            };
            (who, request)
        })
        .collect();

    let mut nanos = Vec::with_capacity(DECISIONS);
    let mut allowed = 0usize;
    let total = Instant::now();
    for (who, request) in &requests {
        let principal = Principal::new(&users[*who], &memberships[*who]);
        let t = Instant::now();
        let d = black_box(index.decide(black_box(&principal), black_box(request)));
        nanos.push(t.elapsed().as_nanos() as u64);
        allowed += usize::from(d.allowed);
    }
    let total_s = total.elapsed().as_secs_f64();
    nanos.sort_unstable();

    println!("authz_index_build {build_ms:.1} ms");
    println!("authz_decision_p50 {:.2} us", percentile(&nanos, 0.50));
    println!("authz_decision_p99 {:.2} us", percentile(&nanos, 0.99));
    println!("authz_decision_max {:.2} us", percentile(&nanos, 1.0));
    println!("authz_decisions_per_s {:.0} 1/s", DECISIONS as f64 / total_s);
    println!(
        "authz_allowed_ratio {:.3} ratio",
        allowed as f64 / DECISIONS as f64
    );

    // The API's path: the same world as Kubernetes objects and inventories, published
    // as one snapshot; each request takes it, adds the profile's groups and decides.
    let role_objects: Vec<Arc<Role>> = roles
        .iter()
        .map(|(n, spec)| Arc::new(Role::new(n, spec.clone())))
        .collect();
    let binding_objects: Vec<Arc<RoleBinding>> = bindings
        .iter()
        .enumerate()
        .map(|(n, spec)| Arc::new(RoleBinding::new(&format!("binding-{n}"), spec.clone())))
        .collect();
    // A profile for every tenth user, adding one group.
    let profiles: Vec<Arc<UserProfile>> = (0..USERS)
        .step_by(10)
        .map(|n| {
            Arc::new(UserProfile::new(
                &format!("profile-{n}"),
                UserProfileSpec {
                    username: user(n),
                    full_name: None,
                    email: format!("user{n}@example.org"),
                    ssh_keys: vec![],
                    groups: vec![group(n % GROUPS)],
                },
            ))
        })
        .collect();
    let inventories: Vec<Arc<ClusterInventory>> = clusters
        .iter()
        .map(|c| {
            let on_cluster = instances
                .iter()
                .zip(&instance_tags)
                .filter(|((ic, _), _)| ic == c)
                .map(|((_, name), tags)| Instance {
                    name: name.clone(),
                    tags: tags.clone(),
                    ..Default::default()
                })
                .collect();
            Arc::new(ClusterInventory {
                cluster: c.clone(),
                instances: on_cluster,
                tag_prefix: DEFAULT_PREFIX.to_string(),
                reachable: true,
                ..Default::default()
            })
        })
        .collect();
    let start = Instant::now();
    let rules = Rules::fixed(Snapshot::build(
        role_objects,
        binding_objects,
        profiles,
        inventories,
    ));
    let snapshot_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut overhead = Vec::with_capacity(DECISIONS);
    for (who, request) in &requests {
        let t = Instant::now();
        let snapshot = rules.current();
        let groups = snapshot.effective_groups(&users[*who], &memberships[*who]);
        black_box(
            snapshot
                .index
                .decide(&Principal::new(&users[*who], &groups), black_box(request)),
        );
        overhead.push(t.elapsed().as_nanos() as u64);
    }
    overhead.sort_unstable();
    println!("authz_snapshot_build {snapshot_ms:.1} ms");
    println!("api_request_authz_overhead {:.2} us", percentile(&overhead, 0.99));
    println!(
        "api_request_authz_overhead_p50 {:.2} us",
        percentile(&overhead, 0.50)
    );

    permitted_listing(&roles, &bindings, &mut rng);
}

/// The VMs one user may view among 100k on 10 clusters: the user owns 10 of them (owner
/// tags) through a binding to `user`; the other VMs are tagged for random users and
/// groups, and the same 1k random bindings apply to others.
fn permitted_listing(roles: &[(String, RoleSpec)], bindings: &[RoleBindingSpec], rng: &mut Rng) {
    let owner = "owner@example.org";
    let owner_groups = vec!["owner-team".to_owned()];
    let owned = |n: usize| n % (BIG_INSTANCES / OWNED) == 7;
    // (cluster, name, tags)
    let vms: Vec<(String, String, Vec<String>)> = (0..BIG_INSTANCES)
        .map(|n| {
            let who = if owned(n) {
                Subject::user(owner)
            } else {
                random_subject(rng)
            };
            let mut t = vec![tags::format_owner(DEFAULT_PREFIX, &who).expect("short tag")];
            for _ in 0..rng.below(3) {
                let perm = GwmPerm::ALL[rng.below(GwmPerm::ALL.len())];
                t.push(tags::format_grant(DEFAULT_PREFIX, perm, &random_subject(rng)).expect("short tag"));
            }
            if rng.chance(2) {
                t.push("ganetimgr:adminlock".into());
            }
            (
                format!("big-cluster-{}", n % BIG_CLUSTERS),
                format!("vm{n}.big.example.org"),
                t,
            )
        })
        .collect();
    let start = Instant::now();
    let mut builder = AuthzIndex::builder();
    for (name, spec) in roles {
        builder = builder.role(name, spec);
    }
    for (n, spec) in bindings.iter().enumerate() {
        builder = builder.binding(&format!("binding-{n}"), spec);
    }
    builder = builder.binding(
        "owner-user",
        &RoleBindingSpec {
            role_ref: "user".into(),
            subjects: vec![Subject::user(owner)],
            clusters: vec![],
            instances: vec![],
        },
    );
    for (cluster, name, t) in &vms {
        builder = builder.instance(cluster, name, t, DEFAULT_PREFIX);
    }
    let index = builder.build();
    let build_ms = start.elapsed().as_secs_f64() * 1000.0;
    let principal = Principal::new(owner, &owner_groups);

    let mut nanos = Vec::with_capacity(LISTINGS);
    for _ in 0..LISTINGS {
        let t = Instant::now();
        let listed = black_box(index.permitted_instances(black_box(&principal), VmRight::View));
        nanos.push(t.elapsed().as_nanos() as u64);
        assert_eq!(listed.len(), OWNED, "the user sees its own VMs only");
    }
    nanos.sort_unstable();

    // What it replaces: deciding every VM of the index.
    let mut scans = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let seen = vms
            .iter()
            .filter(|(cluster, instance, _)| {
                index
                    .decide(
                        &principal,
                        &Request::Vm {
                            cluster,
                            instance,
                            right: VmRight::View,
                        },
                    )
                    .allowed
            })
            .count();
        scans.push(t.elapsed().as_nanos() as u64);
        assert_eq!(black_box(seen), OWNED);
    }
    scans.sort_unstable();

    println!("authz_index_build_100k {build_ms:.1} ms");
    println!(
        "authz_permitted_user_of_100k_p50 {:.2} us",
        percentile(&nanos, 0.50)
    );
    println!(
        "authz_permitted_user_of_100k_p99 {:.2} us",
        percentile(&nanos, 0.99)
    );
    println!("authz_scan_user_of_100k_p50 {:.2} us", percentile(&scans, 0.50));
}
