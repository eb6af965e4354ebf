//! Building the index: roles compiled, bindings keyed by subject, instances interned
//! with their tags parsed once.

use super::index::*;
use super::preconfigured::preconfigured_roles;
use crate::api::binding::{RoleBinding, RoleBindingSpec};
use crate::api::common::{InstanceRef, SubjectKind};
use crate::api::role::{Role, RoleSpec, ScopeKind};
use crate::inventory::ClusterInventory;
use crate::tags::{self, ParsedTag};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Collects roles, bindings and instances; [`AuthzIndexBuilder::build`] compiles them.
#[derive(Debug, Default)]
pub struct AuthzIndexBuilder {
    roles: Vec<(Arc<str>, RoleSpec)>,
    bindings: Vec<(Arc<str>, RoleBindingSpec)>,
    index: AuthzIndex,
}

impl AuthzIndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds Role objects (those named like a preconfigured role are ignored).
    pub fn roles<'a>(mut self, roles: impl IntoIterator<Item = &'a Role>) -> Self {
        for role in roles {
            self = self.role(role.metadata.name.as_deref().unwrap_or_default(), &role.spec);
        }
        self
    }

    pub fn role(mut self, name: &str, spec: &RoleSpec) -> Self {
        self.roles.push((name.into(), spec.clone()));
        self
    }

    pub fn bindings<'a>(mut self, bindings: impl IntoIterator<Item = &'a RoleBinding>) -> Self {
        for b in bindings {
            self = self.binding(b.metadata.name.as_deref().unwrap_or_default(), &b.spec);
        }
        self
    }

    pub fn binding(mut self, name: &str, spec: &RoleBindingSpec) -> Self {
        self.bindings.push((name.into(), spec.clone()));
        self
    }

    /// Adds every instance of one cluster's inventory; `prefix` is its tag prefix.
    pub fn cluster(mut self, inventory: &ClusterInventory, prefix: &str) -> Self {
        self.index.cluster_id(&inventory.cluster);
        for i in &inventory.instances {
            self = self.instance(&inventory.cluster, &i.name, &i.tags, prefix);
        }
        self
    }

    /// Adds one instance with its Ganeti tags.
    pub fn instance(mut self, cluster: &str, name: &str, tag_list: &[String], prefix: &str) -> Self {
        let id = self.index.instance_id(cluster, name) as usize;
        let facts = &mut self.index.instances[id];
        facts.in_inventory = true;
        for tag in tag_list {
            match tags::parse(tag, prefix) {
                Some(ParsedTag::GwmGrant { perm, subject }) => facts.grants.push(TagGrant {
                    tag: tag.as_str().into(),
                    subject,
                    perm,
                    rights: perm.vm_rights().iter().fold(0, |m, r| m | vm_bit(*r)),
                }),
                Some(ParsedTag::Owner(s) | ParsedTag::GanetimgrOwner(s)) => {
                    facts.owners.push((s, tag.as_str().into()))
                }
                Some(ParsedTag::AdminLock) => facts.locked = true,
                Some(ParsedTag::Isolate) => facts.isolated = true,
                Some(ParsedTag::Other) | None => {}
            }
        }
        self
    }

    pub fn build(mut self) -> AuthzIndex {
        let mut ix = self.index;
        let mut role_ids: HashMap<Arc<str>, u32> = HashMap::new();
        // Built once per process: the index is rebuilt on every change.
        static PRECONFIGURED: LazyLock<Vec<(Arc<str>, RoleSpec)>> = LazyLock::new(|| {
            preconfigured_roles()
                .into_iter()
                .map(|r| (Arc::from(r.metadata.name.as_deref().unwrap_or_default()), r.spec))
                .collect()
        });
        let stored = self
            .roles
            .drain(..)
            .filter(|(name, _)| !PRECONFIGURED.iter().any(|(p, _)| p == name));
        let all: Vec<(Arc<str>, RoleSpec)> = PRECONFIGURED.iter().cloned().chain(stored).collect();
        for (name, spec) in all {
            let role = ix.compile_role(name.clone(), spec);
            role_ids.insert(name, ix.roles.len() as u32);
            ix.roles.push(role);
        }
        for (name, spec) in self.bindings {
            let Some(&role) = role_ids.get(&*spec.role_ref) else {
                ix.dangling.push(name);
                continue;
            };
            let id = ix.bindings.len() as u32;
            let clusters = sorted(spec.clusters.iter().map(|c| ix.cluster_id(c)));
            let instances = sorted(spec.instances.iter().map(|i| ix.instance_ref_id(i)));
            let reach_clusters = sorted(
                clusters
                    .iter()
                    .copied()
                    .chain(instances.iter().map(|i| ix.instances[*i as usize].cluster)),
            );
            for s in &spec.subjects {
                let map = match s.kind {
                    SubjectKind::User => &mut ix.by_user,
                    SubjectKind::Group => &mut ix.by_group,
                };
                let list = map.entry(s.name.as_str().into()).or_default();
                // A subject listed twice in one binding needs the binding once.
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
            ix.bindings.push(CompiledBinding {
                name,
                role,
                narrowed: !spec.clusters.is_empty() || !spec.instances.is_empty(),
                spec,
                clusters,
                instances,
                reach_clusters,
            });
        }
        // Per subject, the instances whose tags name it: where a principal's tag grants
        // and `Own` scopes can reach (see `permitted_instances`).
        for (id, f) in ix.instances.iter().enumerate() {
            let named = f
                .owners
                .iter()
                .map(|(s, _)| s)
                .chain(f.grants.iter().map(|g| &g.subject));
            for s in named {
                let map = match s.kind {
                    SubjectKind::User => &mut ix.tagged_users,
                    SubjectKind::Group => &mut ix.tagged_groups,
                };
                // Look up before inserting: most subjects name many instances.
                match map.get_mut(s.name.as_str()) {
                    Some(list) if list.last() == Some(&(id as u32)) => {}
                    Some(list) => list.push(id as u32),
                    None => {
                        map.insert(s.name.as_str().into(), vec![id as u32]);
                    }
                }
            }
        }
        ix
    }
}

