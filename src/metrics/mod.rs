//! The operator's Prometheus metrics.
//!
//! Controller and RAPI metrics live in a `prometheus` registry. Inventory metrics (per
//! cluster, node and instance) are rendered straight from the shared inventory at
//! scrape time: at 10k instances that is ~50k series, which as registry gauges would
//! need hashing on every sync and bookkeeping to delete vanished series; rendered from
//! the snapshot they are always exactly what the last sync saw, and cost nothing between
//! scrapes.
//!
//! Followers read every cluster too (their API serves from it), but only the leader
//! renders the inventory series: dashboards sum over pods, and two replicas exporting
//! the same VMs would count each twice. `ganeti_operator_leading` says which pod that is.

pub mod applications;
mod text;

use text::{Chunked, LabelSets, Out, header, push_labels, push_u64, sample};

use crate::api::InstanceApplication;
use crate::inventory::{ClusterInventory, Instance, Inventory, Node, NodeRole};
use kube::runtime::reflector::Store;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One ClusterQuota figure: what one subject uses of one resource, and the limit that
/// applies to it (`None`: unlimited). Memory and disk in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSeries {
    pub cluster: String,
    pub quota: String,
    /// `User` or `Group`.
    pub subject_kind: &'static str,
    pub subject: String,
    /// `instances`, `vcpus`, `memory` or `disk`.
    pub resource: &'static str,
    pub used: u64,
    pub limit: Option<u64>,
}

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
    /// Reconciliations that failed, by controller and bounded error kind.
    pub reconcile_errors: IntCounterVec,
    /// Reconciliation duration, by controller.
    pub reconcile_duration: HistogramVec,
    /// RAPI request duration, by operation and outcome category.
    pub rapi_duration: HistogramVec,
    /// Status writes to the API server, by controller (0 on an unchanged pass).
    pub status_writes: IntCounterVec,
    /// RAPI writes asked for, by cluster, operation and result (`sent`, or `refused`
    /// unsent on an observed-only cluster).
    pub rapi_writes: IntCounterVec,
    /// 1 while this replica leads (runs the controllers and exports the inventory).
    leading_gauge: IntGauge,
    leading: AtomicBool,
    /// The quota figures as the quota controller last computed them, replaced whole:
    /// a quota or subject that went away leaves no stale series behind.
    quota_series: RwLock<Arc<Vec<QuotaSeries>>>,
    /// The application controller's store, for the service statistics.
    applications: RwLock<Option<Store<InstanceApplication>>>,
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
                "Reconciliations that failed, by controller and error kind (the reason of the Warning Event on the object).",
            ),
            &["controller", "kind"],
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
        let rapi_writes = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_rapi_writes_total",
                "RAPI writes (PUT/POST/DELETE) the operator was asked for, by cluster, operation and result: sent, or refused unsent because the cluster is observed only.",
            ),
            &["cluster", "operation", "result"],
        )?;
        let leading_gauge = IntGauge::new(
            "ganeti_operator_leading",
            "Whether this replica leads: runs the controllers and exports the ganeti_* inventory series.",
        )?;
        leading_gauge.set(1);
        registry.register(Box::new(leading_gauge.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(rapi_writes.clone()))?;
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
            rapi_writes,
            leading_gauge,
            leading: AtomicBool::new(true),
            quota_series: RwLock::default(),
            applications: RwLock::default(),
        })
    }

    /// Whether this replica leads (a new `Metrics` does: one replica without leader
    /// election always leads). Only the leader renders the inventory series.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
        self.leading_gauge.set(i64::from(leading));
    }

    /// Replaces the quota figures (the quota controller, on every change).
    pub fn set_quota_series(&self, series: Vec<QuotaSeries>) {
        *self.quota_series.write().expect("quota series lock") = Arc::new(series);
    }

    /// Renders the service statistics from this store (the application controller's).
    pub fn follow_applications(&self, store: Store<InstanceApplication>) {
        *self.applications.write().expect("applications lock") = Some(store);
    }

    /// Everything in Prometheus' text exposition format.
    /// The whole text, in one String (for tests and small exports; `/metrics` streams
    /// [`Self::render_chunks`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.render_chunks(|chunk| {
            text.push_str(&chunk);
            true
        });
        text
    }

    /// Writes the text in pieces of about [`text::CHUNK`] bytes, handing each to `send`
    /// (which answers false when nobody reads any more: the rest is skipped). At 100k
    /// instances the text is some 65 MB; whole, it was the largest allocation of a
    /// replica's life, at every scrape.
    pub fn render_chunks(&self, send: impl FnMut(String) -> bool) {
        let clusters = self.inventory.all();
        let mut out = Chunked::new(send);
        let mut registry_text = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut registry_text)
            .expect("text encoding into a String cannot fail");
        out.push_str(&registry_text);
        drop(registry_text);
        if self.leading.load(Ordering::Relaxed) {
            render_inventory(&clusters, &mut out);
            let quotas = self.quota_series.read().expect("quota series lock").clone();
            render_quotas(&quotas, &mut out);
            let store = self.applications.read().expect("applications lock").clone();
            if let Some(store) = store {
                applications::render_applications(&store.state(), &mut out);
            }
        }
        out.finish();
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

