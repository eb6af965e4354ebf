//! Property tests of the authorization engine against a naive oracle that rescans every
//! binding, re-parses every tag and works on sets, for small random worlds.

use ganeti_operator::api::binding::RoleBindingSpec;
use ganeti_operator::api::common::{InstanceRef, Subject, SubjectKind};
use ganeti_operator::api::role::{
    ClusterRight, ClusterRights, Permission, Role, RoleSpec, Scope, ScopeKind, SystemRight, SystemRights,
    VmRight, VmRights,
};
use ganeti_operator::authz::{AuthzIndex, DetachedVms, Principal, Request, preconfigured_roles};
use ganeti_operator::inventory::Instance;
use ganeti_operator::tags::{self, DEFAULT_PREFIX, ParsedTag};
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use std::collections::BTreeSet;
use std::sync::LazyLock;

const CLUSTERS: &[&str] = &["c0", "c1"];
const NAMES: &[&str] = &["i0", "i1", "i2"];
const USERS: &[&str] = &["u0", "u1", "u2"];
const GROUPS: &[&str] = &["g0", "g1", "g2"];
const ROLE_NAMES: &[&str] = &[
    "r0",
    "r1",
    "r2",
    "user",
    "advanced-user",
    "administrator",
    "missing",
];

#[derive(Debug, Clone)]
struct World {
    roles: Vec<(String, RoleSpec)>,
    bindings: Vec<RoleBindingSpec>,
    /// (cluster, name, tags)
    instances: Vec<(String, String, Vec<String>)>,
}

#[derive(Debug, Clone)]
struct Who {
    user: String,
    groups: Vec<String>,
}

#[derive(Debug, Clone)]
enum Req {
    Vm(String, String, VmRight),
    Cluster(String, ClusterRight),
    System(SystemRight),
}

impl Req {
    fn as_request(&self) -> Request<'_> {
        match self {
            Req::Vm(c, i, r) => Request::Vm {
                cluster: c,
                instance: i,
                right: *r,
            },
            Req::Cluster(c, r) => Request::Cluster {
                cluster: c,
                right: *r,
            },
            Req::System(r) => Request::System(*r),
        }
    }
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        select(USERS).prop_map(Subject::user),
        select(GROUPS).prop_map(Subject::group),
    ]
}

fn instance_ref() -> impl Strategy<Value = InstanceRef> {
    (select(CLUSTERS), select(NAMES)).prop_map(|(c, n)| InstanceRef {
        cluster: c.into(),
        name: n.into(),
    })
}

/// One right's setting from 4 random bits: not set 9/16, allowed 5/16, forbidden 2/16
/// (drawn from raw bits because per-right strategies dominate the run time in debug).
fn permission(bits: u128, n: usize) -> Option<Permission> {
    match (bits >> (4 * n)) & 0xF {
        0..=8 => None,
        9..=13 => Some(Permission::Allowed),
        _ => Some(Permission::Forbidden),
    }
}

fn role_spec() -> impl Strategy<Value = RoleSpec> {
    let scope = (
        select(
            &[
                ScopeKind::All,
                ScopeKind::Own,
                ScopeKind::Clusters,
                ScopeKind::Instances,
            ][..],
        ),
        subsequence(CLUSTERS, 1..=2),
        proptest::collection::vec(instance_ref(), 1..3),
    )
        .prop_map(|(kind, clusters, instances)| Scope {
            kind,
            clusters: if kind == ScopeKind::Clusters {
                clusters.into_iter().map(String::from).collect()
            } else {
                vec![]
            },
            instances: if kind == ScopeKind::Instances {
                instances
            } else {
                vec![]
            },
        });
    (any::<u128>(), scope).prop_map(|(bits, scope)| {
        let mut vms = VmRights::default();
        VmRight::ALL
            .iter()
            .enumerate()
            .for_each(|(n, r)| vms.set(*r, permission(bits, n)));
        let mut clusters = ClusterRights::default();
        let at = VmRight::ALL.len();
        ClusterRight::ALL
            .iter()
            .enumerate()
            .for_each(|(n, r)| clusters.set(*r, permission(bits, at + n)));
        let mut system = SystemRights::default();
        let at = at + ClusterRight::ALL.len();
        SystemRight::ALL
            .iter()
            .enumerate()
            .for_each(|(n, r)| system.set(*r, permission(bits, at + n)));
        RoleSpec {
            description: None,
            vms: Some(vms),
            clusters: Some(clusters),
            system: Some(system),
            scope,
        }
    })
}

