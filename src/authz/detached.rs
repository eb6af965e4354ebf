//! Some VMs' facts kept apart from any index, decided against an index of the rules
//! alone. A watch event needs to be decided, for as long as the watch history holds it,
//! as the whole snapshot of its moment would decide it; keeping an index per event
//! compiled every role and binding again for each (some 80 KiB with a hundred
//! bindings, times thousands of events). Detached, an event keeps its own VMs' facts
//! and shares one rules-only index with every event of the same rules.

use super::index::{AuthzIndex, Target};
use super::segment::ClusterFacts;
use super::{Principal, Request};
use crate::inventory::Instance;

/// The facts of some VMs of one cluster (their names and tags, read with the cluster's
/// tag prefix and GWM id map), as an inventory segment would hold them.
#[derive(Debug, Default)]
pub struct DetachedVms {
    cluster: Box<str>,
    facts: ClusterFacts,
}

impl DetachedVms {
    pub fn new<'a, 'r>(
        cluster: &str,
        reader: impl Into<crate::tags::Reader<'r>>,
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> Self {
        let reader = reader.into();
        let mut facts = ClusterFacts::default();
        for i in instances {
            facts.add(&i.name, &i.tags, reader);
        }
        // No `index_tags`: deciding one VM needs no subject look-ups (those serve
        // listings), and an event keeps these for as long as the history holds it.
        facts.instances.shrink_to_fit();
        Self {
            cluster: cluster.into(),
            facts,
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The VMs' names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.facts.instances.iter().map(|f| &*f.name)
    }
}

impl AuthzIndex {
    /// Whether `request` is allowed as an index of the same rules with `vms` in their
    /// cluster's inventory would decide it (`self` holding no inventory of that cluster).
    ///
    /// Equal because a VM decision reads the VM's facts and only ids the rules name: the
    /// cluster's id (a cluster no rule names has one only in the full index, but no rule
    /// lists it there either) and the VM's (in the full index a segment id, here the
    /// overlay id a naming rule gave it; unnamed, no rule lists it in either).
    pub fn allows_with(&self, vms: &DetachedVms, p: &Principal<'_>, request: &Request<'_>) -> bool {
        if let Request::Vm {
            cluster,
            instance,
            right,
        } = *request
            && cluster == &*vms.cluster
            && let Some(&local) = vms.facts.by_name.get(instance)
        {
            let facts = &vms.facts.instances[local as usize];
            let target = Target {
                cluster: self.clusters.get(cluster).map(|e| e.id),
                instance: self.instance_id_of(cluster, instance),
                facts: Some(facts),
                owned: facts.owners.iter().any(|(s, _)| p.is(s)),
            };
            // The decision's grant may name an instance id of no index: only its verdict
            // is given out.
            return self.decide_vm(p, self.bindings_of(p), &target, right).allowed;
        }
        self.decide(p, request).allowed
    }
}
