//! RAPI request and answer types (shapes checked against Ganeti 3.0.2), and their
//! conversion into the domain model of `crate::inventory`.
//!
//! Wire types are lenient: every field Ganeti may leave out or send as `null` (for
//! example `dtotal` on a diskless node, or `oper_state` of an instance on an offline
//! node) is optional, so one odd object cannot break a whole bulk read.
//!
//! The periodic bulk reads skip the wire types: `BulkInstances` and `BulkNodes` parse
//! straight into the inventory, keeping only what it holds (see "Bulk reads" below).

use super::error::GanetiFailure;
use crate::inventory::{self, NodeRole};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A Ganeti job id. Ganeti 3.0 answers a bare JSON number; older versions a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(JobId(n)),
            Raw::S(s) => s.parse().map(JobId).map_err(serde::de::Error::custom),
        }
    }
}

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
fn node_role(letter: Option<&str>, offline: bool, drained: bool, candidate: Option<bool>) -> NodeRole {
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

// --- Bulk reads ----------------------------------------------------------------------
//
// Parsing `/2/instances?bulk=1` into `WireInstance`s and converting them allocates
// every NIC list, `hvparams` map and the flattened `beparams` only to drop them again:
// at 10k instances that made a sync take 1.6 times as long as the raw fetch and parse
// (benches/sync.rs). The records below name only the fields the inventory keeps
// (serde skips the others unparsed), borrow what they only compare, and turn into
// inventory items by moving strings. They are as lenient as the wire types; tests
// check both paths agree.

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

/// Job (and opcode) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Waiting,
    Canceling,
    Running,
    Canceled,
    Success,
    Error,
}

impl JobStatus {
    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Canceled | Self::Success | Self::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Canceling => "canceling",
            Self::Running => "running",
            Self::Canceled => "canceled",
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// `[seconds, microseconds]` as seconds since the epoch.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let raw: Option<(f64, f64)> = Option::deserialize(d)?;
    Ok(raw.map(|(s, us)| s + us / 1e6))
}

/// Ganeti sends `null` for absent lists and maps in places.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A job as `GET /2/jobs/<id>` (and, without results, `/2/jobs?bulk=1`) reports it.
///
/// Ganeti 3.0.2 answers an unknown job id with 200 and every field `null`: the
/// client turns that into `RapiError::NotFound`, so `status` is always present here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Job {
    pub id: u64,
    pub status: JobStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub summary: Vec<String>,
    /// Per opcode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub opstatus: Vec<JobStatus>,
    /// Per opcode: its result, or for a failed opcode `[error_type, [message, ecode]]`.
    /// Absent in bulk listings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub opresult: Vec<Value>,
    #[serde(default, deserialize_with = "timestamp")]
    pub received_ts: Option<f64>,
    #[serde(default, deserialize_with = "timestamp")]
    pub start_ts: Option<f64>,
    #[serde(default, deserialize_with = "timestamp")]
    pub end_ts: Option<f64>,
    /// Per opcode, as submitted; only the reason trail is kept of it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ops: Vec<JobOp>,
}

/// One opcode of a job: its reason trail, `[source, text, nanoseconds]` entries.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct JobOp {
    #[serde(default, deserialize_with = "null_as_default")]
    pub reason: Vec<Value>,
}

/// The reason trail source of the `reason=` a RAPI caller gave.
pub const REASON_SOURCE_USER: &str = "gnt:user";

impl Job {
    /// The `reason=` texts the job was submitted with (one per opcode that has one).
    pub fn user_reasons(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().flat_map(|op| {
            op.reason
                .iter()
                .filter_map(|entry| match entry.as_array()?.as_slice() {
                    [source, text, ..] if source.as_str() == Some(REASON_SOURCE_USER) => text.as_str(),
                    _ => None,
                })
        })
    }

