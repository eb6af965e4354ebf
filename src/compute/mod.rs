//! `compute.ganeti.dev`: every Ganeti VM, node and job as a Kubernetes object, served
//! by the operator through the Kubernetes aggregation layer from its inventory (Ganeti
//! stays the store; nothing is copied into etcd).
//!
//! This module is the pure part: the objects ([`objects`]), the catalog's compact form
//! of a VM ([`record`]), their versions and change events ([`catalog`]), selectors ([`select`]), `kubectl get` tables ([`table`]),
//! discovery and OpenAPI ([`discovery`]) and what a patch of a VM's spec asks Ganeti
//! to do ([`patch`]). The HTTP side is `server::compute`.

pub mod catalog;
pub mod discovery;
pub mod follow;
pub mod objects;
pub mod patch;
pub mod record;
mod record_row;
pub mod select;
pub mod table;

pub const GROUP: &str = "compute.ganeti.dev";
pub const VERSION: &str = "v1alpha1";
pub const GROUP_VERSION: &str = "compute.ganeti.dev/v1alpha1";

pub const LABEL_CLUSTER: &str = "compute.ganeti.dev/cluster";
pub const LABEL_OWNER_USER: &str = "compute.ganeti.dev/owner-user";
pub const LABEL_OWNER_GROUP: &str = "compute.ganeti.dev/owner-group";
pub const LABEL_PRIMARY_NODE: &str = "compute.ganeti.dev/primary-node";
pub const LABEL_ROLE: &str = "compute.ganeti.dev/role";
pub const LABEL_STATE: &str = "compute.ganeti.dev/state";

/// The object name of a Ganeti instance, node or job: `<GanetiCluster>.<Ganeti name>`,
/// unambiguous across clusters (Ganeti names are only unique within one).
pub fn object_name(cluster: &str, ganeti_name: &str) -> String {
    let mut name = String::with_capacity(cluster.len() + 1 + ganeti_name.len());
    write_object_name(&mut name, cluster, ganeti_name);
    name
}

/// [`object_name`] into `buffer` (cleared first): a listing looks up thousands of
/// names with one allocation.
pub fn write_object_name(buffer: &mut String, cluster: &str, ganeti_name: &str) {
    buffer.clear();
    buffer.push_str(cluster);
    buffer.push('.');
    buffer.extend(ganeti_name.chars().map(|c| c.to_ascii_lowercase()));
}

/// Splits an object name into (cluster, Ganeti name), given the clusters there are.
/// The longest matching cluster wins, so `lab` and `lab.b` can coexist.
pub fn split_name<'a, 'c>(
    name: &'a str,
    clusters: impl IntoIterator<Item = &'c str>,
) -> Option<(&'c str, &'a str)> {
    clusters
        .into_iter()
        .filter(|c| name.len() > c.len() + 1 && name.starts_with(*c) && name.as_bytes()[c.len()] == b'.')
        .max_by_key(|c| c.len())
        .map(|c| (c, &name[c.len() + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_the_longest_known_cluster() {
        let clusters = ["lab", "lab.b", "other"];
        assert_eq!(
            split_name("lab.vm1.example.org", clusters),
            Some(("lab", "vm1.example.org"))
        );
        assert_eq!(split_name("lab.b.vm1", clusters), Some(("lab.b", "vm1")));
        assert_eq!(split_name("lab.", clusters), None);
        assert_eq!(split_name("labx.vm1", clusters), None);
        assert_eq!(split_name("nowhere.vm1", clusters), None);
        assert_eq!(object_name("lab", "VM1.Example.org"), "lab.vm1.example.org");
    }
}