const MIB: u64 = 1 << 20;

/// Ganeti's job statuses (`constants.JOBS_STATUS_ALL`).
const JOB_STATUSES: [&str; 7] = [
    "queued",
    "waiting",
    "canceling",
    "running",
    "canceled",
    "success",
    "error",
];

/// Appends the inventory metrics. Each family is written whole (all clusters), as the
/// text format requires one block per family.
pub fn render_inventory(clusters: &[Arc<ClusterInventory>], out: &mut impl Out) {
    let mut labels = String::new();
    header(
        out,
        "ganeti_cluster_up",
        "Whether the last read of the cluster's RAPI succeeded (1) or not (0).",
    );
    for c in clusters {
        labels.clear();
        push_labels(&mut labels, &[("cluster", &c.cluster)]);
        sample(out, "ganeti_cluster_up", &labels, u64::from(c.reachable));
    }
    header(
        out,
        "ganeti_cluster_info",
        "Ganeti version and master node of the cluster; always 1.",
    );
    for c in clusters {
        labels.clear();
        push_labels(
            &mut labels,
            &[
                ("cluster", &c.cluster),
                ("version", &c.facts.software_version),
                ("master", &c.facts.master),
            ],
        );
        sample(out, "ganeti_cluster_info", &labels, 1);
    }
    header(
        out,
        "ganeti_cluster_jobs",
        "Jobs in the cluster's queue, by status.",
    );
    for c in clusters {
        // Ganeti's job statuses all appear, 0 when none: "no pending jobs" is a value a
        // dashboard shows, not missing data. Any other status Ganeti reports follows.
        let known = JOB_STATUSES
            .iter()
            .map(|s| (*s, c.jobs_by_status.get(*s).copied().unwrap_or(0)));
        let other = c
            .jobs_by_status
            .iter()
            .filter(|(s, _)| !JOB_STATUSES.contains(&s.as_str()))
            .map(|(s, n)| (s.as_str(), *n));
        for (status, count) in known.chain(other) {
            labels.clear();
            push_labels(&mut labels, &[("cluster", &c.cluster), ("status", status)]);
            sample(out, "ganeti_cluster_jobs", &labels, u64::from(count));
        }
    }

    let nodes: Vec<&Node> = clusters.iter().flat_map(|c| &c.nodes).collect();
    let mut node_labels = LabelSets::default();
    for c in clusters {
        for n in &c.nodes {
            node_labels.push(&[("cluster", &c.cluster), ("node", &n.name)]);
        }
    }
    type NodeField = fn(&Node) -> u64;
    let node_gauges: [(&str, &str, NodeField); 9] = [
        (
            "ganeti_node_memory_total_bytes",
            "Physical memory of the node.",
            |n| n.memory_total_mib.saturating_mul(MIB),
        ),
        ("ganeti_node_memory_free_bytes", "Free memory of the node.", |n| {
            n.memory_free_mib.saturating_mul(MIB)
        }),
        (
            "ganeti_node_disk_total_bytes",
            "Disk space of the node for instances.",
            |n| n.disk_total_mib.saturating_mul(MIB),
        ),
        (
            "ganeti_node_disk_free_bytes",
            "Free disk space of the node.",
            |n| n.disk_free_mib.saturating_mul(MIB),
        ),
        ("ganeti_node_cpus", "Physical CPUs of the node.", |n| {
            u64::from(n.cpus)
        }),
        (
            "ganeti_node_primary_instances",
            "Instances with this node as primary.",
            |n| u64::from(n.primary_instances),
        ),
        (
            "ganeti_node_secondary_instances",
            "Instances with this node as secondary.",
            |n| u64::from(n.secondary_instances),
        ),
        ("ganeti_node_offline", "Whether the node is offline.", |n| {
            u64::from(n.offline)
        }),
        ("ganeti_node_drained", "Whether the node is drained.", |n| {
            u64::from(n.drained)
        }),
    ];
    for (name, help, field) in node_gauges {
        header(out, name, help);
        for (n, l) in nodes.iter().zip(node_labels.iter()) {
            sample(out, name, l, field(n));
        }
    }
    header(
        out,
        "ganeti_node_role",
        "The node's role (master, candidate, regular, drained, offline); 1 for the current one.",
    );
    for (n, l) in nodes.iter().zip(node_labels.iter()) {
        for role in NodeRole::ALL {
            out.push_str("ganeti_node_role{");
            out.push_str(l);
            out.push_str(",role=\"");
            out.push_str(role.as_str());
            out.push_str("\"} ");
            push_u64(out, u64::from(n.role == role));
            out.push('\n');
        }
    }

    let instances: Vec<&Instance> = clusters.iter().flat_map(|c| &c.instances).collect();
    let mut instance_labels = LabelSets::default();
    for c in clusters {
        for i in &c.instances {
            // A group owns as a user does: `owner_kind` tells which (empty: no owner).
            let owner = c.owner_of(i);
            let (kind, name) = owner.map_or(("", String::new()), |s| match s.kind {
                crate::api::SubjectKind::User => ("User", s.name),
                crate::api::SubjectKind::Group => ("Group", s.name),
            });
            instance_labels.push(&[
                ("cluster", &c.cluster),
                ("instance", &i.name),
                ("node", &i.primary_node),
                ("owner", &name),
                ("owner_kind", kind),
            ]);
        }
    }
    type InstanceField = fn(&Instance) -> u64;
    let instance_gauges: [(&str, &str, InstanceField); 5] = [
        ("ganeti_instance_up", "Whether the instance is running.", |i| {
            u64::from(i.running)
        }),
        ("ganeti_instance_vcpus", "Virtual CPUs of the instance.", |i| {
            u64::from(i.vcpus)
        }),
        ("ganeti_instance_memory_bytes", "Memory of the instance.", |i| {
            i.memory_mib.saturating_mul(MIB)
        }),
        (
            "ganeti_instance_disk_bytes",
            "Total disk size of the instance.",
            |i| i.disk_mib.saturating_mul(MIB),
        ),
        (
            "ganeti_instance_needs_reboot",
            "Whether a change waits for the instance's next reboot (ganetimgr's needsreboot tag).",
            |i| u64::from(i.tags.iter().any(|t| t == crate::tags::NEEDS_REBOOT_TAG)),
        ),
    ];
    for (name, help, field) in instance_gauges {
        header(out, name, help);
        for (i, l) in instances.iter().zip(instance_labels.iter()) {
            sample(out, name, l, field(i));
        }
    }
    header(
        out,
        "ganeti_instance_status",
        "The instance's Ganeti status; 1 for the current one.",
    );
    for c in clusters {
        for i in &c.instances {
            labels.clear();
            push_labels(
                &mut labels,
                &[
                    ("cluster", &c.cluster),
                    ("instance", &i.name),
                    ("status", &i.status),
                ],
            );
            sample(out, "ganeti_instance_status", &labels, 1);
        }
    }
}

