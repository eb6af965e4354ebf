//! `meta.k8s.io/v1` Tables: what `kubectl get` prints. The server renders the cells
//! (as the API server does for its own kinds), `now` passed in for the age column.

use super::objects::{GanetiInstance, GanetiJob, GanetiNode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::Value;
use std::borrow::Cow;

/// One column: name, type, priority (1: only with `-o wide`) and what it shows.
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

const fn col(name: &'static str, kind: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind,
        priority,
        description,
    }
}

/// What the rows carry besides the cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(format!("includeObject {other:?}: one of None, Metadata, Object")),
        }
    }
}

/// An object `kubectl get` can print.
pub trait Row: Serialize {
    fn columns() -> &'static [Column];
    /// Borrowed where the object holds one; the catalog's VMs make theirs.
    fn metadata(&self) -> Cow<'_, ObjectMeta>;
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Cell<'_>>;
    /// Writes the object's row (`{"cells":[...],"object":...}`) as [`Table`] serialises
    /// it; an object that keeps its row pre-rendered copies it instead.
    fn write_row(
        &self,
        out: &mut Vec<u8>,
        include: IncludeObject,
        now: k8s_openapi::jiff::Timestamp,
    ) -> serde_json::Result<()>
    where
        Self: Sized,
    {
        serde_json::to_writer(
            out,
            &TableRow {
                object: self,
                include,
                now,
            },
        )
    }
}

/// One cell of a row, borrowed from the object where it has it as is; sizes and ages
/// are formatted on the stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    String(String),
    Bool(bool),
    Int(u64),
    /// A size in MiB: `2Gi` when whole GiB, else `512Mi`.
    Mib(u64),
    /// The time since, as [`age`] writes it.
    Age(Option<&'a Time>, k8s_openapi::jiff::Timestamp),
}

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => s.serialize_unit(),
            Cell::Str(v) => s.serialize_str(v),
            Cell::String(v) => s.serialize_str(v),
            Cell::Bool(v) => s.serialize_bool(*v),
            Cell::Int(v) => s.serialize_u64(*v),
            Cell::Mib(n) => short(s, Mib(*n)),
            Cell::Age(since, now) => short(s, Age(*since, *now)),
        }
    }
}

/// Serialises a short text (a size, an age) formatted on the stack.
fn short<S: Serializer>(s: S, value: impl std::fmt::Display) -> Result<S::Ok, S::Error> {
    use std::fmt::Write as _;
    struct Buffer {
        bytes: [u8; 32],
        len: usize,
    }
    impl std::fmt::Write for Buffer {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(std::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut buffer = Buffer {
        bytes: [0; 32],
        len: 0,
    };
    match write!(buffer, "{value}") {
        Ok(()) => s.serialize_str(std::str::from_utf8(&buffer.bytes[..buffer.len]).unwrap_or_default()),
        Err(_) => s.serialize_str(&value.to_string()),
    }
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Cell::Null, Cell::Str)
    }
}

/// The Table of `objects`; column definitions only when `with_columns` (a watch sends
/// them with its first event only, as the API server does).
pub fn table<'a, T: Row + 'a>(
    objects: impl IntoIterator<Item = &'a T>,
    include: IncludeObject,
    resource_version: Option<String>,
    with_columns: bool,
    now: k8s_openapi::jiff::Timestamp,
) -> Value {
    serde_json::to_value(Table::new(objects, include, resource_version, with_columns, now))
        .unwrap_or(Value::Null)
}

/// A Table over borrowed objects, serialised as it is written out: a list of 10k
/// objects makes no `Value` tree (building and freeing one cost most of such a list).
/// [`table`] is the same as a `Value`.
pub struct Table<'a, T> {
    objects: Vec<&'a T>,
    include: IncludeObject,
    resource_version: Option<String>,
    with_columns: bool,
    now: k8s_openapi::jiff::Timestamp,
}

impl<'a, T: Row + 'a> Table<'a, T> {
    pub fn new(
        objects: impl IntoIterator<Item = &'a T>,
        include: IncludeObject,
        resource_version: Option<String>,
        with_columns: bool,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Self {
        Self {
            objects: objects.into_iter().collect(),
            include,
            resource_version,
            with_columns,
            now,
        }
    }
}

