//! Node and node group answers: one element of `/2/nodes?bulk=1` and of
//! `/2/groups?bulk=1`, node roles from RAPI's letters and `/2/nodes/<n>/role`'s names.

use super::null_as_default;
use crate::inventory::{self, NodeRole};
use serde::Deserialize;

/// One element of `/2/nodes?bulk=1`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WireNode {
    pub name: String,
    /// Single letter: M, C, R, D or O.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub offline: Option<bool>,
    #[serde(default)]
    pub drained: Option<bool>,
    #[serde(default)]
    pub master_candidate: Option<bool>,
    #[serde(default)]
    pub master_capable: Option<bool>,
    #[serde(default)]
    pub vm_capable: Option<bool>,
    #[serde(default)]
    pub mtotal: Option<u64>,
    #[serde(default)]
    pub mnode: Option<u64>,
    #[serde(default)]
    pub mfree: Option<u64>,
    /// null on clusters without LVM storage (e.g. diskless-only).
    #[serde(default)]
    pub dtotal: Option<u64>,
    #[serde(default)]
    pub dfree: Option<u64>,
    #[serde(default)]
    pub ctotal: Option<u32>,
    #[serde(default)]
    pub cnodes: Option<u32>,
    #[serde(default)]
    pub csockets: Option<u32>,
    #[serde(default)]
    pub pinst_cnt: Option<u32>,
    #[serde(default)]
    pub sinst_cnt: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pinst_list: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sinst_list: Vec<String>,
    #[serde(default)]
    pub pip: Option<String>,
    #[serde(default)]
    pub sip: Option<String>,
    #[serde(rename = "group.uuid", default)]
    pub group_uuid: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub uuid: Option<String>,
}

impl From<WireNode> for inventory::Node {
    fn from(w: WireNode) -> Self {
        let offline = w.offline.unwrap_or(false);
        let drained = w.drained.unwrap_or(false);
        let role = node_role(w.role.as_deref(), offline, drained, w.master_candidate);
        Self {
            name: w.name,
            role,
            offline,
            drained,
            memory_total_mib: w.mtotal.unwrap_or(0),
            memory_free_mib: w.mfree.unwrap_or(0),
            disk_total_mib: w.dtotal.unwrap_or(0),
            disk_free_mib: w.dfree.unwrap_or(0),
            cpus: w.ctotal.unwrap_or(0),
            primary_instances: w.pinst_cnt.unwrap_or(0),
            secondary_instances: w.sinst_cnt.unwrap_or(0),
            primary_ip: w.pip,
            group: w.group_uuid,
        }
    }
}

/// A node's role from RAPI's letter, falling back to the flags when the letter is
/// missing or unknown.
pub(super) fn node_role(
    letter: Option<&str>,
    offline: bool,
    drained: bool,
    candidate: Option<bool>,
) -> NodeRole {
    letter.and_then(NodeRole::from_letter).unwrap_or(if offline {
        NodeRole::Offline
    } else if drained {
        NodeRole::Drained
    } else if candidate == Some(true) {
        NodeRole::Candidate
    } else {
        NodeRole::Regular
    })
}

/// One element of `/2/groups?bulk=1`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WireGroup {
    pub name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub node_cnt: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub node_list: Vec<String>,
    #[serde(default)]
    pub alloc_policy: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

/// The role names of `/2/nodes/<n>/role`.
pub fn node_role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Master => "master",
        NodeRole::Candidate => "master-candidate",
        NodeRole::Regular => "regular",
        NodeRole::Drained => "drained",
        NodeRole::Offline => "offline",
    }
}

pub fn parse_node_role_name(s: &str) -> Option<NodeRole> {
    Some(match s {
        "master" => NodeRole::Master,
        "master-candidate" => NodeRole::Candidate,
        "regular" => NodeRole::Regular,
        "drained" => NodeRole::Drained,
        "offline" => NodeRole::Offline,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::NODES;
    use super::*;

    #[test]
    fn bulk_nodes_convert_into_the_inventory() {
        let wire: Vec<WireNode> = serde_json::from_str(NODES).unwrap();
        let inv: Vec<inventory::Node> = wire.into_iter().map(Into::into).collect();
        let n = &inv[0];
        assert_eq!(n.role, NodeRole::Master);
        assert_eq!((n.memory_total_mib, n.memory_free_mib), (24105, 23491));
        assert_eq!(
            (n.disk_total_mib, n.disk_free_mib),
            (0, 0),
            "null on a diskless cluster"
        );
        assert_eq!(n.cpus, 2);
        assert_eq!(n.primary_ip.as_deref(), Some("198.51.100.10"));
        assert_eq!(n.group.as_deref(), Some("557cabb3-3d53-488c-a93d-a2e903431d7e"));
        let o = &inv[1];
        assert_eq!(o.role, NodeRole::Offline);
        assert!(o.offline && !o.drained);
        assert_eq!((o.disk_total_mib, o.secondary_instances), (102400, 1));
        assert_eq!(o.group, None);
    }

    #[test]
    fn node_role_names_round_trip() {
        for role in NodeRole::ALL {
            assert_eq!(parse_node_role_name(node_role_name(role)), Some(role));
        }
    }
}