/// Appends `ganeti_quota_used` and `ganeti_quota_limit` (the latter only for finite
/// limits), with the same labels, so that `used / limit` matches series one to one.
pub fn render_quotas(series: &[QuotaSeries], out: &mut impl Out) {
    let mut labels = LabelSets::default();
    for s in series {
        labels.push(&[
            ("cluster", &s.cluster),
            ("quota", &s.quota),
            ("subject_kind", s.subject_kind),
            ("subject", &s.subject),
            ("resource", s.resource),
        ]);
    }
    header(
        out,
        "ganeti_quota_used",
        "What a subject of a ClusterQuota uses on its cluster (instances, vcpus, memory and disk in bytes), approved applications not yet created included.",
    );
    for (s, l) in series.iter().zip(labels.iter()) {
        sample(out, "ganeti_quota_used", l, s.used);
    }
    header(
        out,
        "ganeti_quota_limit",
        "The limit in force for a subject of a ClusterQuota; absent when unlimited.",
    );
    for (s, l) in series.iter().zip(labels.iter()) {
        if let Some(limit) = s.limit {
            sample(out, "ganeti_quota_limit", l, limit);
        }
    }
}

/// RAPI request durations, from every cluster's client.
impl crate::rapi::RapiObserver for Metrics {
    fn observe(&self, op: &'static str, outcome: &'static str, seconds: f64) {
        self.rapi_duration
            .with_label_values(&[op, outcome])
            .observe(seconds);
    }