impl<T: Row> Table<'_, T> {
    /// The Table's JSON, as `serde_json::to_vec` writes it, each row by
    /// [`Row::write_row`] (so pre-rendered rows are copied).
    pub fn to_vec(&self) -> serde_json::Result<Vec<u8>> {
        // The Table without rows ends in `[]}`: the rows go between the brackets.
        let empty = Table::<T> {
            objects: Vec::new(),
            include: self.include,
            resource_version: self.resource_version.clone(),
            with_columns: self.with_columns,
            now: self.now,
        };
        let mut out = serde_json::to_vec(&empty)?;
        debug_assert!(out.ends_with(b"[]}"));
        out.truncate(out.len() - 2);
        for (n, o) in self.objects.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let before = out.len();
            o.write_row(&mut out, self.include, self.now)?;
            if n == 0 {
                // Rows are alike in size: reserve for all at once rather than copy a
                // 10k-row Table (~6 MB) through a dozen doublings.
                let room = (out.len() - before + 1) * (self.objects.len() - 1) * 9 / 8;
                out.reserve(room);
            }
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

impl<T: Row> Serialize for Table<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            resource_version: Option<&'a str>,
        }
        let mut t = s.serialize_struct("Table", 5)?;
        t.serialize_field("kind", "Table")?;
        t.serialize_field("apiVersion", "meta.k8s.io/v1")?;
        t.serialize_field(
            "metadata",
            &Metadata {
                resource_version: self.resource_version.as_deref(),
            },
        )?;
        t.serialize_field(
            "columnDefinitions",
            &Columns::<T>(self.with_columns, std::marker::PhantomData),
        )?;
        t.serialize_field("rows", &Rows(self))?;
        t.end()
    }
}

/// The column definitions of `T`, or none.
struct Columns<T>(bool, std::marker::PhantomData<T>);

impl<T: Row> Serialize for Columns<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Definition {
            name: &'static str,
            #[serde(rename = "type")]
            kind: &'static str,
            format: &'static str,
            description: &'static str,
            priority: u8,
        }
        let columns = if self.0 { T::columns() } else { &[] };
        s.collect_seq(columns.iter().map(|c| Definition {
            name: c.name,
            kind: c.kind,
            format: if c.name == "Name" { "name" } else { "" },
            description: c.description,
            priority: c.priority,
        }))
    }
}

/// The rows: cells, and the object as `?includeObject=` asks.
struct Rows<'t, 'a, T>(&'t Table<'a, T>);

impl<T: Row> Serialize for Rows<'_, '_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        s.collect_seq(t.objects.iter().map(|o| TableRow {
            object: *o,
            include: t.include,
            now: t.now,
        }))
    }
}

/// `object` of a row with `?includeObject=Metadata`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartialObjectMetadata<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: &'a ObjectMeta,
}

impl<'a> PartialObjectMetadata<'a> {
    pub(super) fn of(metadata: &'a ObjectMeta) -> Self {
        Self {
            kind: "PartialObjectMetadata",
            api_version: "meta.k8s.io/v1",
            metadata,
        }
    }
}

/// One row of one object.
struct TableRow<'a, T> {
    object: &'a T,
    include: IncludeObject,
    now: k8s_openapi::jiff::Timestamp,
}

impl<T: Row> Serialize for TableRow<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut r = s.serialize_struct("TableRow", 2)?;
        r.serialize_field("cells", &self.object.cells(self.now))?;
        match self.include {
            IncludeObject::None => r.serialize_field("object", &())?,
            IncludeObject::Metadata => {
                r.serialize_field("object", &PartialObjectMetadata::of(&self.object.metadata()))?
            }
            IncludeObject::Object => r.serialize_field("object", self.object)?,
        }
        r.end()
    }
}

/// Kubernetes' short age: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn age(since: Option<&Time>, now: k8s_openapi::jiff::Timestamp) -> String {
    Age(since, now).to_string()
}

struct Age<'a>(Option<&'a Time>, k8s_openapi::jiff::Timestamp);

impl std::fmt::Display for Age<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(since) = self.0 else {
            return f.write_str("<unknown>");
        };
        let secs = (self.1.as_second() - since.0.as_second()).max(0);
        match secs {
            s if s < 120 => write!(f, "{s}s"),
            s if s < 3 * 3600 => write!(f, "{}m", s / 60),
            s if s < 2 * 86400 => write!(f, "{}h", s / 3600),
            s if s < 2 * 365 * 86400 => write!(f, "{}d", s / 86400),
            s => write!(f, "{}y", s / (365 * 86400)),
        }
    }
}

