//! Bulk reads straight into the inventory.
//!
//! Parsing `/2/instances?bulk=1` into `WireInstance`s and converting them allocates
//! every NIC list, `hvparams` map and the flattened `beparams` only to drop them again:
//! at 10k instances that made a sync take 1.6 times as long as the raw fetch and parse
//! (benches/sync.rs). The records below name only the fields the inventory keeps
//! (serde skips the others unparsed), borrow what they only compare, and turn into
//! inventory items by moving strings. They are as lenient as the wire types; tests
//! check both paths agree.

use super::node::node_role;
use super::null_as_default;
use crate::inventory;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// `GET /2/instances?bulk=1`, parsed straight into the inventory.
pub(crate) struct BulkInstances(pub(crate) Vec<inventory::Instance>);

/// `GET /2/nodes?bulk=1`, parsed straight into the inventory.
pub(crate) struct BulkNodes(pub(crate) Vec<inventory::Node>);

impl<'de> Deserialize<'de> for BulkInstances {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ConvertSeq::<InstanceRecord<'de>, inventory::Instance>(
            PhantomData,
        ))
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for BulkNodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ConvertSeq::<NodeRecord<'de>, inventory::Node>(PhantomData))
            .map(Self)
    }
}

/// A JSON array of `R`, each converted into `T` as soon as it is parsed (no `Vec<R>`).
struct ConvertSeq<R, T>(PhantomData<(R, T)>);

impl<'de, R: Deserialize<'de> + Into<T>, T> Visitor<'de> for ConvertSeq<R, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(record) = seq.next_element::<R>()? {
            out.push(record.into());
        }
        Ok(out)
    }
}

/// The fields of a bulk instance that `inventory::Instance` keeps.
#[derive(Deserialize)]
struct InstanceRecord<'a> {
    name: String,
    #[serde(default, borrow)]
    admin_state: Option<Cow<'a, str>>,
    #[serde(default)]
    oper_state: Option<bool>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    pnode: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    snodes: Vec<String>,
    #[serde(default)]
    disk_template: Option<String>,
    #[serde(rename = "disk.sizes", default)]
    disk_sizes: SizeSum,
    #[serde(rename = "nic.ips", default)]
    nic_ips: PresentStrings,
    #[serde(rename = "nic.macs", default)]
    nic_macs: PresentStrings,
    #[serde(default)]
    network_port: Option<u16>,
    #[serde(default, deserialize_with = "null_as_default")]
    beparams: BeRecord,
    #[serde(default, deserialize_with = "null_as_default")]
    hvparams: HvRecord,
    #[serde(default, deserialize_with = "null_as_default")]
    tags: Vec<String>,
    #[serde(default)]
    ctime: Option<f64>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    hypervisor: Option<String>,
}

#[derive(Default, Deserialize)]
struct BeRecord {
    #[serde(default)]
    maxmem: Option<u64>,
    #[serde(default)]
    memory: Option<u64>,
    #[serde(default)]
    vcpus: Option<u32>,
}

#[derive(Default, Deserialize)]
struct HvRecord {
    /// A `Value`, as in `WireInstance::hvparams`: anything but a string is ignored.
    #[serde(default)]
    vnc_bind_address: Option<Value>,
}

impl From<InstanceRecord<'_>> for inventory::Instance {
    fn from(r: InstanceRecord<'_>) -> Self {
        let vnc_bind_address = match r.hvparams.vnc_bind_address {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Self {
            admin_up: r.admin_state.as_deref() == Some("up"),
            running: r.oper_state.unwrap_or(false),
            status: r.status.unwrap_or_default(),
            primary_node: r.pnode.unwrap_or_default(),
            secondary_nodes: r.snodes,
            os: r.os.unwrap_or_default(),
            hypervisor: r.hypervisor.unwrap_or_default(),
            disk_template: r.disk_template.unwrap_or_default(),
            vcpus: r.beparams.vcpus.unwrap_or(0),
            memory_mib: r.beparams.maxmem.or(r.beparams.memory).unwrap_or(0),
            disk_mib: r.disk_sizes.0,
            ips: r.nic_ips.0,
            macs: r.nic_macs.0,
            network_port: r.network_port,
            vnc_bind_address,
            tags: r.tags,
            ctime: r.ctime,
            uuid: r.uuid.unwrap_or_default(),
            name: r.name,
        }
    }
}

/// The fields of a bulk node that `inventory::Node` keeps (not `pinst_list` and
/// `sinst_list`, which together name every instance again).
#[derive(Deserialize)]
struct NodeRecord<'a> {
    name: String,
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default)]
    offline: Option<bool>,
    #[serde(default)]
    drained: Option<bool>,
    #[serde(default)]
    master_candidate: Option<bool>,
    #[serde(default)]
    mtotal: Option<u64>,
    #[serde(default)]
    mfree: Option<u64>,
    #[serde(default)]
    dtotal: Option<u64>,
    #[serde(default)]
    dfree: Option<u64>,
    #[serde(default)]
    ctotal: Option<u32>,
    #[serde(default)]
    pinst_cnt: Option<u32>,
    #[serde(default)]
    sinst_cnt: Option<u32>,
    #[serde(default)]
    pip: Option<String>,
    #[serde(rename = "group.uuid", default)]
    group_uuid: Option<String>,
}

