//! Scenarios: the preconfigured roles, tags, locks, narrowing, explanations, escalation.

use super::*;
use crate::api::binding::RoleBindingSpec;
use crate::api::common::InstanceRef;
use crate::api::role::{ClusterRights, Permission, RoleSpec, Scope, ScopeKind, VmRights};

const P: &str = crate::tags::DEFAULT_PREFIX;

fn bind(role: &str, subjects: Vec<Subject>) -> RoleBindingSpec {
    RoleBindingSpec {
        role_ref: role.into(),
        subjects,
        clusters: vec![],
        instances: vec![],
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn vm<'a>(instance: &'a str, right: VmRight) -> Request<'a> {
    Request::Vm {
        cluster: "c1",
        instance,
        right,
    }
}

fn world() -> AuthzIndex {
    AuthzIndex::builder()
        .binding("alice-user", &bind(USER, vec![Subject::user("alice")]))
        .binding("ops-admin", &bind(ADMINISTRATOR, vec![Subject::group("ops")]))
        .binding("team-adv", &bind(ADVANCED_USER, vec![Subject::group("team")]))
        .instance(
            "c1",
            "alice-vm",
            &strings(&["GANETI_WEB_MANAGER:owner:U:alice"]),
            P,
        )
        .instance(
            "c1",
            "team-vm",
            &strings(&["ganetimgr:group:team", "GANETI_WEB_MANAGER:power:U:bob"]),
            P,
        )
        .instance(
            "c1",
            "locked-vm",
            &strings(&["ganetimgr:user:alice", "ganetimgr:adminlock"]),
            P,
        )
        .build()
}

#[test]
fn preconfigured_roles_behave() {
    let ix = world();
    let none: &[String] = &[];
    let alice = Principal::new("alice", none);
    assert!(ix.decide(&alice, &vm("alice-vm", VmRight::Destroy)).allowed);
    assert!(!ix.decide(&alice, &vm("alice-vm", VmRight::Modify)).allowed);
    assert!(!ix.decide(&alice, &vm("team-vm", VmRight::View)).allowed);
    assert!(!ix.decide(&alice, &Request::System(SystemRight::Roles)).allowed);

    let team = strings(&["team"]);
    let carol = Principal::new("carol", &team);
    assert!(ix.decide(&carol, &vm("team-vm", VmRight::Modify)).allowed);
    let create = Request::Cluster {
        cluster: "anywhere",
        right: ClusterRight::CreateVm,
    };
    assert!(ix.decide(&carol, &create).allowed);

    let ops = strings(&["ops"]);
    let root = Principal::new("root", &ops);
    assert!(ix.is_administrator(&root));
    assert!(ix.decide(&root, &vm("team-vm", VmRight::Migrate)).allowed);
    assert!(ix.decide(&root, &vm("unknown-vm", VmRight::Admin)).allowed);
    assert!(ix.decide(&root, &Request::System(SystemRight::Audit)).allowed);
}

#[test]
fn gwm_tags_grant_to_their_subject() {
    let ix = world();
    let bob = Principal::new("bob", &[]);
    let d = ix.decide(&bob, &vm("team-vm", VmRight::Reboot));
    assert!(d.allowed);
    assert_eq!(
        ix.describe(&d),
        "allowed: tag GANETI_WEB_MANAGER:power:U:bob grants it"
    );
    assert!(!ix.decide(&bob, &vm("team-vm", VmRight::Destroy)).allowed);
    assert!(!ix.decide(&bob, &vm("alice-vm", VmRight::Reboot)).allowed);
}

#[test]
fn admin_lock_blocks_actions_not_visibility() {
    let ix = world();
    let alice = Principal::new("alice", &[]);
    assert!(ix.decide(&alice, &vm("locked-vm", VmRight::View)).allowed);
    let d = ix.decide(&alice, &vm("locked-vm", VmRight::Start));
    assert_eq!(d.reason, Reason::AdminLock);
    let ops = strings(&["ops"]);
    assert!(
        ix.decide(&Principal::new("root", &ops), &vm("locked-vm", VmRight::Start))
            .allowed
    );
    assert!(ix.is_locked("c1", "locked-vm"));
}

#[test]
fn forbidden_admin_cuts_the_chain_only() {
    let vms = VmRights {
        admin: Some(Permission::Forbidden),
        ..VmRights::default()
    };
    let no_admin = RoleSpec {
        description: None,
        vms: Some(vms),
        clusters: None,
        system: None,
        scope: Scope {
            kind: ScopeKind::All,
            ..Scope::default()
        },
    };
    let ix = AuthzIndex::builder()
        .role("no-admin", &no_admin)
        .binding("a", &bind(USER, vec![Subject::user("alice")]))
        .binding("b", &bind(ADMINISTRATOR, vec![Subject::user("alice")]))
        .binding("c", &bind("no-admin", vec![Subject::user("alice")]))
        .instance(
            "c1",
            "alice-vm",
            &strings(&["GANETI_WEB_MANAGER:owner:U:alice"]),
            P,
        )
        .instance("c1", "other", &[], P)
        .build();
    let alice = Principal::new("alice", &[]);
    assert!(
        ix.decide(&alice, &vm("alice-vm", VmRight::Start)).allowed,
        "directly allowed"
    );
    let d = ix.decide(&alice, &vm("other", VmRight::Start));
    assert!(!d.allowed, "only through admin, which is forbidden");
    assert_eq!(
        ix.describe(&d),
        "denied: role no-admin (binding c) forbids vms.admin"
    );
    // Cluster rights do not go through VM admin.
    let migrate = Request::Cluster {
        cluster: "c1",
        right: ClusterRight::Migrate,
    };
    assert!(ix.decide(&alice, &migrate).allowed);
}