/// A size in MiB: `2Gi` when whole GiB, else `512Mi`.
struct Mib(u64);

impl std::fmt::Display for Mib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        if n >= 1024 && n.is_multiple_of(1024) {
            write!(f, "{}Gi", n / 1024)
        } else {
            write!(f, "{n}Mi")
        }
    }
}

impl Row for GanetiInstance {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            col("Name", "string", 0, "<GanetiCluster>.<instance name>"),
            col("Cluster", "string", 0, "The GanetiCluster"),
            col("State", "string", 0, "Ganeti's instance status"),
            col("Node", "string", 0, "The primary node"),
            col("Owner", "string", 0, "The owner, from the owner tag"),
            col("Locked", "boolean", 0, "Admin lock"),
            col("Age", "string", 0, "Since Ganeti created it"),
            col("IPs", "string", 1, "IP addresses of the NICs"),
            col("vCPUs", "integer", 1, "Virtual CPUs"),
            col("Memory", "string", 1, "Memory"),
            col("Disk", "string", 1, "Sum of the disk sizes"),
            col("OS", "string", 1, "OS definition"),
            col("UUID", "string", 1, "Ganeti's instance UUID"),
            col(
                "Reboot",
                "boolean",
                1,
                "A change waits for the VM's next reboot (ganetimgr's needsreboot tag)",
            ),
        ];
        C
    }
    fn metadata(&self) -> Cow<'_, ObjectMeta> {
        Cow::Borrowed(&self.metadata)
    }
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Cell<'_>> {
        let s = &self.status;
        instance_cells(InstanceCells {
            name: self.metadata.name.as_deref(),
            cluster: &self.spec.cluster,
            state: &s.state,
            node: &s.primary_node,
            owner: s.owner.as_ref().map(|o| (o.kind, o.name.as_str())),
            locked: s.locked,
            created: self.metadata.creation_timestamp.as_ref(),
            ips: &s.ips,
            vcpus: s.vcpus,
            memory_mib: s.memory_mib,
            disk_mib: s.disk_mib,
            os: &s.os,
            uuid: &s.uuid,
            needs_reboot: s.needs_reboot,
            now,
        })
    }
}

/// What a VM's row shows, from either form of it (the object, the catalog's record).
pub(super) struct InstanceCells<'a, S> {
    pub name: Option<&'a str>,
    pub cluster: &'a str,
    pub state: &'a str,
    pub node: &'a str,
    pub owner: Option<(crate::api::common::SubjectKind, &'a str)>,
    pub locked: bool,
    pub created: Option<&'a Time>,
    pub ips: &'a [S],
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub os: &'a str,
    pub uuid: &'a str,
    pub needs_reboot: bool,
    pub now: k8s_openapi::jiff::Timestamp,
}

/// The position of the age among a VM's cells: the one cell that changes with time.
pub(super) const INSTANCE_AGE_CELL: usize = 6;

pub(super) fn instance_cells<S: AsRef<str>>(c: InstanceCells<'_, S>) -> Vec<Cell<'_>> {
    let owner = match c.owner {
        Some((crate::api::common::SubjectKind::User, name)) => Cell::Str(name),
        Some((crate::api::common::SubjectKind::Group, name)) => Cell::String(format!("group:{name}")),
        None => Cell::Str("<none>"),
    };
    vec![
        c.name.into(),
        Cell::Str(c.cluster),
        Cell::Str(c.state),
        Cell::Str(c.node),
        owner,
        Cell::Bool(c.locked),
        Cell::Age(c.created, c.now),
        match c.ips {
            [] => Cell::Str("<none>"),
            [ip] => Cell::Str(ip.as_ref()),
            ips => Cell::String(ips.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",")),
        },
        Cell::Int(c.vcpus.into()),
        Cell::Mib(c.memory_mib),
        Cell::Mib(c.disk_mib),
        Cell::Str(c.os),
        Cell::Str(c.uuid),
        Cell::Bool(c.needs_reboot),
    ]
}