    fn write(&self, cluster: &str, op: &'static str, sent: bool) {
        let result = if sent { "sent" } else { "refused" };
        self.rapi_writes.with_label_values(&[cluster, op, result]).inc();
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
            gwm: Default::default(),
            observed: false,
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
            read_started: None,
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
        assert!(text.contains("ganeti_cluster_jobs{cluster=\"prod\",status=\"running\"} 0\n"));
        assert!(text.contains("ganeti_node_memory_total_bytes{cluster=\"prod\",node=\"n1\"} 2097152\n"));
        assert!(text.contains("ganeti_node_role{cluster=\"prod\",node=\"n1\",role=\"master\"} 1\n"));
        assert!(text.contains("ganeti_node_role{cluster=\"prod\",node=\"n1\",role=\"drained\"} 0\n"));
        assert!(text.contains(
            "ganeti_instance_up{cluster=\"prod\",instance=\"vm\\\"1\",node=\"n1\",owner=\"alice\",owner_kind=\"User\"} 1\n"
        ));
        assert!(text.contains("ganeti_operator_build_info{version="));
        // One HELP/TYPE block per family.
        assert_eq!(text.matches("# TYPE ganeti_instance_up gauge").count(), 1);
    }

    #[test]
    fn a_follower_exports_no_inventory_series() {
        let m = Metrics::new(inventory()).unwrap();
        m.set_leading(false);
        let text = m.render();
        assert!(!text.contains("ganeti_cluster_up"), "{text}");
        assert!(!text.contains("ganeti_instance_up"));
        assert!(text.contains("ganeti_operator_leading 0\n"), "{text}");
        m.set_leading(true);
        let text = m.render();
        assert!(text.contains("ganeti_instance_up{"));
        assert!(text.contains("ganeti_operator_leading 1\n"));
    }

    #[test]
    fn quota_series_are_replaced_whole_and_rendered_by_the_leader_only() {
        let m = Metrics::new(Inventory::default()).unwrap();
        let series = |subject: &str, limit| QuotaSeries {
            cluster: "prod".into(),
            quota: "team".into(),
            subject_kind: "Group",
            subject: subject.into(),
            resource: "instances",
            used: 2,
            limit,
        };
        m.set_quota_series(vec![series("a", Some(5)), series("b", None)]);
        let text = m.render();
        let labels =
            "cluster=\"prod\",quota=\"team\",subject_kind=\"Group\",subject=\"a\",resource=\"instances\"";
        assert!(
            text.contains(&format!("ganeti_quota_used{{{labels}}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!("ganeti_quota_limit{{{labels}}} 5\n")));
        assert!(text.contains(
            "ganeti_quota_used{cluster=\"prod\",quota=\"team\",subject_kind=\"Group\",subject=\"b\""
        ));
        assert!(
            !text.contains("subject=\"b\",resource=\"instances\"} 5"),
            "unlimited: no limit series"
        );
        assert_eq!(text.matches("ganeti_quota_limit{").count(), 1);
        m.set_quota_series(vec![series("b", None)]);
        assert!(
            !m.render().contains("subject=\"a\""),
            "a subject gone is no series"
        );
        m.set_leading(false);
        assert!(!m.render().contains("ganeti_quota_used"));
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