fn binding() -> impl Strategy<Value = RoleBindingSpec> {
    (
        select(ROLE_NAMES),
        proptest::collection::vec(subject(), 1..3),
        prop_oneof![3 => Just(vec![]), 1 => subsequence(CLUSTERS, 1..=1)],
        prop_oneof![3 => Just(vec![]), 1 => proptest::collection::vec(instance_ref(), 1..3)],
    )
        .prop_map(|(role, subjects, clusters, instances)| RoleBindingSpec {
            role_ref: role.into(),
            subjects,
            clusters: clusters.into_iter().map(String::from).collect(),
            instances,
        })
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        subject().prop_map(|s| tags::format_owner(DEFAULT_PREFIX, &s).unwrap()),
        subject().prop_map(|s| ParsedTag::GanetimgrOwner(s).format(DEFAULT_PREFIX).unwrap()),
        (select(tags::GwmPerm::ALL), subject())
            .prop_map(|(p, s)| tags::format_grant(DEFAULT_PREFIX, p, &s).unwrap()),
        Just("ganetimgr:adminlock".to_owned()),
        Just("ganetimgr:isolate".to_owned()),
        Just("webserver".to_owned()),
    ]
}

fn world() -> impl Strategy<Value = World> {
    (
        proptest::collection::vec(role_spec(), 3),
        proptest::collection::vec(binding(), 0..6),
        proptest::collection::vec(
            proptest::collection::vec(tag(), 0..4),
            CLUSTERS.len() * NAMES.len(),
        ),
    )
        .prop_map(|(specs, bindings, tag_lists)| {
            let roles = specs
                .into_iter()
                .enumerate()
                .map(|(n, s)| (format!("r{n}"), s))
                .collect();
            let instances = tag_lists
                .into_iter()
                .enumerate()
                .map(|(n, tags)| {
                    (
                        CLUSTERS[n / NAMES.len()].into(),
                        NAMES[n % NAMES.len()].into(),
                        tags,
                    )
                })
                .collect();
            World {
                roles,
                bindings,
                instances,
            }
        })
}

fn who() -> impl Strategy<Value = Who> {
    (select(USERS), subsequence(GROUPS, 0..=3)).prop_map(|(u, g)| Who {
        user: u.into(),
        groups: g.into_iter().map(String::from).collect(),
    })
}

fn request() -> impl Strategy<Value = Req> {
    prop_oneof![
        6 => (select(&["c0", "c1", "c9"][..]), select(&["i0", "i1", "i2", "i9"][..]), select(VmRight::ALL))
            .prop_map(|(c, i, r)| Req::Vm(c.into(), i.into(), r)),
        2 => (select(&["c0", "c1", "c9"][..]), select(ClusterRight::ALL)).prop_map(|(c, r)| Req::Cluster(c.into(), r)),
        1 => select(SystemRight::ALL).prop_map(Req::System),
    ]
}

fn build(w: &World) -> AuthzIndex {
    let mut b = AuthzIndex::builder();
    for (name, spec) in &w.roles {
        b = b.role(name, spec);
    }
    for (n, spec) in w.bindings.iter().enumerate() {
        b = b.binding(&format!("b{n}"), spec);
    }
    for (c, i, t) in &w.instances {
        b = b.instance(c, i, t, DEFAULT_PREFIX);
    }
    b.build()
}

fn decide(ix: &AuthzIndex, who: &Who, req: &Req) -> bool {
    ix.decide(&Principal::new(&who.user, &who.groups), &req.as_request())
        .allowed
}

// ---------------------------------------------------------------- the oracle

fn is(who: &Who, s: &Subject) -> bool {
    match s.kind {
        SubjectKind::User => s.name == who.user,
        SubjectKind::Group => who.groups.contains(&s.name),
    }
}