    /// Why the job failed, when it did (error or canceled).
    pub fn failure(&self) -> Option<GanetiFailure> {
        match self.status {
            JobStatus::Error => {}
            JobStatus::Canceled => {
                return Some(GanetiFailure {
                    error_type: "JobCanceled".into(),
                    message: format!("job {} was canceled", self.id),
                    ecode: None,
                });
            }
            _ => return None,
        }
        let failed = self
            .opstatus
            .iter()
            .zip(&self.opresult)
            .find(|(s, _)| **s == JobStatus::Error)
            .and_then(|(_, r)| GanetiFailure::from_opresult(r));
        Some(failed.unwrap_or_else(|| GanetiFailure {
            error_type: "JobError".into(),
            message: format!("job {} failed: {}", self.id, Value::from(self.opresult.clone())),
            ecode: None,
        }))
    }

    /// The job if it succeeded, else `RapiError::JobFailed`.
    pub fn into_success(self) -> Result<Job, super::RapiError> {
        match self.failure() {
            Some(f) => Err(super::RapiError::JobFailed(f)),
            None => Ok(self),
        }
    }
}

/// A job as a filtered job query reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub id: u64,
    pub status: JobStatus,
    /// One entry per opcode, e.g. `INSTANCE_CREATE(vm1.example.org)`.
    pub summary: Vec<String>,
}

/// A job's status and when Ganeti received it, from a job query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobProgress {
    pub id: u64,
    pub status: JobStatus,
    /// Seconds since the epoch.
    pub received_ts: Option<f64>,
}

/// The value of field `i` of a query row (`Null` when absent or not available).
fn cell(row: &[Value], i: usize) -> Value {
    row.get(i)
        .and_then(|cell| cell.get(1))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Answer of `PUT /2/query/<resource>`: per row, per field, `[result status, value]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct QueryAnswer {
    #[serde(default)]
    pub data: Vec<Vec<Value>>,
}

impl QueryAnswer {
    /// Rows of a job query for the fields `id`, `status`, `summary`, in that order.
    pub(crate) fn job_summaries(self) -> Result<Vec<JobSummary>, super::RapiError> {
        let decode = |what: &str, e: serde_json::Error| super::RapiError::Decode {
            detail: format!("job query {what}: {e}"),
        };
        self.data
            .into_iter()
            .map(|row| {
                let field = |i: usize| cell(&row, i);
                Ok(JobSummary {
                    id: serde_json::from_value(field(0)).map_err(|e| decode("id", e))?,
                    status: serde_json::from_value(field(1)).map_err(|e| decode("status", e))?,
                    summary: serde_json::from_value(field(2)).unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl QueryAnswer {
    /// Rows of a job query for the fields `id`, `status`, `received_ts`, in that order.
    pub(crate) fn job_progress(self) -> Result<Vec<JobProgress>, super::RapiError> {
        #[derive(Deserialize)]
        struct Received(#[serde(deserialize_with = "timestamp")] Option<f64>);
        let decode = |what: &str, e: serde_json::Error| super::RapiError::Decode {
            detail: format!("job query {what}: {e}"),
        };
        self.data
            .into_iter()
            .map(|row| {
                let field = |i: usize| cell(&row, i);
                Ok(JobProgress {
                    id: serde_json::from_value(field(0)).map_err(|e| decode("id", e))?,
                    status: serde_json::from_value(field(1)).map_err(|e| decode("status", e))?,
                    received_ts: serde_json::from_value::<Received>(field(2))
                        .map(|r| r.0)
                        .unwrap_or(None),
                })
            })
            .collect()
    }

    /// Rows of a query for the single field `name`.
    pub(crate) fn names(self) -> Result<Vec<String>, super::RapiError> {
        self.data
            .into_iter()
            .map(|row| {
                serde_json::from_value(cell(&row, 0)).map_err(|e| super::RapiError::Decode {
                    detail: format!("query name: {e}"),
                })
            })
            .collect()
    }

    /// Counts of a job query for the single field `status`.
    pub(crate) fn status_counts(self) -> Result<BTreeMap<String, u32>, super::RapiError> {
        let mut counts = BTreeMap::new();
        for row in self.data {
            let status = cell(&row, 0);
            let status: JobStatus = serde_json::from_value(status).map_err(|e| super::RapiError::Decode {
                detail: format!("job query status: {e}"),
            })?;
            *counts.entry(status.as_str().to_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

/// Answer of `GET /2/jobs/<id>/wait` when something changed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobChange {
    /// The requested fields, in order (the client asks for `["status"]`).
    pub job_info: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub log_entries: Vec<Value>,
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

/// `POST /2/instances/<n>/reboot?type=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootType {
    Soft,
    Hard,
    Full,
}

impl RebootType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soft => "soft",
            Self::Hard => "hard",
            Self::Full => "full",
        }
    }
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

