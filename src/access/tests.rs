//! The decision point: exact names, pinned UUIDs, fresh tags; and a property test over
//! random histories of create, rename, destroy, retag and ticket/link events.

use super::*;
use crate::api::binding::RoleBindingSpec;
use crate::authz::USER;
use crate::tags::{DEFAULT_PREFIX as P, GwmPerm, format_grant, format_owner};
use proptest::prelude::*;
use std::sync::Arc;

fn binding(name: &str, role: &str, subjects: Vec<Subject>) -> Arc<RoleBinding> {
    Arc::new(RoleBinding::new(
        name,
        RoleBindingSpec {
            role_ref: role.into(),
            subjects,
            clusters: vec![],
            instances: vec![],
        },
    ))
}

/// alice, bob and carol each hold the `user` role: rights on the VMs they own.
fn users() -> Vec<Arc<RoleBinding>> {
    ["alice", "bob", "carol"]
        .iter()
        .map(|u| binding(&format!("{u}-user"), USER, vec![Subject::user(*u)]))
        .collect()
}

fn vm(name: &str, uuid: &str, tags: &[String]) -> Instance {
    Instance {
        name: name.into(),
        uuid: uuid.into(),
        tags: tags.to_vec(),
        ..Default::default()
    }
}

fn owner(user: &str) -> String {
    format_owner(P, &Subject::user(user)).unwrap()
}

fn decide(
    bindings: &[Arc<RoleBinding>],
    user: &str,
    name: &str,
    uuid: Option<&str>,
    fresh: Option<&Instance>,
    right: VmRight,
) -> Result<Pinned, Refusal> {
    let rules = RuleSet { roles: &[], bindings };
    let none: &[String] = &[];
    authorize(
        &rules,
        &Principal::new(user, none),
        &VmRef {
            cluster: "lab",
            name,
            uuid,
        },
        fresh,
        P,
        right,
    )
}

#[test]
fn the_owner_acts_on_the_vm_as_ganeti_has_it_now() {
    let b = users();
    let db = vm("db.lab", "u-1", &[owner("alice")]);
    let ok = decide(&b, "alice", "db.lab", None, Some(&db), VmRight::Shutdown).unwrap();
    assert_eq!((ok.name.as_str(), ok.uuid.as_str()), ("db.lab", "u-1"));
    assert_eq!(ok.owner, Some(Subject::user("alice")));
    // bob sees nothing: the same answer as for a VM that does not exist.
    let stranger = decide(&b, "bob", "db.lab", None, Some(&db), VmRight::Shutdown).unwrap_err();
    let missing = decide(&b, "bob", "db.lab", None, None, VmRight::Shutdown).unwrap_err();
    assert_eq!(stranger.to_string(), missing.to_string());
    assert_eq!(stranger.to_string(), "no VM db.lab on lab");
    // The real reason is kept for the audit log, never shown.
    assert!(matches!(stranger, Refusal::NotFound { hidden: Some(ref why), .. } if why.contains("vms.view")));
    assert!(matches!(missing, Refusal::NotFound { hidden: None, .. }));
}

#[test]
fn a_prefix_answer_is_not_the_vm_that_was_named() {
    // Ganeti answers `db` with db.lab: not the VM named `db`.
    let b = users();
    let db = vm("db.lab", "u-1", &[owner("alice")]);
    assert!(matches!(
        decide(&b, "alice", "db", None, Some(&db), VmRight::Start),
        Err(Refusal::NotFound { .. })
    ));
}

#[test]
fn a_ticket_for_a_renamed_or_replaced_vm_does_nothing() {
    let b = users();
    // The name now belongs to another of alice's VMs: refused as replaced.
    let reused = vm("web.lab", "u-2", &[owner("alice")]);
    let e = decide(
        &b,
        "alice",
        "web.lab",
        Some("u-1"),
        Some(&reused),
        VmRight::Destroy,
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::Replaced { .. }), "{e:?}");
    assert!(e.to_string().contains("no longer the VM"));
    // ... and to bob's VM: it answers as missing (alice learns nothing of it).
    let bobs = vm("web.lab", "u-3", &[owner("bob")]);
    let e = decide(&b, "alice", "web.lab", Some("u-1"), Some(&bobs), VmRight::Destroy).unwrap_err();
    assert!(matches!(e, Refusal::NotFound { .. }), "{e:?}");
    // The same VM under the same name still works.
    let same = vm("web.lab", "u-1", &[owner("alice")]);
    assert!(decide(&b, "alice", "web.lab", Some("u-1"), Some(&same), VmRight::Destroy).is_ok());
}