fn sorted(ids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl AuthzIndex {
    pub(super) fn cluster_id(&mut self, name: &str) -> u32 {
        if let Some(e) = self.clusters.get(name) {
            return e.id;
        }
        let id = self.cluster_names.len() as u32;
        self.cluster_names.push(name.into());
        self.clusters.insert(
            name.into(),
            ClusterEntry {
                id,
                instances: HashMap::new(),
            },
        );
        id
    }

    pub(super) fn instance_id(&mut self, cluster: &str, name: &str) -> u32 {
        let cid = self.cluster_id(cluster);
        let next = self.instances.len() as u32;
        let entry = self.clusters.get_mut(cluster).expect("cluster just interned");
        if let Some(&id) = entry.instances.get(name) {
            return id;
        }
        entry.instances.insert(name.into(), next);
        self.instances.push(InstanceFacts {
            cluster: cid,
            name: name.into(),
            owners: Vec::new(),
            grants: Vec::new(),
            locked: false,
            isolated: false,
            in_inventory: false,
        });
        next
    }

    pub(super) fn instance_ref_id(&mut self, r: &InstanceRef) -> u32 {
        self.instance_id(&r.cluster, &r.name)
    }

    pub(super) fn compile_role(&mut self, name: Arc<str>, spec: RoleSpec) -> CompiledRole {
        let vm = spec
            .vms
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), vm_bit));
        let cl = spec
            .clusters
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), cl_bit));
        let sys = spec
            .system
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), sys_bit));
        let scope = spec.scope.kind;
        let (mut scope_clusters, mut scope_instances) = (Vec::new(), Vec::new());
        match scope {
            ScopeKind::Clusters => {
                scope_clusters = sorted(spec.scope.clusters.iter().map(|c| self.cluster_id(c)))
            }
            ScopeKind::Instances => {
                scope_instances = sorted(spec.scope.instances.iter().map(|i| self.instance_ref_id(i)))
            }
            ScopeKind::All | ScopeKind::Own => {}
        }
        let scope_instance_clusters = sorted(
            scope_instances
                .iter()
                .map(|i| self.instances[*i as usize].cluster),
        );
        CompiledRole {
            name,
            spec,
            vm,
            cl,
            sys,
            scope,
            scope_clusters,
            scope_instances,
            scope_instance_clusters,
        }
    }
}
