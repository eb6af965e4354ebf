//! Cluster-wide answers: `/2/info` (and its conversion into the inventory's
//! cluster facts) and the features a cluster must offer.

use crate::inventory;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// `/2/info`, the fields the operator uses (the rest is ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Info {
    pub name: String,
    pub master: String,
    pub software_version: String,
    #[serde(default)]
    pub protocol_version: Option<u64>,
    #[serde(default)]
    pub enabled_hypervisors: Vec<String>,
    #[serde(default)]
    pub default_hypervisor: Option<String>,
    #[serde(default)]
    pub enabled_disk_templates: Vec<String>,
    #[serde(default)]
    pub candidate_pool_size: Option<u32>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Cluster-level backend parameters (`{"default": {...}}`).
    #[serde(default)]
    pub beparams: BTreeMap<String, Value>,
}

impl From<Info> for inventory::ClusterFacts {
    fn from(i: Info) -> Self {
        Self {
            name: i.name,
            master: i.master,
            software_version: i.software_version,
            enabled_hypervisors: i.enabled_hypervisors,
            default_hypervisor: i.default_hypervisor.unwrap_or_default(),
        }
    }
}

/// The feature string a v1 instance-creation body needs.
pub const FEATURE_INSTANCE_CREATE_V1: &str = "instance-create-reqv1";

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"{"software_version": "3.0.2", "protocol_version": 3000000, "config_version": 3000000, "os_api_version": 20, "name": "cluster.ganeti.test", "master": "node1.ganeti.test", "default_hypervisor": "fake", "enabled_hypervisors": ["fake", "kvm"], "hvparams": {"fake": {"migration_mode": "live"}}, "beparams": {"default": {"minmem": 128, "maxmem": 128, "vcpus": 1}}, "candidate_pool_size": 10, "volume_group_name": null, "uuid": "048bb0c0-89b3-4b9a-8d21-8fc884007067", "tags": [], "enabled_disk_templates": ["diskless"]}"#;

    #[test]
    fn info_converts_into_cluster_facts() {
        let info: Info = serde_json::from_str(INFO).unwrap();
        let facts = inventory::ClusterFacts::from(info);
        assert_eq!(facts.name, "cluster.ganeti.test");
        assert_eq!(facts.master, "node1.ganeti.test");
        assert_eq!(facts.software_version, "3.0.2");
        assert_eq!(facts.default_hypervisor, "fake");
        assert_eq!(facts.enabled_hypervisors, vec!["fake", "kvm"]);
    }
}
