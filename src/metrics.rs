//! The operator's Prometheus metrics.
//!
//! Controller and RAPI metrics live in a `prometheus` registry. Inventory metrics (per
//! cluster, node and instance) are rendered straight from the shared inventory at
//! scrape time: at 10k instances that is ~50k series, which as registry gauges would
//! need hashing on every sync and bookkeeping to delete vanished series; rendered from
//! the snapshot they are always exactly what the last sync saw, and cost nothing between
//! scrapes.

use crate::inventory::{ClusterInventory, Instance, Inventory, NodeRole};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::fmt::Write as _;

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    inventory: Inventory,
    /// Build information (value always 1), labelled with the version.
    pub build_info: IntGauge,
    /// HTTP requests served, by route and status class.
    pub http_requests: IntCounterVec,
    /// Reconciliations run, by controller.
    pub reconciles: IntCounterVec,
    /// Reconciliations that failed, by controller and bounded error category.
    pub reconcile_errors: IntCounterVec,
    /// Reconciliation duration, by controller.
    pub reconcile_duration: HistogramVec,
    /// RAPI request duration, by operation and outcome category.
    pub rapi_duration: HistogramVec,
    /// Status writes to the API server, by controller (0 on an unchanged pass).
    pub status_writes: IntCounterVec,
}