impl Row for GanetiNode {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            col("Name", "string", 0, "<GanetiCluster>.<node name>"),
            col("Cluster", "string", 0, "The GanetiCluster"),
            col(
                "Role",
                "string",
                0,
                "master, candidate, regular, drained or offline",
            ),
            col("Instances", "integer", 0, "Primary instances"),
            col("Memory Free", "string", 0, "Free memory"),
            col("Disk Free", "string", 0, "Free disk"),
            col("CPUs", "integer", 1, "CPUs"),
            col("Memory", "string", 1, "Total memory"),
            col("Disk", "string", 1, "Total disk"),
            col("Secondaries", "integer", 1, "Secondary instances"),
            col("Group", "string", 1, "Node group"),
        ];
        C
    }
    fn metadata(&self) -> Cow<'_, ObjectMeta> {
        Cow::Borrowed(&self.metadata)
    }
    fn cells(&self, _now: k8s_openapi::jiff::Timestamp) -> Vec<Cell<'_>> {
        let s = &self.status;
        vec![
            self.metadata.name.as_deref().into(),
            Cell::Str(&self.spec.cluster),
            Cell::Str(&s.role),
            Cell::Int(s.primary_instances.into()),
            Cell::Mib(s.memory_free_mib),
            Cell::Mib(s.disk_free_mib),
            Cell::Int(s.cpus.into()),
            Cell::Mib(s.memory_total_mib),
            Cell::Mib(s.disk_total_mib),
            Cell::Int(s.secondary_instances.into()),
            Cell::Str(s.group.as_deref().unwrap_or_default()),
        ]
    }
}

impl Row for GanetiJob {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            col("Name", "string", 0, "<GanetiCluster>.<job id>"),
            col("Cluster", "string", 0, "The GanetiCluster"),
            col("State", "string", 0, "Job status"),
            col("Summary", "string", 0, "Its opcodes"),
            col("Submitter", "string", 0, "From the reason trail"),
            col("Age", "string", 0, "Since Ganeti received it"),
            col("Failure", "string", 1, "Why it failed"),
        ];
        C
    }
    fn metadata(&self) -> Cow<'_, ObjectMeta> {
        Cow::Borrowed(&self.metadata)
    }
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Cell<'_>> {
        let s = &self.status;
        vec![
            self.metadata.name.as_deref().into(),
            Cell::Str(&self.spec.cluster),
            Cell::Str(&s.state),
            Cell::String(s.summary.join(",")),
            Cell::Str(s.submitter.as_deref().unwrap_or("<none>")),
            Cell::Age(s.received.as_ref(), now),
            Cell::Str(s.failure.as_deref().unwrap_or_default()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterInventory, Instance};

    #[test]
    fn a_table_has_one_cell_per_column_and_metadata_rows() {
        let inventory = ClusterInventory {
            cluster: "lab".into(),
            ..Default::default()
        };
        let vm = Instance {
            name: "vm1".into(),
            status: "running".into(),
            memory_mib: 2048,
            ctime: Some(1000.0),
            ..Default::default()
        };
        let o = GanetiInstance::from_inventory(&inventory, &vm);
        let now = k8s_openapi::jiff::Timestamp::from_second(1000 + 3 * 86400).unwrap();
        let t = table([&o], IncludeObject::Metadata, Some("7".into()), true, now);
        let columns = t["columnDefinitions"].as_array().unwrap();
        let cells = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(columns.len(), cells.len());
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "lab.vm1");
        assert_eq!(cells[6], "3d");
        assert_eq!(cells[9], "2Gi");
        // Written out directly, it is the same document.
        let bytes = serde_json::to_vec(&Table::new(
            [&o],
            IncludeObject::Metadata,
            Some("7".into()),
            true,
            now,
        ))
        .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), t);
        let without = table([&o], IncludeObject::None, None, false, now);
        assert!(without["columnDefinitions"].as_array().unwrap().is_empty());
        assert!(without["rows"][0]["object"].is_null());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let now = k8s_openapi::jiff::Timestamp::from_second(10_000_000).unwrap();
        assert_eq!(age(Some(&t(10_000_000 - 30)), now), "30s");
        assert_eq!(age(Some(&t(10_000_000 - 600)), now), "10m");
        assert_eq!(age(Some(&t(10_000_000 - 5 * 3600)), now), "5h");
        assert_eq!(age(None, now), "<unknown>");
    }
}
