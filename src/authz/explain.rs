//! Human-readable reasons: one line for a decision, and a full account of every binding
//! and tag that bears on a request (for `ganeti-operator explain`). Off the hot path, so
//! these allocate freely.

use super::index::{AuthzIndex, CompiledBinding, CompiledRole, cl_bit};
use super::{Decision, Grant, Principal, Reason, Request, Right};
use crate::api::role::{ClusterRight, Permission, ScopeKind, VmRight};
use std::fmt::Write;

impl AuthzIndex {
    /// One line saying why: "allowed: role user (binding alice-user) allows vms.start".
    pub fn describe(&self, decision: &Decision) -> String {
        let verdict = if decision.allowed { "allowed" } else { "denied" };
        let why = match decision.reason {
            Reason::Granted(Grant::Role { binding, via }) => format!(
                "role {} (binding {}) allows {via}",
                self.binding_role(binding),
                self.binding_name(binding)
            ),
            Reason::Granted(Grant::Tag { instance, tag }) => {
                format!("tag {} grants it", self.tag(instance, tag))
            }
            Reason::Forbidden { binding, right } => format!(
                "role {} (binding {}) forbids {right}",
                self.binding_role(binding),
                self.binding_name(binding)
            ),
            Reason::AdminLock => {
                "the VM is locked (ganetimgr:adminlock) and only its admins may act on it".to_owned()
            }
            Reason::NotGranted => "no role or tag grants it".to_owned(),
        };
        format!("{verdict}: {why}")
    }

    /// Every binding of the principal and every tag of the VM that bears on `request`,
    /// then the decision. Multi-line, for people.
    pub fn explain(&self, p: &Principal<'_>, request: &Request<'_>) -> String {
        let mut out = String::new();
        let right = request.right();
        let groups = if p.groups.is_empty() {
            "no groups".to_owned()
        } else {
            format!("groups {}", p.groups.join(", "))
        };
        let object = match request {
            Request::Vm {
                cluster, instance, ..
            } => format!("VM {cluster}/{instance}"),
            Request::Cluster { cluster, .. } => format!("cluster {cluster}"),
            Request::System(_) => "the service".to_owned(),
        };
        let _ = writeln!(out, "user {} ({groups}) asks {right} on {object}", p.user);
        if let Request::Vm {
            cluster, instance, ..
        } = request
        {
            match self.find_instance(cluster, instance) {
                None => {
                    let _ = writeln!(out, "  the VM is not in the inventory: no owners, no tags");
                }
                Some(f) => {
                    for (owner, tag) in &f.owners {
                        let mine = if p.is(owner) { " (the requester)" } else { "" };
                        let _ = writeln!(out, "  owned by {owner}{mine}: tag {tag}");
                    }
                    if f.owners.is_empty() {
                        let _ = writeln!(out, "  no owner tag");
                    }
                    for g in &f.grants {
                        let applies = if p.is(&g.subject) {
                            "applies"
                        } else {
                            "not the requester"
                        };
                        let _ = writeln!(out, "  tag {} ({} for {}): {applies}", g.tag, g.perm, g.subject);
                    }
                    if f.locked {
                        let _ = writeln!(out, "  locked: ganetimgr:adminlock");
                    }
                    if f.isolated {
                        let _ = writeln!(out, "  isolated: ganetimgr:isolate (no effect on rights)");
                    }
                }
            }
        }
        let mut seen = Vec::new();
        for id in self.bindings_of(p) {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            let via: Vec<String> = b
                .spec
                .subjects
                .iter()
                .filter(|s| p.is(s))
                .map(|s| s.to_string())
                .collect();
            let mut scope = format!("scope {:?}", role.scope);
            if role.scope == ScopeKind::Clusters {
                let _ = write!(scope, " {}", role.spec.scope.clusters.join(","));
            }
            if role.scope == ScopeKind::Instances {
                let list: Vec<String> = role
                    .spec
                    .scope
                    .instances
                    .iter()
                    .map(|i| format!("{}/{}", i.cluster, i.name))
                    .collect();
                let _ = write!(scope, " {}", list.join(","));
            }
            if b.narrowed {
                let list: Vec<String> = b
                    .spec
                    .clusters
                    .iter()
                    .cloned()
                    .chain(
                        b.spec
                            .instances
                            .iter()
                            .map(|i| format!("{}/{}", i.cluster, i.name)),
                    )
                    .collect();
                let _ = write!(scope, ", narrowed to {}", list.join(","));
            }
            let _ = writeln!(
                out,
                "  binding {} (as {}) → role {} ({scope}): {}",
                b.name,
                via.join(", "),
                role.name,
                self.binding_effect(id, p, request)
            );
        }
        if seen.is_empty() {
            let _ = writeln!(out, "  no binding names the user or its groups");
        }
        let decision = self.decide(p, request);
        let _ = writeln!(out, "decision: {}", self.describe(&decision));
        out
    }