fn oracle_role(w: &World, name: &str) -> Option<RoleSpec> {
    static PRE: LazyLock<Vec<Role>> = LazyLock::new(preconfigured_roles);
    if let Some(r) = PRE.iter().find(|r| r.metadata.name.as_deref() == Some(name)) {
        return Some(r.spec.clone());
    }
    w.roles.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
}

fn parsed_tags(w: &World, c: &str, i: &str) -> Vec<ParsedTag> {
    w.instances
        .iter()
        .filter(|(ic, ii, _)| ic == c && ii == i)
        .flat_map(|(_, _, t)| t.iter().filter_map(|t| tags::parse(t, DEFAULT_PREFIX)))
        .collect()
}

fn listed(list: &[InstanceRef], c: &str, i: &str) -> bool {
    list.iter().any(|r| r.cluster == c && r.name == i)
}

fn vm_in(b: &RoleBindingSpec, r: &RoleSpec, c: &str, i: &str, owned: bool) -> bool {
    let scope = match r.scope.kind {
        ScopeKind::All => true,
        ScopeKind::Own => owned,
        ScopeKind::Clusters => r.scope.clusters.iter().any(|x| x == c),
        ScopeKind::Instances => listed(&r.scope.instances, c, i),
    };
    let narrowed = !b.clusters.is_empty() || !b.instances.is_empty();
    scope && (!narrowed || b.clusters.iter().any(|x| x == c) || listed(&b.instances, c, i))
}

