//! The one decision point: may this caller do this to this VM, **now**.
//!
//! The JSON API, console tickets, the console websocket and confirmation links all
//! call [`authorize`]. A VM is its Ganeti UUID; its name is a label that can be
//! renamed, reused after a destroy, or (in Ganeti's own lookups) expanded from a
//! prefix (`db` → `db.example.org`). So a write is decided on the VM as Ganeti has it
//! at that moment, never on a copy the last sync saw:
//!
//! 1. [`read_exact`] (the one IO step) reads the instance by its exact name and
//!    refuses Ganeti's prefix expansion;
//! 2. [`authorize`] (pure) checks that it is still the VM the ticket or link was
//!    issued for (same UUID), then decides the right with the current roles and
//!    bindings and *that* instance's tags (owner, GWM grants, ganetimgr lock);
//! 3. the write carries the UUID ([`crate::rapi::Target::pinned`]), so Ganeti refuses
//!    the job if the name meant another instance by the time it runs.
//!
//! A VM the caller may not view is answered exactly like one that does not exist.

pub mod action;
pub mod rules;

pub use action::{Action, Plan};

use crate::api::role::{ClusterRight, VmRight};
use crate::api::{Role, RoleBinding, Subject};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::inventory::Instance;
use crate::rapi::{RapiClient, RapiError};

/// A VM as a request names it: its cluster and exact name, plus the UUID it had when
/// a ticket or link was issued (absent for a direct request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmRef<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub uuid: Option<&'a str>,
}

/// The VM the decision was made on: what a write pins.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub cluster: String,
    pub name: String,
    pub uuid: String,
    pub owner: Option<Subject>,
    pub instance: Instance,
}

/// Why not. Each says why in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No VM of that exact name, or one the caller may not view: one answer for both,
    /// so a refusal does not tell that a VM exists. `hidden` is the real reason when
    /// the VM exists, for the audit log and the admins only, never for the caller.
    NotFound {
        cluster: String,
        name: String,
        hidden: Option<String>,
    },
    /// The caller may view the VM but not do this.
    Forbidden(String),
    /// The name now belongs to another VM than the ticket or link was issued for
    /// (renamed, or destroyed and reused).
    Replaced { name: String },
    /// The cluster is observed only (`managementPolicy: Observe`): nothing is written.
    ObservedOnly { cluster: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound { cluster, name, .. } => write!(f, "no VM {name} on {cluster}"),
            Self::Forbidden(why) => f.write_str(why),
            Self::Replaced { name } => write!(
                f,
                "{name} is no longer the VM this was issued for (it was renamed, or destroyed and its \
                 name reused): nothing was done; ask again for the VM you mean"
            ),
            Self::ObservedOnly { cluster } => {
                f.write_str(&crate::api::cluster::observed_only_message(cluster))
            }
        }
    }
}

/// Roles and bindings as of this moment (see [`rules::Rules`]).
pub struct RuleSet<'a> {
    pub roles: &'a [std::sync::Arc<Role>],
    pub bindings: &'a [std::sync::Arc<RoleBinding>],
}

/// Decides `right` for `principal` on `vm`, given the instance Ganeti has under that
/// exact name now (`fresh`; `None`: none). Pure.
pub fn authorize<'t>(
    rules: &RuleSet<'_>,
    principal: &Principal<'_>,
    vm: &VmRef<'_>,
    fresh: Option<&Instance>,
    // The cluster's tag prefix and GWM id map (a `&str` prefix: no map).
    tags: impl Into<crate::tags::Reader<'t>>,
    right: VmRight,
) -> Result<Pinned, Refusal> {
    let not_found = |hidden: Option<String>| Refusal::NotFound {
        cluster: vm.cluster.to_string(),
        name: vm.name.to_string(),
        hidden,
    };
    let Some(instance) = fresh.filter(|i| i.name == vm.name) else {
        return Err(not_found(None));
    };
    // The index of this one instance, with its tags as Ganeti has them now.
    let index = AuthzIndex::builder()
        .roles(rules.roles.iter().map(|r| &**r))
        .bindings(rules.bindings.iter().map(|b| &**b))
        .instance(vm.cluster, &instance.name, &instance.tags, tags)
        .build();
    let decide = |right| {
        index.decide(
            principal,
            &Request::Vm {
                cluster: vm.cluster,
                instance: vm.name,
                right,
            },
        )
    };
    let view = decide(VmRight::View);
    if !view.allowed {
        return Err(not_found(Some(format!(
            "missing right vms.view on {}/{}: {}",
            vm.cluster,
            vm.name,
            index.describe(&view)
        ))));
    }
    // Checked only once the caller may view it: a stranger learns nothing from it.
    if let Some(expected) = vm.uuid
        && expected != instance.uuid
    {
        return Err(Refusal::Replaced {
            name: vm.name.to_string(),
        });
    }
    let decision = decide(right);
    if !decision.allowed {
        return Err(Refusal::Forbidden(format!(
            "missing right vms.{right} on {}/{}: {}",
            vm.cluster,
            vm.name,
            index.describe(&decision)
        )));
    }
    if let Some(cluster_right) = cluster_right_for(right) {
        let decision = index.decide(
            principal,
            &Request::Cluster {
                cluster: vm.cluster,
                right: cluster_right,
            },
        );
        if !decision.allowed {
            return Err(Refusal::Forbidden(format!(
                "missing right clusters.{cluster_right} on cluster {} (moving or copying a VM's data \
                 across nodes needs it besides vms.{right}): {}",
                vm.cluster,
                index.describe(&decision)
            )));
        }
    }
    let owner = index.owners(vm.cluster, vm.name).next().cloned();
    Ok(Pinned {
        cluster: vm.cluster.to_string(),
        name: instance.name.clone(),
        uuid: instance.uuid.clone(),
        owner,
        instance: instance.clone(),
    })
}