impl Metrics {
    pub fn new(inventory: Inventory) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new(
                "ganeti_operator_build_info",
                "Build information of the running operator; always 1.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_http_requests_total",
                "HTTP requests served, by route and status class.",
            ),
            &["route", "code"],
        )?;
        let reconciles = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_reconciles_total",
                "Reconciliations run, by controller.",
            ),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_reconcile_errors_total",
                "Reconciliations that failed, by controller and error category.",
            ),
            &["controller", "category"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "ganeti_operator_reconcile_duration_seconds",
                "Time spent in one reconciliation, by controller.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["controller"],
        )?;
        let rapi_duration = HistogramVec::new(
            HistogramOpts::new(
                "ganeti_operator_rapi_request_duration_seconds",
                "Ganeti RAPI request duration, by operation and outcome.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation", "outcome"],
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_status_writes_total",
                "Status writes to the Kubernetes API server, by controller.",
            ),
            &["controller"],
        )?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(rapi_duration.clone()))?;
        Ok(Self {
            registry,
            inventory,
            build_info,
            http_requests,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            rapi_duration,
            status_writes,
        })
    }

    /// Everything in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(64 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        render_inventory(&self.inventory.all(), &mut text);
        text
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One sample line: `name{k="v",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    let _ = write!(out, "{value}");
    out.push('\n');
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Appends the inventory metrics. Each family is written whole (all clusters), as the
/// text format requires one block per family.
pub fn render_inventory(clusters: &[std::sync::Arc<ClusterInventory>], out: &mut String) {
    header(
        out,
        "ganeti_cluster_up",
        "Whether the last read of the cluster's RAPI succeeded (1) or not (0).",
    );
    for c in clusters {
        sample(
            out,
            "ganeti_cluster_up",
            &[("cluster", &c.cluster)],
            f64::from(u8::from(c.reachable)),
        );
    }
    header(
        out,
        "ganeti_cluster_info",
        "Ganeti version and master node of the cluster; always 1.",
    );
    for c in clusters {
        let labels = [
            ("cluster", c.cluster.as_str()),
            ("version", c.facts.software_version.as_str()),
            ("master", c.facts.master.as_str()),
        ];
        sample(out, "ganeti_cluster_info", &labels, 1.0);
    }
    header(
        out,
        "ganeti_cluster_jobs",
        "Jobs in the cluster's queue, by status.",
    );
    for c in clusters {
        for (status, count) in &c.jobs_by_status {
            sample(
                out,
                "ganeti_cluster_jobs",
                &[("cluster", &c.cluster), ("status", status)],
                f64::from(*count),
            );
        }
    }

    type NodeField = fn(&crate::inventory::Node) -> f64;
    const MIB: f64 = 1024.0 * 1024.0;
    let node_gauges: [(&str, &str, NodeField); 9] = [
        (
            "ganeti_node_memory_total_bytes",
            "Physical memory of the node.",
            |n| n.memory_total_mib as f64 * MIB,
        ),
        ("ganeti_node_memory_free_bytes", "Free memory of the node.", |n| {
            n.memory_free_mib as f64 * MIB
        }),
        (
            "ganeti_node_disk_total_bytes",
            "Disk space of the node for instances.",
            |n| n.disk_total_mib as f64 * MIB,
        ),
        (
            "ganeti_node_disk_free_bytes",
            "Free disk space of the node.",
            |n| n.disk_free_mib as f64 * MIB,
        ),
        ("ganeti_node_cpus", "Physical CPUs of the node.", |n| {
            f64::from(n.cpus)
        }),
        (
            "ganeti_node_primary_instances",
            "Instances with this node as primary.",
            |n| f64::from(n.primary_instances),
        ),
        (
            "ganeti_node_secondary_instances",
            "Instances with this node as secondary.",
            |n| f64::from(n.secondary_instances),
        ),
        ("ganeti_node_offline", "Whether the node is offline.", |n| {
            f64::from(u8::from(n.offline))
        }),
        ("ganeti_node_drained", "Whether the node is drained.", |n| {
            f64::from(u8::from(n.drained))
        }),
    ];
    for (name, help, field) in node_gauges {
        header(out, name, help);
        for c in clusters {
            for n in &c.nodes {
                sample(out, name, &[("cluster", &c.cluster), ("node", &n.name)], field(n));
            }
        }
    }
    header(
        out,
        "ganeti_node_role",
        "The node's role (master, candidate, regular, drained, offline); 1 for the current one.",
    );
    for c in clusters {
        for n in &c.nodes {
            for role in NodeRole::ALL {
                let labels = [
                    ("cluster", c.cluster.as_str()),
                    ("node", n.name.as_str()),
                    ("role", role.as_str()),
                ];
                sample(
                    out,
                    "ganeti_node_role",
                    &labels,
                    f64::from(u8::from(n.role == role)),
                );
            }
        }
    }

    type InstanceField = fn(&Instance) -> f64;
    let instance_gauges: [(&str, &str, InstanceField); 4] = [
        ("ganeti_instance_up", "Whether the instance is running.", |i| {
            f64::from(u8::from(i.running))
        }),
        ("ganeti_instance_vcpus", "Virtual CPUs of the instance.", |i| {
            f64::from(i.vcpus)
        }),
        ("ganeti_instance_memory_bytes", "Memory of the instance.", |i| {
            i.memory_mib as f64 * MIB
        }),
        (
            "ganeti_instance_disk_bytes",
            "Total disk size of the instance.",
            |i| i.disk_mib as f64 * MIB,
        ),
    ];
    // Owners are computed once per instance, not once per family.
    let owners: Vec<Vec<String>> = clusters
        .iter()
        .map(|c| {
            c.instances
                .iter()
                .map(|i| c.owner_of(i).map(|s| s.name).unwrap_or_default())
                .collect()
        })
        .collect();
    for (name, help, field) in instance_gauges {
        header(out, name, help);
        for (c, owners) in clusters.iter().zip(&owners) {
            for (i, owner) in c.instances.iter().zip(owners) {
                let labels = [
                    ("cluster", c.cluster.as_str()),
                    ("instance", i.name.as_str()),
                    ("node", i.primary_node.as_str()),
                    ("owner", owner.as_str()),
                ];
                sample(out, name, &labels, field(i));
            }
        }
    }
    header(
        out,
        "ganeti_instance_status",
        "The instance's Ganeti status; 1 for the current one.",
    );
    for c in clusters {
        for i in &c.instances {
            let labels = [
                ("cluster", c.cluster.as_str()),
                ("instance", i.name.as_str()),
                ("status", i.status.as_str()),
            ];
            sample(out, "ganeti_instance_status", &labels, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterFacts, Node};

    fn inventory() -> Inventory {
        let inv = Inventory::default();
        inv.put(ClusterInventory {
            cluster: "prod".into(),
            facts: ClusterFacts {
                master: "n1".into(),
                software_version: "3.0.2".into(),
                ..Default::default()
            },
            nodes: vec![Node {
                name: "n1".into(),
                role: NodeRole::Master,
                memory_total_mib: 2,
                cpus: 4,
                ..Default::default()
            }],
            tag_prefix: "GANETI_WEB_MANAGER".into(),
            instances: vec![Instance {
                name: "vm\"1".into(),
                tags: vec!["GANETI_WEB_MANAGER:owner:U:alice".into()],
                status: "running".into(),
                running: true,
                primary_node: "n1".into(),
                vcpus: 2,
                memory_mib: 1,
                ..Default::default()
            }],
            jobs_by_status: [("success".to_string(), 3)].into(),
            reachable: true,
        });
        inv
    }

    #[test]
    fn inventory_metrics_are_rendered_with_escaped_labels() {
        let m = Metrics::new(inventory()).unwrap();
        let text = m.render();
        assert!(text.contains("ganeti_cluster_up{cluster=\"prod\"} 1\n"), "{text}");
        assert!(text.contains("ganeti_cluster_info{cluster=\"prod\",version=\"3.0.2\",master=\"n1\"} 1\n"));
        assert!(text.contains("ganeti_cluster_jobs{cluster=\"prod\",status=\"success\"} 3\n"));
        assert!(text.contains("ganeti_node_memory_total_bytes{cluster=\"prod\",node=\"n1\"} 2097152\n"));
        assert!(text.contains("ganeti_node_role{cluster=\"prod\",node=\"n1\",role=\"master\"} 1\n"));
        assert!(text.contains("ganeti_node_role{cluster=\"prod\",node=\"n1\",role=\"drained\"} 0\n"));
        assert!(text.contains(
            "ganeti_instance_up{cluster=\"prod\",instance=\"vm\\\"1\",node=\"n1\",owner=\"alice\"} 1\n"
        ));
        assert!(text.contains("ganeti_operator_build_info{version="));
        // One HELP/TYPE block per family.
        assert_eq!(text.matches("# TYPE ganeti_instance_up gauge").count(), 1);
    }

    #[test]
    fn an_unreachable_cluster_reports_up_zero_and_keeps_its_data() {
        let inv = inventory();
        inv.mark_unreachable("prod");
        let m = Metrics::new(inv).unwrap();
        let text = m.render();
        assert!(text.contains("ganeti_cluster_up{cluster=\"prod\"} 0\n"));
        assert!(text.contains("ganeti_node_cpus{cluster=\"prod\",node=\"n1\"} 4\n"));
    }
}