#[test]
fn narrowing_is_the_union_of_clusters_and_instances() {
    let clusters = ClusterRights {
        view: Some(Permission::Allowed),
        ..ClusterRights::default()
    };
    let vms = VmRights {
        view: Some(Permission::Allowed),
        ..VmRights::default()
    };
    let viewer = RoleSpec {
        description: None,
        vms: Some(vms),
        clusters: Some(clusters),
        system: None,
        scope: Scope {
            kind: ScopeKind::All,
            ..Scope::default()
        },
    };
    let mut narrowed = bind("viewer", vec![Subject::user("dan")]);
    narrowed.clusters = vec!["c2".into()];
    narrowed.instances = vec![InstanceRef {
        cluster: "c1".into(),
        name: "x".into(),
    }];
    let ix = AuthzIndex::builder()
        .role("viewer", &viewer)
        .binding("n", &narrowed)
        .build();
    let dan = Principal::new("dan", &[]);
    let see = |c: &'static str, i: &'static str| Request::Vm {
        cluster: c,
        instance: i,
        right: VmRight::View,
    };
    assert!(ix.decide(&dan, &see("c1", "x")).allowed);
    assert!(ix.decide(&dan, &see("c2", "anything")).allowed);
    assert!(!ix.decide(&dan, &see("c1", "y")).allowed);
    let view_c1 = Request::Cluster {
        cluster: "c1",
        right: ClusterRight::View,
    };
    assert!(ix.decide(&dan, &view_c1).allowed);
}

#[test]
fn explain_lists_bindings_tags_and_decision() {
    let ix = world();
    let team = strings(&["team"]);
    let text = ix.explain(&Principal::new("bob", &team), &vm("team-vm", VmRight::Destroy));
    assert!(
        text.starts_with("user bob (groups team) asks vms.destroy on VM c1/team-vm\n"),
        "{text}"
    );
    assert!(
        text.contains("owned by group team (the requester): tag ganetimgr:group:team"),
        "{text}"
    );
    assert!(
        text.contains("tag GANETI_WEB_MANAGER:power:U:bob (power for user bob): applies"),
        "{text}"
    );
    assert!(
        text.contains(
            "binding team-adv (as group team) → role advanced-user (scope Own): allows vms.destroy"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("decision: allowed: role advanced-user (binding team-adv) allows vms.destroy\n"),
        "{text}"
    );
    let text = ix.explain(
        &Principal::new("nobody", &[]),
        &Request::System(SystemRight::Jobs),
    );
    assert!(text.contains("no binding names the user or its groups"), "{text}");
    assert!(
        text.ends_with("decision: denied: no role or tag grants it\n"),
        "{text}"
    );
}

#[test]
fn escalation_needs_every_granted_right() {
    let ix = world();
    let team = strings(&["team"]);
    let carol = Principal::new("carol", &team);
    let roles = preconfigured_roles();
    let spec = |name: &str| {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap()
            .spec
            .clone()
    };
    // advanced-user holds everything `user` grants, over the same (Own) reach.
    assert_eq!(ix.may_grant(&carol, &spec(USER), &[], &[]), Ok(()));
    assert_eq!(ix.may_bind(&carol, &bind(USER, vec![Subject::user("x")])), Ok(()));
    let missing = ix.may_grant(&carol, &spec(ADMINISTRATOR), &[], &[]).unwrap_err();
    assert!(missing.contains(&Right::Vm(VmRight::Admin)));
    assert!(missing.contains(&Right::System(SystemRight::Roles)));
    let ops = strings(&["ops"]);
    assert_eq!(
        ix.may_grant(&Principal::new("root", &ops), &spec(ADMINISTRATOR), &[], &[]),
        Ok(())
    );
}

#[test]
fn administrator_binding_presence() {
    use crate::api::binding::RoleBinding;
    let mut b = RoleBinding::new("admins", bind(ADMINISTRATOR, vec![Subject::group("ops")]));
    assert!(has_administrator_binding(std::slice::from_ref(&b)));
    b.spec.clusters = vec!["c1".into()];
    assert!(!has_administrator_binding(&[b]));
    assert!(!has_administrator_binding(&[]));
}

#[test]
fn dangling_bindings_are_reported_and_stored_preconfigured_roles_ignored() {
    let mut evil = preconfigured_roles().remove(2).spec;
    evil.scope.kind = ScopeKind::All;
    let ix = AuthzIndex::builder()
        .role(USER, &evil)
        .binding("x", &bind("nope", vec![Subject::user("a")]))
        .binding("y", &bind(USER, vec![Subject::user("a")]))
        .instance("c1", "someone-elses", &[], P)
        .build();
    assert_eq!(ix.dangling_bindings().len(), 1);
    assert!(
        !ix.decide(&Principal::new("a", &[]), &vm("someone-elses", VmRight::View))
            .allowed
    );
}
