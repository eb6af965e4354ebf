//! The preconfigured roles, as shipped in `examples/10-roles-preconfigured.yaml` (a test
//! keeps the two equal).

use crate::api::role::{
    ClusterRight, ClusterRights, Permission, Role, RoleSpec, Scope, ScopeKind, SystemRight, SystemRights,
    VmRight, VmRights,
};
use std::collections::BTreeMap;

pub const ADMINISTRATOR: &str = "administrator";
pub const ADVANCED_USER: &str = "advanced-user";
pub const USER: &str = "user";
/// Label marking the preconfigured roles (admission refuses changing them).
pub const PRECONFIGURED_LABEL: &str = "ganeti.dev/preconfigured";

fn vms(rights: &[VmRight]) -> VmRights {
    let mut v = VmRights::default();
    for r in rights {
        v.set(*r, Some(Permission::Allowed));
    }
    v
}

fn role(name: &str, spec: RoleSpec) -> Role {
    let mut role = Role::new(name, spec);
    role.metadata.labels = Some(BTreeMap::from([(
        PRECONFIGURED_LABEL.to_owned(),
        "true".to_owned(),
    )]));
    role
}

fn scope(kind: ScopeKind) -> Scope {
    Scope {
        kind,
        ..Scope::default()
    }
}

/// `administrator`, `advanced-user` and `user`.
pub fn preconfigured_roles() -> Vec<Role> {
    use VmRight::*;
    let own_vms = [View, Start, Shutdown, Reboot, Console, Rename, Reinstall];
    let mut system = SystemRights::default();
    for r in SystemRight::ALL {
        system.set(*r, Some(Permission::Allowed));
    }
    let mut admin_cluster = ClusterRights::default();
    admin_cluster.set(ClusterRight::Admin, Some(Permission::Allowed));
    let mut advanced_cluster = ClusterRights::default();
    advanced_cluster.set(ClusterRight::View, Some(Permission::Allowed));
    advanced_cluster.set(ClusterRight::CreateVm, Some(Permission::Allowed));
    vec![
        role(
            ADMINISTRATOR,
            RoleSpec {
                description: Some("Every right on every cluster, VM and the service itself.".into()),
                vms: Some(vms(&[Admin])),
                clusters: Some(admin_cluster),
                system: Some(system),
                scope: scope(ScopeKind::All),
            },
        ),
        role(
            ADVANCED_USER,
            RoleSpec {
                description: Some(
                    "Full control of one's own VMs, and creating VMs without approval (within quota).".into(),
                ),
                vms: Some(vms(&[&own_vms[..], &[Modify, Destroy, Tags]].concat())),
                clusters: Some(advanced_cluster),
                system: None,
                scope: scope(ScopeKind::Own),
            },
        ),
        role(
            USER,
            RoleSpec {
                description: Some("Use one's own VMs; new VMs need an admin's approval.".into()),
                vms: Some(vms(&[&own_vms[..], &[Destroy]].concat())),
                clusters: None,
                system: None,
                scope: scope(ScopeKind::Own),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_to_the_shipped_example() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/10-roles-preconfigured.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let shipped: Vec<Role> = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect();
        let ours = preconfigured_roles();
        assert_eq!(shipped.len(), ours.len());
        for (s, o) in shipped.iter().zip(&ours) {
            assert_eq!(s.metadata.name, o.metadata.name);
            assert_eq!(s.metadata.labels, o.metadata.labels);
            assert_eq!(s.spec, o.spec, "role {:?}", o.metadata.name);
        }
    }
}