/// Map whose values stay out of Debug output (private and secret OS parameters).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretParams(pub BTreeMap<String, String>);

impl SecretParams {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// One disk of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DiskSpec {
    /// MiB.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vg: Option<String>,
}

/// One NIC of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NicSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Backend parameters of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BeParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minmem: Option<u64>,
}

impl BeParams {
    fn is_empty(&self) -> bool {
        self.vcpus.is_none() && self.maxmem.is_none() && self.minmem.is_none()
    }
}

/// Body of `POST /2/instances` (version 1, feature `instance-create-reqv1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceCreate {
    #[serde(rename = "__version__")]
    version: u8,
    mode: &'static str,
    pub instance_name: String,
    pub disk_template: String,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hvparams: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BeParams::is_empty")]
    pub beparams: BeParams,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub osparams: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "SecretParams::is_empty")]
    pub osparams_private: SecretParams,
    #[serde(skip_serializing_if = "SecretParams::is_empty")]
    pub osparams_secret: SecretParams,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_install: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_sync: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Always sent: Ganeti's defaults (resolve the name, ping the IP) must not decide.
    pub name_check: bool,
    pub ip_check: bool,
}

impl InstanceCreate {
    /// A create request with name and IP checks off; set the rest by field.
    pub fn new(instance_name: impl Into<String>, disk_template: impl Into<String>) -> Self {
        Self {
            version: 1,
            mode: "create",
            instance_name: instance_name.into(),
            disk_template: disk_template.into(),
            disks: Vec::new(),
            nics: Vec::new(),
            os_type: None,
            pnode: None,
            snode: None,
            iallocator: None,
            hypervisor: None,
            hvparams: BTreeMap::new(),
            beparams: BeParams::default(),
            osparams: BTreeMap::new(),
            osparams_private: SecretParams::default(),
            osparams_secret: SecretParams::default(),
            start: None,
            no_install: None,
            wait_for_sync: None,
            tags: Vec::new(),
            name_check: false,
            ip_check: false,
        }
    }
}

/// Body of `POST /2/instances/<n>/reinstall` (feature `instance-reinstall-reqv1`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct InstanceReinstall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub osparams: Option<BTreeMap<String, String>>,
}

/// Migration mode of `PUT /2/instances/<n>/migrate` (absent: the hypervisor's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MigrationMode {
    #[serde(rename = "live")]
    Live,
    #[serde(rename = "non-live")]
    NonLive,
}

/// Body of `PUT /2/instances/<n>/migrate` (opcode `OpInstanceMigrate`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InstanceMigrate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MigrationMode>,
    /// Clean up after a previously failed migration instead of migrating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    /// For externally mirrored (shared, diskless) instances: where to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
}

/// Body of `PUT /2/instances/<n>/modify` for a resize (opcode `OpInstanceSetParams`):
/// backend parameters only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InstanceResize {
    pub beparams: ResizeBeparams,
}

/// The backend parameters a resize sets. Memory is set as both `maxmem` and `minmem`,
/// as the operator creates VMs (no ballooning range).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ResizeBeparams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minmem: Option<u64>,
}