impl From<NodeRecord<'_>> for inventory::Node {
    fn from(r: NodeRecord<'_>) -> Self {
        let offline = r.offline.unwrap_or(false);
        let drained = r.drained.unwrap_or(false);
        Self {
            role: node_role(r.role.as_deref(), offline, drained, r.master_candidate),
            offline,
            drained,
            memory_total_mib: r.mtotal.unwrap_or(0),
            memory_free_mib: r.mfree.unwrap_or(0),
            disk_total_mib: r.dtotal.unwrap_or(0),
            disk_free_mib: r.dfree.unwrap_or(0),
            cpus: r.ctotal.unwrap_or(0),
            primary_instances: r.pinst_cnt.unwrap_or(0),
            secondary_instances: r.sinst_cnt.unwrap_or(0),
            primary_ip: r.pip,
            group: r.group_uuid,
            name: r.name,
        }
    }
}

/// Sum of `disk.sizes` (`null` entries and a `null` list count as 0), without the list.
#[derive(Default)]
struct SizeSum(u64);

impl<'de> Deserialize<'de> for SizeSum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SizeSum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of sizes or null")
            }
            fn visit_unit<E>(self) -> Result<SizeSum, E> {
                Ok(SizeSum(0))
            }
            fn visit_none<E>(self) -> Result<SizeSum, E> {
                Ok(SizeSum(0))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<SizeSum, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SizeSum, A::Error> {
                let mut sum = 0u64;
                while let Some(size) = seq.next_element::<Option<u64>>()? {
                    sum = sum.saturating_add(size.unwrap_or(0));
                }
                Ok(SizeSum(sum))
            }
        }
        d.deserialize_option(V)
    }
}

/// A list of strings with its `null` entries left out (NICs without an IP); a `null`
/// list is empty.
#[derive(Default)]
struct PresentStrings(Vec<String>);

impl<'de> Deserialize<'de> for PresentStrings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PresentStrings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings or null")
            }
            fn visit_unit<E>(self) -> Result<PresentStrings, E> {
                Ok(PresentStrings::default())
            }
            fn visit_none<E>(self) -> Result<PresentStrings, E> {
                Ok(PresentStrings::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<PresentStrings, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PresentStrings, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(s) = seq.next_element::<Option<String>>()? {
                    out.extend(s);
                }
                Ok(PresentStrings(out))
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{INSTANCES, NODES};
    use super::super::{WireInstance, WireNode};
    use super::*;
    use crate::inventory::NodeRole;

    #[test]
    fn bulk_reads_into_the_inventory_agree_with_the_wire_types() {
        let wire: Vec<WireInstance> = serde_json::from_str(INSTANCES).unwrap();
        let via_wire: Vec<inventory::Instance> = wire.into_iter().map(Into::into).collect();
        let direct = serde_json::from_str::<BulkInstances>(INSTANCES).unwrap().0;
        assert_eq!(direct, via_wire);

        let wire: Vec<WireNode> = serde_json::from_str(NODES).unwrap();
        let via_wire: Vec<inventory::Node> = wire.into_iter().map(Into::into).collect();
        let direct = serde_json::from_str::<BulkNodes>(NODES).unwrap().0;
        assert_eq!(direct, via_wire);
    }

    #[test]
    fn bulk_records_are_as_lenient_as_the_wire_types() {
        // nulls for lists and maps, null list entries, a non-string VNC address, an
        // escaped string where a borrowed one is expected, unknown fields.
        let odd = r#"[{"name": "odd", "admin_state": "u\u0070", "snodes": null, "nic.ips": null,
            "nic.macs": [null, "aa:00:00:00:00:03"], "disk.sizes": [null, 512], "beparams": null,
            "hvparams": {"vnc_bind_address": 5}, "tags": null, "oper_state": null, "new_field": {"x": [1]}},
            {"name": "bare"}]"#;
        let wire: Vec<WireInstance> = serde_json::from_str(odd).unwrap();
        let via_wire: Vec<inventory::Instance> = wire.into_iter().map(Into::into).collect();
        let direct = serde_json::from_str::<BulkInstances>(odd).unwrap().0;
        assert_eq!(direct, via_wire);
        assert!(direct[0].admin_up);
        assert_eq!((direct[0].disk_mib, direct[0].macs.len()), (512, 1));
        assert_eq!(direct[0].vnc_bind_address, None);

        let odd = r#"[{"name": "n", "role": "X", "offline": null, "drained": true, "pinst_list": null}]"#;
        let direct = serde_json::from_str::<BulkNodes>(odd).unwrap().0;
        assert_eq!(
            direct[0].role,
            NodeRole::Drained,
            "unknown letter: from the flags"
        );
        assert!(
            serde_json::from_str::<BulkInstances>(r#"[{"admin_state": "up"}]"#).is_err(),
            "a name is required"
        );
    }
}
