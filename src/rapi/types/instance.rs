//! Instance answers: one element of `/2/instances?bulk=1` (and its conversion into
//! the inventory) and `/2/instances/<n>/console`.

use super::null_as_default;
use crate::inventory;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Backend parameters as RAPI reports them (filled with cluster defaults).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct WireBeParams {
    pub maxmem: Option<u64>,
    pub minmem: Option<u64>,
    /// Older name of maxmem; Ganeti 3.0 still reports it.
    pub memory: Option<u64>,
    pub vcpus: Option<u32>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One element of `/2/instances?bulk=1`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WireInstance {
    pub name: String,
    /// up, down or offline.
    #[serde(default)]
    pub admin_state: Option<String>,
    #[serde(default)]
    pub oper_state: Option<bool>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub pnode: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub snodes: Vec<String>,
    #[serde(default)]
    pub disk_template: Option<String>,
    #[serde(rename = "disk.sizes", default, deserialize_with = "null_as_default")]
    pub disk_sizes: Vec<Option<u64>>,
    #[serde(default)]
    pub disk_usage: Option<u64>,
    #[serde(rename = "nic.ips", default, deserialize_with = "null_as_default")]
    pub nic_ips: Vec<Option<String>>,
    #[serde(rename = "nic.macs", default, deserialize_with = "null_as_default")]
    pub nic_macs: Vec<Option<String>>,
    #[serde(rename = "nic.modes", default, deserialize_with = "null_as_default")]
    pub nic_modes: Vec<Option<String>>,
    #[serde(rename = "nic.links", default, deserialize_with = "null_as_default")]
    pub nic_links: Vec<Option<String>>,
    #[serde(rename = "nic.networks", default, deserialize_with = "null_as_default")]
    pub nic_networks: Vec<Option<String>>,
    #[serde(default)]
    pub network_port: Option<u16>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub beparams: WireBeParams,
    /// Effective hypervisor parameters (empty for the fake hypervisor).
    #[serde(default, deserialize_with = "null_as_default")]
    pub hvparams: BTreeMap<String, Value>,
    #[serde(default)]
    pub oper_ram: Option<u64>,
    #[serde(default)]
    pub oper_vcpus: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub ctime: Option<f64>,
    #[serde(default)]
    pub mtime: Option<f64>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub serial_no: Option<u64>,
    /// Not part of the bulk answer (RAPI has no such field there); filled from
    /// `RapiClient::instance_hypervisors` when the caller wants it.
    #[serde(default)]
    pub hypervisor: Option<String>,
}

impl From<WireInstance> for inventory::Instance {
    fn from(w: WireInstance) -> Self {
        let vnc_bind_address = w
            .hvparams
            .get("vnc_bind_address")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Self {
            admin_up: w.admin_state.as_deref() == Some("up"),
            running: w.oper_state.unwrap_or(false),
            status: w.status.unwrap_or_default(),
            primary_node: w.pnode.unwrap_or_default(),
            secondary_nodes: w.snodes,
            os: w.os.unwrap_or_default(),
            hypervisor: w.hypervisor.unwrap_or_default(),
            disk_template: w.disk_template.unwrap_or_default(),
            vcpus: w.beparams.vcpus.unwrap_or(0),
            memory_mib: w.beparams.maxmem.or(w.beparams.memory).unwrap_or(0),
            disk_mib: w.disk_sizes.iter().flatten().sum(),
            ips: w.nic_ips.into_iter().flatten().collect(),
            macs: w.nic_macs.into_iter().flatten().collect(),
            network_port: w.network_port,
            vnc_bind_address,
            tags: w.tags,
            ctime: w.ctime,
            uuid: w.uuid.unwrap_or_default(),
            name: w.name,
        }
    }
}

/// `GET /2/instances/<n>/console`, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Console {
    /// No console, only a message (e.g. the fake hypervisor).
    Msg {
        instance: String,
        #[serde(default)]
        message: Option<String>,
    },
    Ssh {
        instance: String,
        host: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        command: Vec<String>,
    },
    Vnc {
        instance: String,
        host: String,
        port: u16,
        #[serde(default)]
        display: Option<u32>,
    },
    Spice {
        instance: String,
        host: String,
        port: u16,
    },
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::INSTANCES;
    use super::*;
    use serde_json::json;

    #[test]
    fn bulk_instances_convert_into_the_inventory() {
        let wire: Vec<WireInstance> = serde_json::from_str(INSTANCES).unwrap();
        let inv: Vec<inventory::Instance> = wire.into_iter().map(Into::into).collect();
        let a = &inv[0];
        assert_eq!(a.name, "probe1.ganeti.test");
        assert!(a.admin_up && a.running);
        assert_eq!(a.status, "running");
        assert_eq!((a.vcpus, a.memory_mib, a.disk_mib), (1, 128, 0));
        assert_eq!(a.ips, vec!["198.51.100.99"]);
        assert_eq!(a.macs, vec!["aa:00:00:2f:e7:87"]);
        assert_eq!(a.network_port, None);
        assert_eq!(a.vnc_bind_address, None);
        assert_eq!(a.tags, vec!["a:b"]);
        assert_eq!(a.ctime, Some(1795541331.996601));
        let b = &inv[1];
        assert!(!b.admin_up && !b.running);
        assert_eq!((b.vcpus, b.memory_mib, b.disk_mib), (2, 2048, 3072));
        assert_eq!(b.ips, vec!["198.51.100.60"], "a NIC without IP is skipped");
        assert_eq!(b.secondary_nodes, vec!["node2.ganeti.test"]);
        assert_eq!(b.network_port, Some(11000));
        assert_eq!(b.vnc_bind_address.as_deref(), Some("0.0.0.0"));
    }

    #[test]
    fn memory_falls_back_to_the_old_field() {
        let w: WireInstance =
            serde_json::from_value(json!({"name": "x", "beparams": {"memory": 512}})).unwrap();
        assert_eq!(inventory::Instance::from(w).memory_mib, 512);
        let w: WireInstance =
            serde_json::from_value(json!({"name": "x", "beparams": null, "tags": null})).unwrap();
        assert_eq!(inventory::Instance::from(w).memory_mib, 0);
    }

    #[test]
    fn consoles_parse_by_kind() {
        let msg: Console = serde_json::from_str(r#"{"instance": "probe1.ganeti.test", "kind": "msg", "message": "Console not available for fake hypervisor"}"#).unwrap();
        assert!(matches!(msg, Console::Msg { message: Some(m), .. } if m.contains("fake")));
        let vnc: Console = serde_json::from_value(
            json!({"instance": "i", "kind": "vnc", "host": "node1", "port": 11000, "display": 5100}),
        )
        .unwrap();
        assert_eq!(
            vnc,
            Console::Vnc {
                instance: "i".into(),
                host: "node1".into(),
                port: 11000,
                display: Some(5100)
            }
        );
        let ssh: Console = serde_json::from_value(json!({"instance": "i", "kind": "ssh", "host": "node1", "user": "root", "command": ["xl", "console", "i"]})).unwrap();
        assert!(matches!(ssh, Console::Ssh { command, .. } if command.len() == 3));
    }
}