/// Ganeti's `replace-disks` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceDisksMode {
    /// Whichever side is faulty.
    ReplaceAuto,
    ReplaceOnPrimary,
    ReplaceOnSecondary,
    /// A new secondary node (`remote_node` or `iallocator` chooses it).
    ReplaceNewSecondary,
}

impl ReplaceDisksMode {
    pub const ALL: [Self; 4] = [
        Self::ReplaceAuto,
        Self::ReplaceOnPrimary,
        Self::ReplaceOnSecondary,
        Self::ReplaceNewSecondary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplaceAuto => "replace_auto",
            Self::ReplaceOnPrimary => "replace_on_primary",
            Self::ReplaceOnSecondary => "replace_on_secondary",
            Self::ReplaceNewSecondary => "replace_new_secondary",
        }
    }
}

/// Body of `POST /2/instances/<n>/replace-disks` (opcode `OpInstanceReplaceDisks`; a
/// body, not the legacy query arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceReplaceDisks {
    pub mode: ReplaceDisksMode,
    /// Disk indices; empty: all (Ganeti refuses a list with `replace_auto` and
    /// `replace_new_secondary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
}

/// Body of `PUT /2/instances/<n>/export` in mode `local` (opcode `OpBackupExport`; RAPI
/// renames `destination` to `target_node`). Remote exports need Ganeti's X509
/// handshake (`prepare-export`) and are not offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceExport {
    /// Always `local`.
    pub mode: &'static str,
    /// The node that keeps the export.
    pub destination: String,
    /// Shut the instance down first (Ganeti's default: yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<bool>,
    /// Sent as `false` always: removing the instance is `destroy`'s business.
    pub remove_instance: bool,
}