#[test]
fn fresh_tags_decide_not_the_last_sync() {
    let b = users();
    // An owner tag taken away in Ganeti since the last sync takes the right with it.
    let untagged = vm("db.lab", "u-1", &[]);
    assert!(decide(&b, "alice", "db.lab", None, Some(&untagged), VmRight::View).is_err());
    // A ganetimgr admin lock set since then stops the owner's actions, not the view.
    let locked = vm("db.lab", "u-1", &[owner("alice"), "ganetimgr:adminlock".into()]);
    let e = decide(&b, "alice", "db.lab", None, Some(&locked), VmRight::Reboot).unwrap_err();
    assert!(
        matches!(e, Refusal::Forbidden(ref why) if why.contains("vms.reboot")),
        "{e:?}"
    );
    assert!(decide(&b, "alice", "db.lab", None, Some(&locked), VmRight::View).is_ok());
}

#[test]
fn moving_a_vm_needs_the_cluster_right_besides_the_vm_right() {
    use crate::api::role::{ClusterRights, Permission, RoleSpec, Scope, ScopeKind, VmRights};
    let role = |name: &str, vm: Option<VmRight>, cl: Option<ClusterRight>| {
        let mut vms = VmRights::default();
        let mut clusters = ClusterRights::default();
        vms.set(VmRight::View, Some(Permission::Allowed));
        if let Some(vm) = vm {
            vms.set(vm, Some(Permission::Allowed));
        }
        if let Some(cl) = cl {
            clusters.set(cl, Some(Permission::Allowed));
        }
        Arc::new(Role::new(
            name,
            RoleSpec {
                description: None,
                vms: Some(vms),
                clusters: Some(clusters),
                system: None,
                scope: Scope {
                    kind: ScopeKind::Own,
                    ..Default::default()
                },
            },
        ))
    };
    let roles = vec![
        role("vm-migrator", Some(VmRight::Migrate), None),
        role("cluster-migrator", None, Some(ClusterRight::Migrate)),
    ];
    let db = vm("db.lab", "u-1", &[owner("alice")]);
    let ask = |bindings: Vec<Arc<RoleBinding>>, right| {
        let rules = RuleSet {
            roles: &roles,
            bindings: &bindings,
        };
        authorize(
            &rules,
            &Principal::new("alice", &[]),
            &VmRef {
                cluster: "lab",
                name: "db.lab",
                uuid: None,
            },
            Some(&db),
            P,
            right,
        )
    };
    let vm_only = vec![binding("a1", "vm-migrator", vec![Subject::user("alice")])];
    let e = ask(vm_only.clone(), VmRight::Migrate).unwrap_err();
    assert!(
        matches!(e, Refusal::Forbidden(ref why) if why.contains("clusters.migrate on cluster lab")),
        "{e:?}"
    );
    let cluster_only = vec![binding("a2", "cluster-migrator", vec![Subject::user("alice")])];
    let e = ask(cluster_only.clone(), VmRight::Migrate).unwrap_err();
    assert!(
        matches!(e, Refusal::Forbidden(ref why) if why.contains("vms.migrate")),
        "{e:?}"
    );
    let both = [vm_only, cluster_only].concat();
    assert!(ask(both.clone(), VmRight::Migrate).is_ok());
    // The cluster right of another name does not stand in.
    assert!(ask(both, VmRight::Export).is_err());
}