fn cl_in(b: &RoleBindingSpec, r: &RoleSpec, c: &str) -> bool {
    let scope = match r.scope.kind {
        ScopeKind::All | ScopeKind::Own => true,
        ScopeKind::Clusters => r.scope.clusters.iter().any(|x| x == c),
        ScopeKind::Instances => r.scope.instances.iter().any(|x| x.cluster == c),
    };
    let narrowed = !b.clusters.is_empty() || !b.instances.is_empty();
    scope && (!narrowed || b.clusters.iter().any(|x| x == c) || b.instances.iter().any(|x| x.cluster == c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Vm(VmRight),
    Cl(ClusterRight),
}

fn oracle(w: &World, who: &Who, req: &Req) -> bool {
    let mine: Vec<(RoleBindingSpec, RoleSpec)> = w
        .bindings
        .iter()
        .filter(|b| b.subjects.iter().any(|s| is(who, s)))
        .filter_map(|b| oracle_role(w, &b.role_ref).map(|r| (b.clone(), r)))
        .collect();
    let (mut allowed, mut forbidden) = (BTreeSet::new(), BTreeSet::new());
    let mut note = |set: Atom, p: Permission| match p {
        Permission::Allowed => allowed.insert(set),
        Permission::Forbidden => forbidden.insert(set),
    };
    match req {
        Req::System(s) => {
            let narrowed = |b: &RoleBindingSpec| !b.clusters.is_empty() || !b.instances.is_empty();
            let get = |r: &RoleSpec| r.system.as_ref().and_then(|x| x.get(*s));
            if mine.iter().any(|(_, r)| get(r) == Some(Permission::Forbidden)) {
                return false;
            }
            mine.iter()
                .any(|(b, r)| !narrowed(b) && get(r) == Some(Permission::Allowed))
        }
        Req::Cluster(c, right) => {
            for (b, r) in &mine {
                if cl_in(b, r, c) {
                    for (x, p) in r.clusters.iter().flat_map(|x| x.iter()) {
                        note(Atom::Cl(x), p);
                    }
                }
            }
            let held = |a: Atom| allowed.contains(&a) && !forbidden.contains(&a);
            !forbidden.contains(&Atom::Cl(*right))
                && (held(Atom::Cl(*right)) || held(Atom::Cl(ClusterRight::Admin)))
        }
        Req::Vm(c, i, right) => {
            let parsed = parsed_tags(w, c, i);
            let owned = parsed
                .iter()
                .any(|t| matches!(t, ParsedTag::Owner(s) | ParsedTag::GanetimgrOwner(s) if is(who, s)));
            let locked = parsed.contains(&ParsedTag::AdminLock);
            for (b, r) in &mine {
                if vm_in(b, r, c, i, owned) {
                    for (x, p) in r.vms.iter().flat_map(|x| x.iter()) {
                        note(Atom::Vm(x), p);
                    }
                    if r.clusters.as_ref().and_then(|x| x.admin) == Some(Permission::Allowed) {
                        note(Atom::Cl(ClusterRight::Admin), Permission::Allowed);
                    }
                }
                if cl_in(b, r, c) && r.clusters.as_ref().and_then(|x| x.admin) == Some(Permission::Forbidden)
                {
                    note(Atom::Cl(ClusterRight::Admin), Permission::Forbidden);
                }
            }
            let mut from_tags = BTreeSet::new();
            for t in &parsed {
                if let ParsedTag::GwmGrant { perm, subject } = t
                    && is(who, subject)
                {
                    from_tags.extend(perm.vm_rights().iter().map(|r| Atom::Vm(*r)));
                }
            }
            let vm_admin = Atom::Vm(VmRight::Admin);
            let cl_admin = Atom::Cl(ClusterRight::Admin);
            let cl_admin_held = allowed.contains(&cl_admin) && !forbidden.contains(&cl_admin);
            let role_admin = !forbidden.contains(&vm_admin) && (allowed.contains(&vm_admin) || cl_admin_held);
            let any_admin = role_admin || !forbidden.contains(&vm_admin) && from_tags.contains(&vm_admin);
            let atom = Atom::Vm(*right);
            let granted = !forbidden.contains(&atom)
                && (allowed.contains(&atom) || from_tags.contains(&atom) || any_admin);
            let lock_blocks =
                locked && ![VmRight::View, VmRight::Lock, VmRight::Isolate].contains(right) && !role_admin;
            granted && !lock_blocks
        }
    }
}

// ---------------------------------------------------------------- properties

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(10_000)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn engine_equals_oracle(w in world(), who in who(), reqs in proptest::collection::vec(request(), 8)) {
        let ix = build(&w);
        for req in &reqs {
            prop_assert_eq!(decide(&ix, &who, req), oracle(&w, &who, req), "{:?}", req);
        }
    }

    #[test]
    fn order_of_roles_and_bindings_does_not_matter(
        w in world(),
        who in who(),
        reqs in proptest::collection::vec(request(), 8),
        seed in any::<u64>(),
    ) {
        let mut shuffled = w.clone();
        shuffled.roles.reverse();
        let n = shuffled.bindings.len().max(1);
        shuffled.bindings.rotate_left((seed as usize) % n);
        shuffled.bindings.reverse();
        let (a, b) = (build(&w), build(&shuffled));
        for req in &reqs {
            prop_assert_eq!(decide(&a, &who, req), decide(&b, &who, req));
        }
    }

    #[test]
    fn forbidden_wins(w in world(), who in who(), reqs in proptest::collection::vec(request(), 4), at in any::<Index>()) {
        for req in &reqs {
            // A role forbidding exactly the right asked, bound to the requester everywhere,
            // inserted anywhere in the list.
            let mut spec = RoleSpec { description: None, vms: None, clusters: None, system: None,
                scope: Scope { kind: ScopeKind::All, ..Scope::default() } };
            match req {
                Req::Vm(_, _, r) => { let mut v = VmRights::default(); v.set(*r, Some(Permission::Forbidden)); spec.vms = Some(v) }
                Req::Cluster(_, r) => { let mut v = ClusterRights::default(); v.set(*r, Some(Permission::Forbidden)); spec.clusters = Some(v) }
                Req::System(r) => { let mut v = SystemRights::default(); v.set(*r, Some(Permission::Forbidden)); spec.system = Some(v) }
            }
            let mut w2 = w.clone();
            w2.roles.insert(0, ("forbid".into(), spec));
            let pos = at.index(w2.bindings.len() + 1);
            w2.bindings.insert(pos, RoleBindingSpec { role_ref: "forbid".into(),
                subjects: vec![Subject::user(who.user.clone())], clusters: vec![], instances: vec![] });
            prop_assert!(!decide(&build(&w2), &who, req));
        }
    }

    #[test]
    fn adding_an_allowed_right_never_removes_one(
        w in world(), who in who(), reqs in proptest::collection::vec(request(), 8),
        role in 0..3usize, vm in select(VmRight::ALL), cl in select(ClusterRight::ALL), sys in select(SystemRight::ALL), which in 0..3u8,
    ) {
        let mut w2 = w.clone();
        let spec = &mut w2.roles[role].1;
        match which {
            0 => { let v = spec.vms.get_or_insert_default(); if v.get(vm).is_none() { v.set(vm, Some(Permission::Allowed)) } }
            1 => { let v = spec.clusters.get_or_insert_default(); if v.get(cl).is_none() { v.set(cl, Some(Permission::Allowed)) } }
            _ => { let v = spec.system.get_or_insert_default(); if v.get(sys).is_none() { v.set(sys, Some(Permission::Allowed)) } }
        }
        let (a, b) = (build(&w), build(&w2));
        for req in &reqs {
            if decide(&a, &who, req) {
                prop_assert!(decide(&b, &who, req), "{:?}", req);
            }
        }
    }

    #[test]
    fn adding_a_forbidden_right_never_adds_one(
        w in world(), who in who(), reqs in proptest::collection::vec(request(), 8),
        role in 0..3usize, vm in select(VmRight::ALL), cl in select(ClusterRight::ALL), sys in select(SystemRight::ALL), which in 0..3u8,
    ) {
        let mut w2 = w.clone();
        let spec = &mut w2.roles[role].1;
        let f = Some(Permission::Forbidden);
        match which {
            0 => spec.vms.get_or_insert_default().set(vm, f),
            1 => spec.clusters.get_or_insert_default().set(cl, f),
            _ => spec.system.get_or_insert_default().set(sys, f),
        }
        let (a, b) = (build(&w), build(&w2));
        for req in &reqs {
            if !decide(&a, &who, req) {
                prop_assert!(!decide(&b, &who, req), "{:?}", req);
            }
        }
    }

    #[test]
    fn group_grants_reach_members_only(
        w in world(), who in who(), reqs in proptest::collection::vec(request(), 8), g in select(GROUPS),
    ) {
        // For a requester outside group g, everything naming g (binding subjects, tags)
        // may as well not exist.
        let outsider = Who { user: who.user.clone(), groups: who.groups.iter().filter(|x| *x != g).cloned().collect() };
        let named = Subject::group(g);
        let mut w2 = w.clone();
        for b in &mut w2.bindings {
            b.subjects.retain(|s| *s != named);
        }
        w2.bindings.retain(|b| !b.subjects.is_empty());
        for (_, _, t) in &mut w2.instances {
            t.retain(|t| !matches!(tags::parse(t, DEFAULT_PREFIX),
                Some(ParsedTag::GwmGrant { subject, .. } | ParsedTag::Owner(subject) | ParsedTag::GanetimgrOwner(subject)) if subject == named));
        }
        let (a, b) = (build(&w), build(&w2));
        for req in &reqs {
            prop_assert_eq!(decide(&a, &outsider, req), decide(&b, &outsider, req), "{:?}", req);
        }
    }

    #[test]
    fn scope_own_never_reaches_another_owners_vm(
        w in world(), who in who(), c in select(CLUSTERS), i in select(NAMES), right in select(VmRight::ALL),
    ) {
        // Only Own-scoped roles and no permission tags: a VM right is granted only on a
        // VM the requester (or one of its groups) owns.
        let mut w2 = w.clone();
        for (_, spec) in &mut w2.roles {
            spec.scope = Scope { kind: ScopeKind::Own, ..Scope::default() };
        }
        w2.bindings.retain(|b| b.role_ref != "administrator");
        for (_, _, t) in &mut w2.instances {
            t.retain(|t| !matches!(tags::parse(t, DEFAULT_PREFIX), Some(ParsedTag::GwmGrant { .. })));
        }
        let owned = parsed_tags(&w2, c, i).iter().any(|t| matches!(t, ParsedTag::Owner(s) | ParsedTag::GanetimgrOwner(s) if is(&who, s)));
        let req = Req::Vm(c.into(), i.into(), right);
        if decide(&build(&w2), &who, &req) {
            prop_assert!(owned);
        }
    }

    #[test]
    fn permitted_instances_are_exactly_the_decided_ones(
        w in world(), who in who(), kept in prop_oneof![Just(u8::MAX), any::<u8>()],
    ) {
        // Some VMs left out of the inventory: bindings and scopes may still name them
        // (then the index knows them, but they are no VMs to list).
        let mut w = w;
        let mut n = 0;
        w.instances.retain(|_| { n += 1; kept & (1 << (n - 1)) != 0 });
        let ix = build(&w);
        let p = Principal::new(&who.user, &who.groups);
        for &right in VmRight::ALL {
            let mut expected: Vec<(&str, &str)> = w.instances.iter()
                .filter(|(c, i, _)| decide(&ix, &who, &Req::Vm(c.clone(), i.clone(), right)))
                .map(|(c, i, _)| (c.as_str(), i.as_str()))
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(ix.permitted_instances(&p, right), expected, "{:?}", right);
        }
    }

    #[test]
    fn detached_vms_are_decided_as_an_index_holding_only_them(
        w in world(), who in who(), cluster in select(CLUSTERS), kept in any::<u8>(),
        reqs in proptest::collection::vec(request(), 8),
    ) {
        // What a watch event keeps: some VMs of one cluster, decided against the rules
        // alone, as an index of the rules and those VMs decides.
        let mut slim = w.clone();
        let mut n = 0;
        slim.instances.retain(|(c, ..)| { n += 1; c == cluster && kept & (1 << (n - 1)) != 0 });
        let vms: Vec<Instance> = slim.instances.iter()
            .map(|(_, i, t)| Instance { name: i.clone(), tags: t.clone(), ..Default::default() })
            .collect();
        let detached = DetachedVms::new(cluster, DEFAULT_PREFIX, &vms);
        let rules = build(&World { instances: Vec::new(), ..w });
        let p = Principal::new(&who.user, &who.groups);
        for req in &reqs {
            prop_assert_eq!(rules.allows_with(&detached, &p, &req.as_request()), oracle(&slim, &who, req), "{:?}", req);
        }
    }

    #[test]
    fn escalation_check_refuses_what_the_requester_lacks(
        w in world(), who in who(), role in role_spec(), narrowing in binding(),
    ) {
        // Whatever may_grant accepts, the requester already holds on every known object
        // the grant reaches. The grant is judged alone: bound to a newcomer without groups,
        // on untagged VMs (Own scopes skipped: the two people own different VMs; locked
        // VMs skipped: the lock denies the requester, not the role).
        let ix = build(&w);
        let p = Principal::new(&who.user, &who.groups);
        if role.scope.kind == ScopeKind::Own
            || ix.is_administrator(&p)
            || ix.may_grant(&p, &role, &narrowing.clusters, &narrowing.instances).is_err()
        {
            return Ok(());
        }
        let alone = World {
            roles: vec![("granted".into(), role.clone())],
            bindings: vec![RoleBindingSpec {
                role_ref: "granted".into(),
                subjects: vec![Subject::user("newcomer")],
                clusters: narrowing.clusters.clone(),
                instances: narrowing.instances.clone(),
            }],
            instances: w.instances.iter().map(|(c, i, _)| (c.clone(), i.clone(), vec![])).collect(),
        };
        let (ixa, newcomer) = (build(&alone), Who { user: "newcomer".into(), groups: vec![] });
        let mut reqs: Vec<Req> = Vec::new();
        for c in CLUSTERS {
            reqs.extend(ClusterRight::ALL.iter().map(|r| Req::Cluster((*c).into(), *r)));
            for i in NAMES {
                if !parsed_tags(&w, c, i).contains(&ParsedTag::AdminLock) {
                    reqs.extend(VmRight::ALL.iter().map(|r| Req::Vm((*c).into(), (*i).into(), *r)));
                }
            }
        }
        for req in &reqs {
            if decide(&ixa, &newcomer, req) {
                prop_assert!(decide(&ix, &who, req), "{:?} granted but not held", req);
            }
        }
    }
}