impl InstanceExport {
    pub fn local(destination: impl Into<String>, shutdown: Option<bool>) -> Self {
        Self {
            mode: "local",
            destination: destination.into(),
            shutdown,
            remove_instance: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_reason_trail_names_what_the_caller_gave() {
        // Recorded from the testbed: `GET /2/jobs/<id>` of a migrate with `reason=`.
        let job: Job = serde_json::from_str(
            r#"{"id": 6, "ops": [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "probe", "reason": [["gnt:user", "test migrate", 1795563899581329408], ["gnt:library:rlib2:instances_name_migrate", "", 1795563899581336064], ["gnt:opcode:instance_migrate", "job=6;index=0", 1795563899583681000]]}], "status": "error", "summary": ["INSTANCE_MIGRATE(probe)"], "opstatus": ["error"], "opresult": [["OpPrereqError", ["Can't compute nodes using iallocator 'hail'", "insufficient_resources"]]]}"#,
        )
        .unwrap();
        assert_eq!(job.user_reasons().collect::<Vec<_>>(), ["test migrate"]);
        // Jobs of the CLI carry no user reason; odd entries are skipped, not fatal.
        let cli: Job = serde_json::from_value(json!({"id": 4, "status": "success",
            "ops": [{"reason": [["gnt:opcode:node_add", "job=4;index=0", 1]]}, {"reason": null}, {"reason": [["gnt:user"], 7]}]}))
        .unwrap();
        assert_eq!(cli.user_reasons().count(), 0);
    }

    #[test]
    fn action_bodies_as_ganeti_reads_them() {
        let migrate = InstanceMigrate {
            mode: Some(MigrationMode::NonLive),
            cleanup: None,
            target_node: Some("node2".into()),
        };
        assert_eq!(
            serde_json::to_value(&migrate).unwrap(),
            json!({"mode": "non-live", "target_node": "node2"})
        );
        let replace = InstanceReplaceDisks {
            mode: ReplaceDisksMode::ReplaceOnSecondary,
            disks: vec![0, 2],
            remote_node: None,
            iallocator: None,
        };
        assert_eq!(
            serde_json::to_value(&replace).unwrap(),
            json!({"mode": "replace_on_secondary", "disks": [0, 2]})
        );
        for mode in ReplaceDisksMode::ALL {
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        assert_eq!(
            serde_json::to_value(InstanceExport::local("node2", Some(false))).unwrap(),
            json!({"mode": "local", "destination": "node2", "shutdown": false, "remove_instance": false})
        );
    }

    #[test]
    fn job_query_rows() {
        // Recorded from the testbed: `PUT /2/query/job` with a status filter.
        let answer: QueryAnswer = serde_json::from_str(
            r#"{"data": [[[0, 1778], [0, "queued"], [0, ["INSTANCE_CREATE(qtest.ganeti.test)"]]]], "fields": [{"name": "id", "title": "ID", "kind": "number", "doc": "Job ID"}, {"name": "status", "title": "Status", "kind": "text", "doc": "Job status"}, {"name": "summary", "title": "Summary", "kind": "other", "doc": "List of per-opcode summaries"}]}"#,
        )
        .unwrap();
        assert_eq!(
            answer.job_summaries().unwrap(),
            vec![JobSummary {
                id: 1778,
                status: JobStatus::Queued,
                summary: vec!["INSTANCE_CREATE(qtest.ganeti.test)".into()],
            }]
        );
        let broken: QueryAnswer =
            serde_json::from_value(json!({"data": [[[0, "x"], [0, "queued"], [0, []]]]})).unwrap();
        assert!(broken.job_summaries().is_err());
        let statuses: QueryAnswer = serde_json::from_str(
            r#"{"data": [[[0, "success"]], [[0, "success"]], [[0, "error"]]], "fields": [{"name": "status"}]}"#,
        )
        .unwrap();
        assert_eq!(
            statuses.status_counts().unwrap(),
            BTreeMap::from([("error".to_string(), 1), ("success".to_string(), 2)])
        );
    }

    // Trimmed answers of the Ganeti 3.0.2 testbed.
    const INSTANCES: &str = r#"[{"name": "probe1.ganeti.test", "admin_state": "up", "os": "noop", "pnode": "node1.ganeti.test", "snodes": [], "disk_template": "diskless", "nic.ips": ["198.51.100.99"], "nic.macs": ["aa:00:00:2f:e7:87"], "nic.modes": ["routed"], "nic.uuids": ["51fe46ce-6661-4315-b343-8dd38bf4b683"], "nic.names": [null], "nic.links": [""], "nic.networks": [null], "nic.networks.names": [null], "nic.bridges": [null], "network_port": null, "disk.sizes": [], "disk.spindles": [], "disk_usage": 0, "disk.uuids": [], "disk.names": [], "beparams": {"minmem": 128, "maxmem": 128, "vcpus": 1, "auto_balance": true, "always_failover": false, "spindle_use": 1, "memory": 128}, "hvparams": {}, "oper_state": true, "oper_ram": 128, "oper_vcpus": 1, "status": "running", "custom_hvparams": {}, "custom_beparams": {"minmem": 128, "maxmem": 128, "vcpus": 1}, "custom_nicparams": [{}], "ctime": 1795541331.996601, "mtime": 1795541332.2330883, "uuid": "904d2888-beac-412d-a393-ef6ad505e7f2", "serial_no": 2, "tags": ["a:b"]},
        {"name": "kvm1.ganeti.test", "admin_state": "down", "os": "noop", "pnode": "node1.ganeti.test", "snodes": ["node2.ganeti.test"], "disk_template": "drbd", "nic.ips": [null, "198.51.100.60"], "nic.macs": ["aa:00:00:00:00:01", "aa:00:00:00:00:02"], "nic.modes": ["bridged", "routed"], "nic.links": ["br0", ""], "network_port": 11000, "disk.sizes": [1024, 2048], "disk_usage": 3328, "beparams": {"maxmem": 2048, "minmem": 1024, "vcpus": 2}, "hvparams": {"vnc_bind_address": "0.0.0.0", "kernel_path": ""}, "oper_state": null, "oper_ram": null, "oper_vcpus": null, "status": "ADMIN_down", "ctime": 1795541331.5, "tags": []}]"#;
    const NODES: &str = r#"[{"name": "node1.ganeti.test", "offline": false, "master_candidate": true, "drained": false, "dtotal": null, "dfree": null, "sptotal": null, "spfree": null, "mtotal": 24105, "mnode": 1351, "mfree": 23491, "pinst_cnt": 0, "sinst_cnt": 0, "ctotal": 2, "cnos": 2, "cnodes": 1, "csockets": 1, "pip": "198.51.100.10", "sip": "198.51.100.10", "role": "M", "pinst_list": [], "sinst_list": [], "master_capable": true, "vm_capable": true, "ndparams": {"oob_program": "", "spindle_count": 1}, "group.uuid": "557cabb3-3d53-488c-a93d-a2e903431d7e", "ctime": 1795541317.5783312, "mtime": 1795541317.5783312, "uuid": "8b14cfb1-a886-4c1d-89af-77919c71f8cd", "serial_no": 1, "tags": []},
        {"name": "node2.ganeti.test", "offline": true, "drained": null, "role": "O", "mtotal": null, "mfree": null, "dtotal": 102400, "dfree": 51200, "pinst_cnt": 0, "sinst_cnt": 1, "pip": "198.51.100.11", "group.uuid": null, "tags": null}]"#;
    const INFO: &str = r#"{"software_version": "3.0.2", "protocol_version": 3000000, "config_version": 3000000, "os_api_version": 20, "name": "cluster.ganeti.test", "master": "node1.ganeti.test", "default_hypervisor": "fake", "enabled_hypervisors": ["fake", "kvm"], "hvparams": {"fake": {"migration_mode": "live"}}, "beparams": {"default": {"minmem": 128, "maxmem": 128, "vcpus": 1}}, "candidate_pool_size": 10, "volume_group_name": null, "uuid": "048bb0c0-89b3-4b9a-8d21-8fc884007067", "tags": [], "enabled_disk_templates": ["diskless"]}"#;
    #[test]
    fn job_progress_rows_parse() {
        let answer: QueryAnswer = serde_json::from_value(json!({
            "fields": [],
            "data": [
                [[0, 7], [0, "running"], [0, [1795541331, 500000]]],
                [[0, 8], [0, "success"], [0, null]],
            ]
        }))
        .unwrap();
        let rows = answer.job_progress().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, rows[0].status), (7, JobStatus::Running));
        assert_eq!(rows[0].received_ts, Some(1795541331.5));
        assert_eq!(
            (rows[1].id, rows[1].status, rows[1].received_ts),
            (8, JobStatus::Success, None)
        );
    }

    const JOB_OK: &str = r#"{"id": 2, "ops": [{"OP_ID": "OP_INSTANCE_CREATE"}], "status": "success", "summary": ["INSTANCE_CREATE(probe1.ganeti.test)"], "opstatus": ["success"], "received_ts": [1795541331, 727868], "start_ts": [1795541331, 866993], "end_ts": [1795541332, 302401], "oplog": [[[1, [1795541331, 992744], "message", "* creating instance disks..."]]], "opresult": [["node1.ganeti.test"]]}"#;
    const JOB_FAILED: &str = r#"{"id": 3, "status": "error", "summary": ["INSTANCE_CREATE(probe1.ganeti.test)"], "opstatus": ["error"], "received_ts": [1795541340, 942454], "start_ts": [1795541341, 79335], "end_ts": [1795541341, 84994], "oplog": [[]], "opresult": [["OpPrereqError", ["Instance 'probe1.ganeti.test' is already in the cluster", "already_exists"]]]}"#;
    const JOBS_BULK: &str = r#"[{"id": 1, "ops": [{"OP_ID": "OP_CLUSTER_POST_INIT"}], "status": "success", "summary": ["CLUSTER_POST_INIT"], "opstatus": ["success"], "received_ts": [1795541319, 859656], "start_ts": [1795541320, 5618], "end_ts": [1795541320, 45064]},
        {"id": 4, "status": "running", "summary": ["INSTANCE_STARTUP(x)"], "opstatus": ["running"], "received_ts": [1795541319, 0], "start_ts": [1795541320, 0], "end_ts": null}]"#;

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
    fn info_converts_into_cluster_facts() {
        let info: Info = serde_json::from_str(INFO).unwrap();
        let facts = inventory::ClusterFacts::from(info);
        assert_eq!(facts.name, "cluster.ganeti.test");
        assert_eq!(facts.master, "node1.ganeti.test");
        assert_eq!(facts.software_version, "3.0.2");
        assert_eq!(facts.default_hypervisor, "fake");
        assert_eq!(facts.enabled_hypervisors, vec!["fake", "kvm"]);
    }

    #[test]
    fn jobs_parse_with_results_and_failures() {
        let ok: Job = serde_json::from_str(JOB_OK).unwrap();
        assert_eq!(ok.status, JobStatus::Success);
        assert_eq!(ok.opresult, vec![json!(["node1.ganeti.test"])]);
        assert!((ok.end_ts.unwrap() - 1795541332.302401).abs() < 1e-6);
        assert_eq!(ok.failure(), None);
        assert!(ok.into_success().is_ok());

        let failed: Job = serde_json::from_str(JOB_FAILED).unwrap();
        let f = failed.failure().unwrap();
        assert_eq!(f.error_type, "OpPrereqError");
        assert_eq!(f.ecode, Some(super::super::ErrorCode::AlreadyExists));
        assert!(matches!(
            failed.into_success(),
            Err(super::super::RapiError::JobFailed(_))
        ));

        let bulk: Vec<Job> = serde_json::from_str(JOBS_BULK).unwrap();
        assert_eq!(bulk[1].status, JobStatus::Running);
        assert!(!bulk[1].status.is_final());
        assert_eq!(bulk[1].end_ts, None);
        assert!(bulk[1].opresult.is_empty());

        // An unknown id: Ganeti 3.0.2 answers 200 with nulls; this must not parse as a job.
        let unknown = r#"{"id": 9999, "ops": null, "status": null, "summary": null, "opstatus": null, "received_ts": null, "start_ts": null, "end_ts": null, "oplog": null, "opresult": null}"#;
        assert!(serde_json::from_str::<Job>(unknown).is_err());
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

    #[test]
    fn job_ids_are_numbers_or_strings() {
        assert_eq!(serde_json::from_str::<JobId>("2").unwrap(), JobId(2));
        assert_eq!(serde_json::from_str::<JobId>("\"17\"").unwrap(), JobId(17));
        assert!(serde_json::from_str::<JobId>("\"x\"").is_err());
    }

    #[test]
    fn create_bodies_skip_nones_and_always_carry_the_checks() {
        let mut req = InstanceCreate::new("vm1.ganeti.test", "diskless");
        req.nics.push(NicSpec {
            ip: Some("198.51.100.80".into()),
            ..Default::default()
        });
        req.os_type = Some("noop".into());
        req.osparams
            .insert("ssh_authorized_keys".into(), "ssh-ed25519 AAAA".into());
        req.osparams_secret
            .0
            .insert("root_password".into(), "hunter2".into());
        req.tags = vec!["a:b".into()];
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "__version__": 1, "mode": "create", "instance_name": "vm1.ganeti.test",
                "disk_template": "diskless", "disks": [], "nics": [{"ip": "198.51.100.80"}],
                "os_type": "noop", "osparams": {"ssh_authorized_keys": "ssh-ed25519 AAAA"},
                "osparams_secret": {"root_password": "hunter2"},
                "tags": ["a:b"], "name_check": false, "ip_check": false
            })
        );
        assert!(!format!("{req:?}").contains("hunter2"));
    }

    #[test]
    fn node_role_names_round_trip() {
        for role in NodeRole::ALL {
            assert_eq!(parse_node_role_name(node_role_name(role)), Some(role));
        }
    }
}