/// Whether using `right` changes something in Ganeti. Viewing does not, nor does
/// opening a console: its ticket is a RAPI read (`GET /2/instances/<n>/console`, which
/// Ganeti grants a read-only user) and the VNC stream is the VM's, not Ganeti's state.
pub fn writes_ganeti(right: VmRight) -> bool {
    !matches!(right, VmRight::View | VmRight::Console)
}

/// Refuses a use of `right` that would write to `cluster` when it is observed only.
/// Decided after [`authorize`], so a caller who may not do it anyway learns nothing
/// more. Pure.
pub fn writable(cluster: &str, observed: bool, right: VmRight) -> Result<(), Refusal> {
    if observed && writes_ganeti(right) {
        return Err(Refusal::ObservedOnly {
            cluster: cluster.to_string(),
        });
    }
    Ok(())
}

/// The cluster right a VM action needs besides the VM right of the same name. These
/// actions move or copy a VM's data across the cluster's nodes (capacity, disks and
/// network that the cluster's operators answer for), so, unlike Ganeti Web Manager
/// (where either grant suffices), both are required: the VM right says "this VM" (with
/// its scope, narrowing and admin lock), the cluster right says "this cluster lets
/// you". A cluster `admin` holds both on the VMs its binding reaches.
pub fn cluster_right_for(right: VmRight) -> Option<ClusterRight> {
    match right {
        VmRight::Migrate => Some(ClusterRight::Migrate),
        VmRight::Export => Some(ClusterRight::Export),
        VmRight::ReplaceDisks => Some(ClusterRight::ReplaceDisks),
        _ => None,
    }
}

/// Whether renaming `current` to `new_name` is allowed among `others` (every
/// instance name on the cluster). Ganeti resolves a name to an instance by exact
/// match, else by unique prefix of dot-separated components, case-insensitively
/// (`utils.MatchNameComponent`): a VM named `db` would take over every short
/// reference to `db.example.org`. Pure.
pub fn check_rename<'a>(
    current: &str,
    new_name: &str,
    others: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let new_lower = new_name.to_ascii_lowercase();
    for other in others {
        if other == current {
            continue;
        }
        let other_lower = other.to_ascii_lowercase();
        if other_lower == new_lower {
            return Err(format!("{new_name} is taken by another VM"));
        }
        if other_lower.starts_with(&format!("{new_lower}.")) {
            return Err(format!(
                "{new_name} is a short form of another VM's name ({other}): Ganeti would resolve \
                 references to that VM to this one; choose a full name"
            ));
        }
    }
    Ok(())
}

/// Reads the instance with exactly this name from Ganeti: `None` when there is none.
/// Ganeti would answer for `db` with `db.example.org` (a unique prefix); such an
/// answer is not the VM that was named, so it counts as none.
pub async fn read_exact(client: &RapiClient, name: &str) -> Result<Option<Instance>, RapiError> {
    match client.instance(name).await {
        Ok(wire) if wire.name == name => Ok(Some(wire.into())),
        // 400: Ganeti found the name ambiguous or malformed; no VM has it exactly.
        Ok(_) | Err(RapiError::NotFound { .. } | RapiError::BadRequest { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