    /// What one binding says about a request, judged alone.
    fn binding_effect(&self, id: u32, p: &Principal<'_>, request: &Request<'_>) -> String {
        let b = &self.bindings[id as usize];
        let role = &self.roles[b.role as usize];
        let setting = |right: Right| -> Option<Permission> {
            match right {
                Right::Vm(r) => role.spec.vms.as_ref().and_then(|v| v.get(r)),
                Right::Cluster(r) => role.spec.clusters.as_ref().and_then(|v| v.get(r)),
                Right::System(r) => role.spec.system.as_ref().and_then(|v| v.get(r)),
            }
        };
        // The right asked and the admin rights that imply it.
        let mut chain = vec![request.right()];
        match request.right() {
            Right::Vm(VmRight::Admin) => chain.push(Right::Cluster(ClusterRight::Admin)),
            Right::Vm(_) => {
                chain.push(Right::Vm(VmRight::Admin));
                chain.push(Right::Cluster(ClusterRight::Admin));
            }
            Right::Cluster(ClusterRight::Admin) | Right::System(_) => {}
            Right::Cluster(_) => chain.push(Right::Cluster(ClusterRight::Admin)),
        }
        let said: Vec<String> = chain
            .iter()
            .filter_map(|r| {
                setting(*r).map(|s| match s {
                    Permission::Allowed => format!("allows {r}"),
                    Permission::Forbidden => format!("forbids {r}"),
                })
            })
            .collect();
        if said.is_empty() {
            return format!("does not mention {}", request.right());
        }
        // Judge reach with a one-binding view of the index.
        let reaches = match request {
            Request::System(_) => !b.narrowed || said.iter().all(|s| s.starts_with("forbids")),
            _ => self.reaches(id, p, request),
        };
        if reaches {
            said.join(", ")
        } else {
            format!("{} but does not reach this object", said.join(", "))
        }
    }

    /// Whether binding `id` reaches the object of `request` (for the explanation).
    fn reaches(&self, id: u32, p: &Principal<'_>, request: &Request<'_>) -> bool {
        let b = &self.bindings[id as usize];
        let role = &self.roles[b.role as usize];
        match *request {
            Request::Vm {
                cluster, instance, ..
            } => {
                let owned = self
                    .find_instance(cluster, instance)
                    .is_some_and(|f| f.owners.iter().any(|(s, _)| p.is(s)));
                let cluster_listed = |list: &[String]| list.iter().any(|c| c == cluster);
                let instance_listed = |list: &[crate::api::common::InstanceRef]| {
                    list.iter().any(|i| i.cluster == cluster && i.name == instance)
                };
                let scoped = match role.scope {
                    ScopeKind::All => true,
                    ScopeKind::Own => owned,
                    ScopeKind::Clusters => cluster_listed(&role.spec.scope.clusters),
                    ScopeKind::Instances => instance_listed(&role.spec.scope.instances),
                };
                // Cluster admin forbidden reaches at the cluster level.
                let cl_forbid = role.cl.forbid & cl_bit(ClusterRight::Admin) != 0;
                let vm = scoped
                    && (!b.narrowed
                        || cluster_listed(&b.spec.clusters)
                        || instance_listed(&b.spec.instances));
                vm || cl_forbid && self.reaches_cluster(b, role, cluster)
            }
            Request::Cluster { cluster, .. } => self.reaches_cluster(b, role, cluster),
            Request::System(_) => true,
        }
    }

    fn reaches_cluster(&self, b: &CompiledBinding, role: &CompiledRole, cluster: &str) -> bool {
        let scoped = match role.scope {
            ScopeKind::All | ScopeKind::Own => true,
            ScopeKind::Clusters => role.spec.scope.clusters.iter().any(|c| c == cluster),
            ScopeKind::Instances => role.spec.scope.instances.iter().any(|i| i.cluster == cluster),
        };
        scoped
            && (!b.narrowed
                || b.spec.clusters.iter().any(|c| c == cluster)
                || b.spec.instances.iter().any(|i| i.cluster == cluster))
    }
}
