//! `meta.k8s.io/v1` Tables: what `kubectl get` prints. The server renders the cells
//! (as the API server does for its own kinds), `now` passed in for the age column.

use super::objects::{GanetiInstance, GanetiJob, GanetiNode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;
use serde_json::{Value, json};

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
    fn metadata(&self) -> &ObjectMeta;
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Value>;
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
    let columns: Vec<Value> = if with_columns {
        T::columns()
            .iter()
            .map(|c| {
                let format = if c.name == "Name" { "name" } else { "" };
                json!({"name": c.name, "type": c.kind, "format": format, "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.metadata(),
                }),
                IncludeObject::Object => serde_json::to_value(o).unwrap_or(Value::Null),
            };
            json!({"cells": o.cells(now), "object": object})
        })
        .collect();
    let mut metadata = serde_json::Map::new();
    if let Some(rv) = resource_version {
        metadata.insert("resourceVersion".into(), Value::String(rv));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Kubernetes' short age: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn age(since: Option<&Time>, now: k8s_openapi::jiff::Timestamp) -> String {
    let Some(since) = since else {
        return "<unknown>".into();
    };
    let secs = (now.as_second() - since.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

fn mib(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}Gi", n / 1024)
    } else {
        format!("{n}Mi")
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
        ];
        C
    }
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Value> {
        let s = &self.status;
        let owner = s
            .owner
            .as_ref()
            .map(|o| match o.kind {
                crate::api::common::SubjectKind::User => o.name.clone(),
                crate::api::common::SubjectKind::Group => format!("group:{}", o.name),
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            json!(self.metadata.name),
            json!(self.spec.cluster),
            json!(s.state),
            json!(s.primary_node),
            json!(owner),
            json!(s.locked),
            json!(age(self.metadata.creation_timestamp.as_ref(), now)),
            json!(if s.ips.is_empty() {
                "<none>".to_string()
            } else {
                s.ips.join(",")
            }),
            json!(s.vcpus),
            json!(mib(s.memory_mib)),
            json!(mib(s.disk_mib)),
            json!(s.os),
            json!(s.uuid),
        ]
    }
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
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, _now: k8s_openapi::jiff::Timestamp) -> Vec<Value> {
        let s = &self.status;
        vec![
            json!(self.metadata.name),
            json!(self.spec.cluster),
            json!(s.role),
            json!(s.primary_instances),
            json!(mib(s.memory_free_mib)),
            json!(mib(s.disk_free_mib)),
            json!(s.cpus),
            json!(mib(s.memory_total_mib)),
            json!(mib(s.disk_total_mib)),
            json!(s.secondary_instances),
            json!(s.group.clone().unwrap_or_default()),
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
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Value> {
        let s = &self.status;
        vec![
            json!(self.metadata.name),
            json!(self.spec.cluster),
            json!(s.state),
            json!(s.summary.join(",")),
            json!(s.submitter.clone().unwrap_or_else(|| "<none>".into())),
            json!(age(s.received.as_ref(), now)),
            json!(s.failure.clone().unwrap_or_default()),
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