#[test]
fn renames_that_would_shadow_another_name_are_refused() {
    let names = ["db.example.org", "web.example.org", "web"];
    let others = || names.iter().copied();
    assert!(check_rename("web", "app.example.org", others()).is_ok());
    let e = check_rename("web", "db", others()).unwrap_err();
    assert!(
        e.contains("short form of another VM's name (db.example.org)"),
        "{e}"
    );
    assert!(
        check_rename("web", "DB.example", others()).is_err(),
        "case-insensitive, as Ganeti"
    );
    assert!(
        check_rename("web", "web.example.org", others())
            .unwrap_err()
            .contains("taken")
    );
    // Its own name's extensions are no one else's.
    assert!(check_rename("web.example.org", "web.example.org.new", others()).is_ok());
    // A name that only starts like another (no dot boundary) is no short form.
    assert!(check_rename("web", "db.exam", others()).is_ok());
}

// --- the property ------------------------------------------------------------------

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const NAMES: [&str; 4] = ["a.lab", "b.lab", "a", "c.lab"];

#[derive(Debug, Clone)]
enum Event {
    /// A VM created through an approved application: the owner tag goes with it.
    Create {
        owner: usize,
        name: usize,
    },
    Rename {
        vm: usize,
        name: usize,
    },
    Destroy {
        vm: usize,
    },
    /// An admin adds or removes a tag by hand (gnt-instance add-tags).
    Retag {
        vm: usize,
        user: usize,
        perm: Option<usize>,
        add: bool,
    },
    /// A user asks for a ticket or link for a name (granted or not).
    Issue {
        user: usize,
        name: usize,
    },
    /// A user follows one of the tickets issued so far, maybe long after.
    Follow {
        ticket: usize,
        right: usize,
    },
    /// A user acts directly by name.
    Act {
        user: usize,
        name: usize,
        right: usize,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0..3usize, 0..4usize).prop_map(|(owner, name)| Event::Create { owner, name }),
        (0..8usize, 0..4usize).prop_map(|(vm, name)| Event::Rename { vm, name }),
        (0..8usize).prop_map(|vm| Event::Destroy { vm }),
        (
            0..8usize,
            0..3usize,
            proptest::option::of(0..GwmPerm::ALL.len()),
            any::<bool>()
        )
            .prop_map(|(vm, user, perm, add)| Event::Retag { vm, user, perm, add }),
        (0..3usize, 0..4usize).prop_map(|(user, name)| Event::Issue { user, name }),
        (0..16usize, 0..VmRight::ALL.len()).prop_map(|(ticket, right)| Event::Follow { ticket, right }),
        (0..3usize, 0..4usize, 0..VmRight::ALL.len()).prop_map(|(user, name, right)| Event::Act {
            user,
            name,
            right
        }),
    ]
}

