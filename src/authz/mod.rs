//! Authorization: roles + bindings + instance tags → who may do what, where. Pure, no IO.
//!
//! Build an [`AuthzIndex`] once per change of roles, bindings or inventory, then ask it
//! [`AuthzIndex::decide`] as often as needed: a decision is a few hash look-ups and a
//! scan of the requester's own bindings, with no allocation.
//!
//! # Semantics
//! - A binding applies to a principal when one of its subjects is the user or one of the
//!   user's groups. Its role's rights apply where the role's scope *and* the binding's
//!   narrowing both reach.
//! - VM reach. Scope `All`: every VM; `Own`: VMs owned by the user or one of the user's
//!   groups; `Clusters`: VMs of the listed clusters; `Instances`: the listed VMs.
//!   Narrowing: a binding with `clusters` or `instances` reaches the VMs of those clusters
//!   plus those instances (the union: listing an instance means that instance, whatever
//!   the cluster list says); with neither, it does not narrow.
//! - Cluster reach. `All` and `Own`: every cluster (ownership is a VM notion; this is what
//!   lets `advanced-user` create VMs anywhere); `Clusters`: the listed ones; `Instances`:
//!   the clusters of the listed VMs. Narrowing: the listed clusters plus the clusters of
//!   the listed instances. VM reach is always inside cluster reach.
//! - Implication is a chain: cluster `admin` → VM `admin` → every VM right (on the VMs the
//!   binding reaches, never beyond: an `Own`-scoped cluster admin is admin of its own
//!   VMs only), and cluster `admin` → every cluster right.
//! - Combination: forbidden beats allowed beats not allowed, per right and per object. A
//!   forbidden right only counts where its binding reaches. Forbidding a link of the chain
//!   cuts what flows through it (forbidding VM `admin` leaves directly allowed `start`
//!   intact, but `admin` no longer implies it), and nothing else: forbidding `admin` is not
//!   a total lock-out.
//! - System rights ignore the scope. A narrowed binding confers none (narrowing to a
//!   cluster must not make anyone a service-wide admin), but its forbidden system rights
//!   still apply (fail closed).
//! - Tags: GWM tags `<prefix>:<perm>:<U|G>:<subject>` on a VM, whoever wrote them, allow
//!   the mapped VM rights (see [`crate::tags::GwmPerm::vm_rights`]) to that subject on
//!   that VM, at the level "allowed": a role's forbidden still wins. Owner tags (ours and
//!   ganetimgr's user/group tags) make the VM `Own` for the owners.
//! - `ganetimgr:adminlock` refuses every VM right except `view`, `lock` and `isolate` (a
//!   lock blocks owners' actions, not visibility, and moderators must be able to unlock
//!   and isolate) unless the principal holds VM `admin` on that VM through a role (which
//!   includes cluster admins and the `administrator` role). Admin granted by a tag does
//!   not lift the lock: tags are what the lock is meant to override. `ganetimgr:isolate`
//!   does not change decisions.
//! - The preconfigured roles (`administrator`, `advanced-user`, `user`) are always in the
//!   index, as defined in code; stored Role objects with those names are ignored
//!   (admission keeps them immutable; this makes a bypass harmless). Bindings to an
//!   unknown role grant nothing and are listed by [`AuthzIndex::dangling_bindings`].
//! - The administrator: a principal with an un-narrowed binding to `administrator`.
//!   Exempt from the escalation check; the operator wants at least one such binding
//!   ([`has_administrator_binding`]).

mod build;
mod detached;
mod escalation;
mod explain;
pub mod holders;
mod index;
mod listed;
mod permitted;
mod preconfigured;
mod segment;

pub use build::AuthzIndexBuilder;
pub use detached::DetachedVms;
pub use escalation::has_administrator_binding;
pub use index::{AuthzIndex, BindingId, InstanceId};
pub use listed::ListedGrant;
pub use preconfigured::{ADMINISTRATOR, ADVANCED_USER, PRECONFIGURED_LABEL, USER, preconfigured_roles};

use crate::api::common::{Subject, SubjectKind};
use crate::api::role::{ClusterRight, SystemRight, VmRight};

/// The authenticated requester: a Kubernetes username and its groups.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

impl<'a> Principal<'a> {
    pub fn new(user: &'a str, groups: &'a [String]) -> Self {
        Self { user, groups }
    }

    /// Whether `subject` names this user or one of its groups.
    pub fn is(&self, subject: &Subject) -> bool {
        match subject.kind {
            SubjectKind::User => subject.name == self.user,
            SubjectKind::Group => self.groups.contains(&subject.name),
        }
    }
}

/// Any right, of any object kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Right {
    Vm(VmRight),
    Cluster(ClusterRight),
    System(SystemRight),
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Right::Vm(r) => write!(f, "vms.{r}"),
            Right::Cluster(r) => write!(f, "clusters.{r}"),
            Right::System(r) => write!(f, "system.{r}"),
        }
    }
}

/// What is asked: a right on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// A right on a VM: GanetiCluster name, Ganeti instance name.
    Vm {
        cluster: &'a str,
        instance: &'a str,
        right: VmRight,
    },
    /// A right on a GanetiCluster.
    Cluster { cluster: &'a str, right: ClusterRight },
    /// A right on the service itself.
    System(SystemRight),
}

impl Request<'_> {
    pub fn right(&self) -> Right {
        match self {
            Request::Vm { right, .. } => Right::Vm(*right),
            Request::Cluster { right, .. } => Right::Cluster(*right),
            Request::System(right) => Right::System(*right),
        }
    }
}

/// The answer, with the reason. `Copy` and allocation-free: names are resolved through
/// the index ([`AuthzIndex::describe`]) only when someone reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

/// Why a decision went the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Allowed by this grant (the first one found).
    Granted(Grant),
    /// A role bound by this binding forbids `right` (the right asked, or the `admin` link
    /// the only grants went through).
    Forbidden { binding: BindingId, right: Right },
    /// The VM carries `ganetimgr:adminlock` and the principal is not its admin.
    AdminLock,
    /// No role or tag grants it.
    NotGranted,
}

/// Where an allowed right came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The role of `binding` allows `via`: the right asked, or an `admin` implying it.
    Role { binding: BindingId, via: Right },
    /// The `tag`-th permission tag of `instance` grants it.
    Tag { instance: InstanceId, tag: u32 },
}

impl Decision {
    pub(crate) const fn granted(grant: Grant) -> Self {
        Self {
            allowed: true,
            reason: Reason::Granted(grant),
        }
    }
    pub(crate) const fn denied(reason: Reason) -> Self {
        Self {
            allowed: false,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