/// What the tags on a VM grant one user, computed from the vocabulary, not the engine:
/// the `user` role's rights when an owner tag names the user, plus each GWM grant tag
/// naming the user; under an admin lock only viewing (and lock, isolate).
fn oracle(instance: &Instance, user: &str, right: VmRight) -> bool {
    let own_rights = [
        VmRight::View,
        VmRight::Start,
        VmRight::Shutdown,
        VmRight::Reboot,
        VmRight::Console,
        VmRight::Rename,
        VmRight::Reinstall,
        VmRight::Destroy,
    ];
    let owned = instance.tags.contains(&owner(user));
    let tagged = GwmPerm::ALL.iter().any(|p| {
        // GWM's admin perm holds every right on the VM.
        (p.vm_rights().contains(&right) || *p == GwmPerm::Admin)
            && instance
                .tags
                .contains(&format_grant(P, *p, &Subject::user(user)).unwrap())
    });
    // Nobody here holds a cluster right: actions that need one are never allowed.
    let granted = ((owned && own_rights.contains(&right)) || tagged) && cluster_right_for(right).is_none();
    let locked = instance.tags.iter().any(|t| t == "ganetimgr:adminlock");
    let exempt = [VmRight::View, VmRight::Lock, VmRight::Isolate];
    granted && (!locked || exempt.contains(&right))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// For any history, every grant is on the VM that has that exact name now, is the
    /// VM a ticket was issued for, and is backed by a tag of the user's on that VM.
    #[test]
    fn no_user_gains_a_right_no_tag_or_binding_grants(events in proptest::collection::vec(event(), 1..60)) {
        let b = users();
        let mut vms: Vec<Instance> = Vec::new();
        let mut next_uuid = 0;
        // (user, name, uuid at issue)
        let mut tickets: Vec<(usize, String, String)> = Vec::new();
        let find = |vms: &[Instance], name: &str| vms.iter().find(|v| v.name == name).cloned();
        for e in events {
            match e {
                Event::Create { owner: o, name } => {
                    if find(&vms, NAMES[name]).is_none() {
                        next_uuid += 1;
                        vms.push(vm(NAMES[name], &format!("u-{next_uuid}"), &[owner(USERS[o])]));
                    }
                }
                Event::Rename { vm: i, name } => {
                    let others: Vec<String> = vms.iter().map(|v| v.name.clone()).collect();
                    if let Some(current) = vms.get(i).map(|v| v.name.clone())
                        && check_rename(&current, NAMES[name], others.iter().map(String::as_str)).is_ok()
                    {
                        vms[i].name = NAMES[name].to_string();
                    }
                }
                Event::Destroy { vm: i } => {
                    if i < vms.len() {
                        vms.remove(i);
                    }
                }
                Event::Retag { vm: i, user, perm, add } => {
                    if let Some(v) = vms.get_mut(i) {
                        let tag = match perm {
                            Some(p) => format_grant(P, GwmPerm::ALL[p], &Subject::user(USERS[user])).unwrap(),
                            None => owner(USERS[user]),
                        };
                        if add {
                            v.tags.push(tag);
                        } else {
                            v.tags.retain(|t| *t != tag);
                        }
                    }
                }
                Event::Issue { user, name } => {
                    let fresh = find(&vms, NAMES[name]);
                    if let Ok(p) = decide(&b, USERS[user], NAMES[name], None, fresh.as_ref(), VmRight::Console) {
                        tickets.push((user, p.name, p.uuid));
                    }
                }
                Event::Follow { ticket, right } => {
                    let Some((user, name, uuid)) = tickets.get(ticket).cloned() else { continue };
                    let right = VmRight::ALL[right];
                    let fresh = find(&vms, &name);
                    if let Ok(p) = decide(&b, USERS[user], &name, Some(&uuid), fresh.as_ref(), right) {
                        let now = fresh.expect("a grant needs a VM");
                        prop_assert_eq!(&p.uuid, &uuid, "a ticket acted on another VM");
                        prop_assert_eq!(&now.uuid, &uuid);
                        prop_assert!(oracle(&now, USERS[user], right), "{} got {right} on {now:?}", USERS[user]);
                    }
                }
                Event::Act { user, name, right } => {
                    let right = VmRight::ALL[right];
                    let fresh = find(&vms, NAMES[name]);
                    match decide(&b, USERS[user], NAMES[name], None, fresh.as_ref(), right) {
                        Ok(p) => {
                            let now = fresh.expect("a grant needs a VM");
                            prop_assert_eq!(&p.name, &now.name);
                            prop_assert_eq!(&p.uuid, &now.uuid);
                            prop_assert!(oracle(&now, USERS[user], right), "{} got {right} on {now:?}", USERS[user]);
                        }
                        Err(_) => {
                            // And nothing granted is refused either.
                            if let Some(now) = &fresh {
                                prop_assert!(!oracle(now, USERS[user], right), "{} refused {right} on {now:?}", USERS[user]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn an_observed_cluster_refuses_every_write_but_view_and_console() {
    use crate::api::role::VmRight;
    for right in VmRight::ALL {
        let refused = writable("lab", true, *right);
        if matches!(right, VmRight::View | VmRight::Console) {
            assert_eq!(refused, Ok(()), "{right}");
        } else {
            let e = refused.unwrap_err();
            assert_eq!(
                e.to_string(),
                "cluster lab is observed only (managementPolicy: Observe): the operator makes no changes to it in Ganeti",
                "{right}"
            );
        }
        assert_eq!(writable("lab", false, *right), Ok(()), "managed: {right}");
    }
}
