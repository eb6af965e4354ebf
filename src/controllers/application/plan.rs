//! What an InstanceApplication needs next, decided without IO: validation, quota,
//! approval, the create request, and each phase transition's status.
//!
//! Phases: Pending → Approved → Creating → Created, or Rejected, or Failed. A new spec
//! generation re-evaluates a Pending, Rejected or Failed application from scratch.
//!
//! # An approval is bound to what was approved
//! A decision counts for the spec generation it was made on ([`decision_in_force`]):
//! `status.decided` records it with the generation the operator first saw it on, and a
//! later spec change under the same decision leaves the application waiting for a new
//! one (an admin sets the decision again, with a new verdict or reason). A rejection
//! stands all the same. The approved generation is recorded (`status.approvedGeneration`)
//! and the VM is created from that generation only: a spec that changed between the
//! approval and the create call goes back to Pending ([`changed_after_approval`]). So an
//! edited Failed application is tried again only on a new decision, or when its
//! applicant may approve it themselves within quota.
//!
//! Admission refuses a non-admin's spec change once a decision exists (they may delete
//! the application and file a new one); this is the second line, for an admission policy
//! that is missing and for admins' own edits.
//!
//! # Which VM is the application's
//! The create request carries the owner tag and a marker tag naming the application's
//! UID ([`marker_tag`]). Only the application's own create job makes an instance with
//! both, so that is what adoption after a crash and the end of the job look for
//! ([`after_job`], [`adopt`]); never an instance found by the current `spec.hostname`.
//! Its UUID is recorded (`status.instanceUUID`).

use crate::api::application::{
    Decision, DecisionRecord, GanetiError, InstanceApplication, InstanceApplicationStatus, Phase, Verdict,
};
use crate::api::cluster::{DiskTemplate, GanetiClusterSpec};
use crate::api::common::Subject;
use crate::api::conditions::{self, Status};
use crate::api::profile::UserProfile;
use crate::api::quantity::parse_bytes;
use crate::api::quota::ClusterQuota;
use crate::inventory::{ClusterInventory, Instance};
use crate::quota;
use crate::rapi::{BeParams, DiskSpec, GanetiFailure, InstanceCreate, NicSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Condition: an admin (or policy) decided, and what.
pub const DECIDED: &str = "Decided";
/// Condition: the cluster exists, is ready, and allows what the application asks for.
pub const VALIDATED: &str = "Validated";
/// Condition: the application does not fit its owner's quota.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Condition: the VM exists in Ganeti.
pub const INSTANCE_CREATED: &str = "InstanceCreated";
/// Condition: the applicant was mailed about the phase named by its reason.
pub const APPLICANT_NOTIFIED: &str = "ApplicantNotified";

/// What is known of the cluster an application names.
#[derive(Debug, Clone, Copy)]
pub enum ClusterView<'a> {
    /// Neither the application nor an admin chose a cluster yet.
    Unchosen,
    Missing(&'a str),
    NotReady {
        name: &'a str,
        message: &'a str,
    },
    Ready {
        name: &'a str,
        spec: &'a GanetiClusterSpec,
        inventory: &'a ClusterInventory,
        catalog: &'a Catalog,
    },
}

/// What a cluster offers, read from Ganeti when an application is validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// OS definitions valid on every node, with variants.
    pub operating_systems: Vec<String>,
    /// Enabled disk templates; the first is Ganeti's default.
    pub disk_templates: Vec<String>,
}

/// Everything evaluating a Pending application needs.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub app: &'a InstanceApplication,
    pub cluster: ClusterView<'a>,
    pub quotas: &'a [ClusterQuota],
    /// Every application (all namespaces), for the usage approved ones hold.
    pub applications: &'a [InstanceApplication],
    /// The applicant holds `clusters.createVm` on the cluster: within quota, no admin
    /// needs to approve.
    pub may_self_approve: bool,
    pub now: Timestamp,
}

/// Something for people to see on the application (a Kubernetes Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of evaluating a Pending application.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub status: InstanceApplicationStatus,
    /// Approved now: the create job may be submitted once this status is stored.
    pub approved: bool,
    pub note: Option<Note>,
}

/// A warning about the decision, said once per change of its message, not on every
/// resync.
fn decided_warning_once(app: &InstanceApplication, reason: &'static str, message: String) -> Option<Note> {
    let previous = app
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, DECIDED));
    previous.is_none_or(|c| c.message != message).then_some(Note {
        warning: true,
        reason,
        message,
    })
}

pub fn phase(app: &InstanceApplication) -> Phase {
    app.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The decision an evaluation acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InForce<'a> {
    /// No decision (an applicant holding `clusters.createVm` may approve themselves).
    None,
    /// Made on the current spec (or first seen on it).
    Fresh(&'a Decision),
    /// Made on an earlier generation of a spec that changed since.
    Stale { decision: &'a Decision, generation: i64 },
}

/// The decision that applies to the current spec: see the module docs.
pub fn decision_in_force(app: &InstanceApplication) -> InForce<'_> {
    let Some(decision) = &app.spec.decision else {
        return InForce::None;
    };
    let recorded = app.status.as_ref().and_then(|s| s.decided.as_ref());
    match recorded {
        Some(r) if &r.decision == decision && Some(r.generation) != app.metadata.generation => {
            InForce::Stale {
                decision,
                generation: r.generation,
            }
        }
        _ => InForce::Fresh(decision),
    }
}

/// The record of the decision in force after an evaluation: kept while it is the same
/// decision, stamped with the current generation when it is new.
fn decision_record(app: &InstanceApplication) -> Option<DecisionRecord> {
    let decision = app.spec.decision.as_ref()?;
    match app.status.as_ref().and_then(|s| s.decided.as_ref()) {
        Some(r) if &r.decision == decision => Some(r.clone()),
        _ => Some(DecisionRecord {
            generation: app.metadata.generation.unwrap_or_default(),
            decision: decision.clone(),
        }),
    }
}

/// Whether the application is (re-)evaluated: it waits in Pending, or a Rejected or
/// Failed one was edited since its status was written.
pub fn needs_evaluation(app: &InstanceApplication) -> bool {
    let Some(status) = &app.status else { return true };
    match status.phase {
        Phase::Pending => true,
        Phase::Rejected | Phase::Failed => status.observed_generation != app.metadata.generation,
        Phase::Approved | Phase::Creating | Phase::Created => false,
    }
}

fn applicant(app: &InstanceApplication) -> &str {
    app.spec.applicant.as_deref().unwrap_or("(unknown)")
}

fn decider(app: &InstanceApplication) -> &str {
    app.spec
        .decision
        .as_ref()
        .and_then(|d| d.decided_by.as_deref())
        .unwrap_or("an admin")
}

/// Decides a Pending (or edited Rejected/Failed) application.
pub fn evaluate(p: &Pending<'_>) -> Evaluation {
    let app = p.app;
    let generation = app.metadata.generation;
    let now = p.now;
    let mut status = app.status.clone().unwrap_or_default();
    let reevaluated = status.phase != Phase::Pending;
    let in_force = decision_in_force(app);
    // A fresh attempt: nothing of a previous one (job, Ganeti's error) applies any more.
    status.phase = Phase::Pending;
    status.observed_generation = generation;
    status.decided = decision_record(app);
    status.approved_generation = None;
    status.job_id = None;
    status.ganeti_error = None;
    status.instance_name = None;
    status.instance_uuid = None;
    status.primary_node = None;
    status.ips.clear();
    status.created_time = None;
    conditions::remove(&mut status.conditions, INSTANCE_CREATED);
    let set = |status: &mut InstanceApplicationStatus, type_: &str, s: Status, reason: &str, msg: String| {
        conditions::set(&mut status.conditions, type_, s, reason, msg, generation, now);
    };
    let mut note = None;
    let retried = reevaluated.then(|| Note {
        warning: false,
        reason: "Resubmitted",
        message: "the application changed; evaluating it again".to_string(),
    });

    // A rejection stands even over a changed spec: only an admin turns it round.
    if let InForce::Fresh(d) | InForce::Stale { decision: d, .. } = in_force
        && d.verdict == Verdict::Rejected
    {
        status.phase = Phase::Rejected;
        let why = d.reason.as_deref().unwrap_or("no reason given");
        let message = format!("rejected by {}: {why}", decider(app));
        set(&mut status, DECIDED, Status::True, "Rejected", message.clone());
        return Evaluation {
            status,
            approved: false,
            note: Some(Note {
                warning: false,
                reason: "Rejected",
                message,
            }),
        };
    }

    let validation = validate(app, &p.cluster, p.applications);
    status.cluster = match p.cluster {
        ClusterView::Unchosen => None,
        ClusterView::Missing(name) | ClusterView::NotReady { name, .. } | ClusterView::Ready { name, .. } => {
            Some(name.to_string())
        }
    };
    match &validation {
        Ok(()) => set(
            &mut status,
            VALIDATED,
            Status::True,
            "Valid",
            "the cluster is ready and allows what the application asks for".into(),
        ),
        Err((reason, message)) => set(&mut status, VALIDATED, Status::False, reason, message.clone()),
    }

    // Quota: only meaningful once the cluster is known and read.
    let fits = match p.cluster {
        ClusterView::Ready { name, inventory, .. } => {
            let created = created_since_read(name, inventory, p.applications);
            let instances: std::borrow::Cow<'_, [Instance]> = if created.is_empty() {
                (&inventory.instances[..]).into()
            } else {
                [&inventory.instances[..], &created[..]].concat().into()
            };
            match quota::check_application(p.quotas, &instances, p.applications, app, |i| {
                inventory.owner_of(i)
            }) {
                Ok(verdict) => {
                    status.quota = Some(verdict.to_status());
                    let reason = if verdict.fits {
                        "WithinQuota"
                    } else {
                        "QuotaExceeded"
                    };
                    set(
                        &mut status,
                        QUOTA_EXCEEDED,
                        Status::from(!verdict.fits),
                        reason,
                        verdict.message.clone(),
                    );
                    verdict.fits
                }
                Err(e) => {
                    status.quota = None;
                    set(
                        &mut status,
                        QUOTA_EXCEEDED,
                        Status::Unknown,
                        "InvalidQuota",
                        e.to_string(),
                    );
                    false
                }
            }
        }
        _ => {
            status.quota = None;
            conditions::remove(&mut status.conditions, QUOTA_EXCEEDED);
            false
        }
    };
    let quota_message = || {
        conditions::get(&status.conditions, QUOTA_EXCEEDED)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };

    let approved_by_admin = matches!(in_force, InForce::Fresh(d) if d.verdict == Verdict::Approved);
    let stale_approval = match in_force {
        InForce::Stale { decision, generation } if decision.verdict == Verdict::Approved => Some(format!(
            "the application changed after {} approved generation {generation}; an approval covers only the spec it was given for, so an admin must decide again (set spec.decision anew, with a new reason)",
            decision.decided_by.as_deref().unwrap_or("an admin")
        )),
        _ => None,
    };
    let approved = validation.is_ok() && fits && (approved_by_admin || p.may_self_approve);
    if approved {
        status.phase = Phase::Approved;
        status.approved_generation = generation;
        // The name to create, fixed with the approval: the spec may change later.
        status.instance_name = Some(app.spec.hostname.clone());
        let (reason, message) = if approved_by_admin {
            ("Approved", format!("approved by {}", decider(app)))
        } else {
            (
                "AutoApproved",
                format!(
                    "{} holds clusters.createVm on this cluster and the VM fits the quota",
                    applicant(app)
                ),
            )
        };
        set(&mut status, DECIDED, Status::True, reason, message.clone());
        note = Some(Note {
            warning: false,
            reason,
            message,
        });
    } else if approved_by_admin {
        let why = match &validation {
            Err((_, message)) => message.clone(),
            Ok(()) => quota_message(),
        };
        let message = format!("the approval by {} cannot be carried out: {why}", decider(app));
        let reason = if validation.is_ok() {
            "ApprovalRefused"
        } else {
            "ApprovalWaiting"
        };
        set(&mut status, DECIDED, Status::False, reason, message.clone());
        note = decided_warning_once(app, reason, message).or(note);
    } else if let Some(message) = stale_approval {
        set(
            &mut status,
            DECIDED,
            Status::False,
            "ChangedAfterApproval",
            message.clone(),
        );
        note = decided_warning_once(app, "ChangedAfterApproval", message).or(note);
    } else {
        let message = match (&validation, fits) {
            (Err(_), _) => {
                "waiting for an admin; the application cannot be carried out as it is (see Validated)".into()
            }
            (Ok(()), false) => {
                "waiting for an admin; it does not fit the quota as it is (see QuotaExceeded)".into()
            }
            (Ok(()), true) => "waiting for an admin to approve or reject it".to_string(),
        };
        set(&mut status, DECIDED, Status::False, "AwaitingDecision", message);
    }
    Evaluation {
        status,
        approved,
        note: note.or(retried),
    }
}

/// VMs that applications created after the inventory's bulk read started, and which it
/// therefore may not show: they hold their owners' quota all the same. (An older
/// Created application whose VM is absent had its VM removed since: it holds nothing.)
fn created_since_read(
    cluster: &str,
    inventory: &ClusterInventory,
    applications: &[InstanceApplication],
) -> Vec<Instance> {
    let Some(read_started) = inventory.read_started else {
        return Vec::new();
    };
    applications
        .iter()
        .filter_map(|a| {
            let status = a.status.as_ref()?;
            let name = status.instance_name.as_deref().unwrap_or(&a.spec.hostname);
            let fresh = status.phase == Phase::Created
                && status.cluster.as_deref() == Some(cluster)
                && status.created_time.as_ref().is_some_and(|t| t.0 >= read_started)
                && inventory.instance(name).is_none();
            if !fresh {
                return None;
            }
            let request = quota::Request::from_application(a).unwrap_or_default();
            Some(Instance {
                name: name.to_string(),
                vcpus: u32::try_from(request.vcpus).unwrap_or(u32::MAX),
                memory_mib: request.memory.mebibytes_ceil(),
                disk_mib: request.disk.mebibytes_ceil(),
                tags: owner_tag(a, &inventory.tag_prefix).into_iter().collect(),
                ..Default::default()
            })
        })
        .collect()
}

/// The owner is not a reserved group, the cluster exists, is ready, offers the OS, disk
/// template and network asked for, and the name is free.
fn validate(
    app: &InstanceApplication,
    cluster: &ClusterView<'_>,
    applications: &[InstanceApplication],
) -> Result<(), (&'static str, String)> {
    let owner = &app.spec.owner;
    // `system:authenticated` and the like: everyone, or Kubernetes' own identities.
    if owner.kind == crate::api::SubjectKind::Group && owner.name.starts_with("system:") {
        return Err((
            "ReservedGroup",
            format!(
                "group {} is reserved by Kubernetes and cannot own a VM: name a group of people",
                owner.name
            ),
        ));
    }
    let (spec, inventory, catalog) = match *cluster {
        ClusterView::Unchosen => {
            return Err((
                "NoCluster",
                "no cluster chosen: set spec.cluster (an admin may choose one)".into(),
            ));
        }
        ClusterView::Missing(name) => {
            return Err((
                "ClusterNotFound",
                format!(
                    "GanetiCluster {name} does not exist: name one that `kubectl get ganeticlusters` lists"
                ),
            ));
        }
        ClusterView::NotReady { name, message } => {
            return Err((
                "ClusterNotReady",
                format!("GanetiCluster {name} is not ready: {message}"),
            ));
        }
        ClusterView::Ready {
            spec,
            inventory,
            catalog,
            ..
        } => (spec, inventory, catalog),
    };
    let Some(os) = os_of(app, spec) else {
        return Err((
            "NoOperatingSystem",
            "no OS: set spec.os, or ask an admin to set the cluster's defaults.os".into(),
        ));
    };
    if !os_offered(os, &catalog.operating_systems) {
        return Err((
            "OperatingSystemNotOffered",
            format!(
                "OS {os} is not offered by this cluster; it offers: {}",
                catalog.operating_systems.join(", ")
            ),
        ));
    }
    let template = disk_template_of(spec, catalog);
    if !catalog.disk_templates.iter().any(|t| t == template) {
        return Err((
            "DiskTemplateNotAllowed",
            format!(
                "the cluster's default disk template {template} is not enabled in Ganeti (enabled: {}); an admin must fix defaults.diskTemplate",
                catalog.disk_templates.join(", ")
            ),
        ));
    }
    network_allowed(app, spec, inventory, applications)?;
    if inventory.instance(&app.spec.hostname).is_some() {
        return Err((
            "NameTaken",
            format!(
                "an instance named {} already exists on the cluster: choose another hostname",
                app.spec.hostname
            ),
        ));
    }
    Ok(())
}

/// The cluster's default (if any) and what `allowed` adds, for checks and messages.
fn offered<'a>(default: Option<&'a str>, more: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut all: Vec<&str> = default.into_iter().chain(more).collect();
    all.dedup();
    all
}

fn listing(offered: &[&str]) -> String {
    if offered.is_empty() {
        "none".to_string()
    } else {
        offered.join(", ")
    }
}

/// The NIC asked for is one the cluster offers to applications (`spec.allowed`, and the
/// defaults): see [`crate::api::cluster::AllowedChoices`].
fn network_allowed(
    app: &InstanceApplication,
    spec: &GanetiClusterSpec,
    inventory: &ClusterInventory,
    applications: &[InstanceApplication],
) -> Result<(), (&'static str, String)> {
    let Some(asked) = &app.spec.network else {
        return Ok(());
    };
    let allowed = spec.allowed.clone().unwrap_or_default();
    let defaults = &spec.defaults;
    let networks = offered(
        defaults.network.as_deref(),
        allowed.networks.iter().map(String::as_str),
    );
    if let Some(name) = &asked.name {
        if !networks.contains(&name.as_str()) {
            return Err((
                "NetworkNotAllowed",
                format!(
                    "Ganeti network {name} is not offered to applications on this cluster; allowed networks: {}",
                    listing(&networks)
                ),
            ));
        }
        // Ganeti checks an explicit IP or `pool` on its network: in it, and free.
        return Ok(());
    }
    if defaults.network.is_some() {
        // The default network brings its own mode, link and address checks.
        return Ok(());
    }
    if let Some(mode) = asked.mode {
        let modes = offered(
            defaults.nic_mode.map(|m| m.as_str()),
            allowed.nic_modes.iter().map(|m| m.as_str()),
        );
        if !modes.contains(&mode.as_str()) {
            return Err((
                "NicModeNotAllowed",
                format!(
                    "NIC mode {} is not offered to applications on this cluster; allowed modes: {}",
                    mode.as_str(),
                    listing(&modes)
                ),
            ));
        }
    }
    if let Some(link) = &asked.link {
        let links = offered(
            defaults.nic_link.as_deref(),
            allowed.nic_links.iter().map(String::as_str),
        );
        if !links.contains(&link.as_str()) {
            return Err((
                "NicLinkNotAllowed",
                format!(
                    "NIC link {link} is not offered to applications on this cluster; allowed links: {}",
                    listing(&links)
                ),
            ));
        }
    }
    let Some(ip) = &asked.ip else { return Ok(()) };
    let ranges: Vec<&str> = allowed.ip_ranges.iter().map(String::as_str).collect();
    let in_range = ip
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .is_some_and(|addr| ranges.iter().any(|r| cidr_contains(r, addr)));
    if !in_range {
        return Err((
            "IpNotAllowed",
            format!(
                "IP {ip} is not offered to applications on this cluster: without a Ganeti network an IP must come from an allowed range (allowed ranges: {}); or attach to an allowed Ganeti network (allowed networks: {}), whose addresses Ganeti checks",
                listing(&ranges),
                listing(&networks)
            ),
        ));
    }
    // Outside a Ganeti network nothing else stops two VMs sharing an address.
    if let Some(holder) = inventory.instances.iter().find(|i| i.ips.iter().any(|a| a == ip)) {
        return Err((
            "IpTaken",
            format!(
                "IP {ip} is in use by instance {}: choose another address",
                holder.name
            ),
        ));
    }
    let cluster = app.spec.cluster.as_deref();
    let claimed = applications.iter().find(|a| {
        a.metadata.uid != app.metadata.uid
            && matches!(phase(a), Phase::Approved | Phase::Creating)
            && a.status
                .as_ref()
                .and_then(|s| s.cluster.as_deref())
                .or(a.spec.cluster.as_deref())
                == cluster
            && a.spec.network.as_ref().and_then(|n| n.ip.as_deref()) == Some(ip)
    });
    if let Some(other) = claimed {
        return Err((
            "IpTaken",
            format!(
                "IP {ip} is held by application {}/{}, approved and not created yet: choose another address",
                other.metadata.namespace.as_deref().unwrap_or_default(),
                other.metadata.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Whether the IPv4 CIDR `range` (e.g. `198.51.100.0/24`) holds `addr`; a malformed
/// range holds nothing.
fn cidr_contains(range: &str, addr: std::net::Ipv4Addr) -> bool {
    let Some((base, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(base), Ok(bits)) = (base.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(base) & mask == u32::from(addr) & mask
}

fn os_of<'a>(app: &'a InstanceApplication, spec: &'a GanetiClusterSpec) -> Option<&'a str> {
    app.spec.os.as_deref().or(spec.defaults.os.as_deref())
}

/// Ganeti lists an OS with variants only as `name+variant`; a bare name names its
/// default variant.
fn os_offered(os: &str, offered: &[String]) -> bool {
    offered
        .iter()
        .any(|o| o == os || (!os.contains('+') && o.split_once('+').is_some_and(|(base, _)| base == os)))
}

fn disk_template_of<'a>(spec: &GanetiClusterSpec, catalog: &'a Catalog) -> &'a str {
    match spec.defaults.disk_template {
        Some(t) => t.as_str(),
        None => catalog
            .disk_templates
            .first()
            .map(String::as_str)
            .unwrap_or("plain"),
    }
}

/// The application's ownership tag: what marks the VM as created for this owner, and
/// what a restarted operator recognises as its own when adopting an instance by name.
pub fn owner_tag(app: &InstanceApplication, prefix: &str) -> Result<String, String> {
    crate::tags::format_owner(prefix, &app.spec.owner).map_err(|e| e.to_string())
}

/// `<prefix>:app:<application UID>`: sent with the create request, so only the
/// application's own create job makes an instance carrying it (the UID is new with every
/// application, unlike its name, its hostname or its owner).
pub fn marker_tag(app: &InstanceApplication, prefix: &str) -> Result<String, String> {
    let uid = app
        .metadata
        .uid
        .as_deref()
        .ok_or_else(|| "the application has no UID yet".to_string())?;
    let tag = format!("{prefix}:app:{uid}");
    crate::tags::validate(&tag).map_err(|e| e.to_string())?;
    Ok(tag)
}

/// Whether `instance` is the one the application's own create job made: it carries the
/// application's marker and its owner tag. Its name does not matter (renamed, or the
/// spec's hostname changed).
pub fn is_ours(app: &InstanceApplication, instance: &Instance, prefix: &str) -> bool {
    let (Ok(marker), Ok(owner)) = (marker_tag(app, prefix), owner_tag(app, prefix)) else {
        return false;
    };
    instance.tags.contains(&marker) && instance.tags.contains(&owner)
}

/// The name the application creates: fixed in status at approval. (An application
/// approved before that was recorded falls back to its spec.)
pub fn approved_name(app: &InstanceApplication) -> &str {
    app.status
        .as_ref()
        .and_then(|s| s.instance_name.as_deref())
        .unwrap_or(&app.spec.hostname)
}

/// Whether the spec is still the approved one; `false` when it changed since.
pub fn spec_is_approved(app: &InstanceApplication) -> bool {
    let Some(status) = &app.status else { return false };
    let approved = status.approved_generation.or(status.observed_generation);
    approved.is_some() && approved == app.metadata.generation
}

/// Approved, but the spec changed before the create job was submitted: back to Pending,
/// where the change needs a decision of its own.
pub fn changed_after_approval(app: &InstanceApplication, now: Timestamp) -> InstanceApplicationStatus {
    let mut status = app.status.clone().unwrap_or_default();
    let approved = status
        .approved_generation
        .or(status.observed_generation)
        .unwrap_or_default();
    status.phase = Phase::Pending;
    status.approved_generation = None;
    status.instance_name = None;
    status.observed_generation = app.metadata.generation;
    conditions::set(
        &mut status.conditions,
        DECIDED,
        Status::False,
        "ChangedAfterApproval",
        format!(
            "the spec changed after generation {approved} was approved and before the VM was created; nothing was created, and the new spec needs a decision of its own"
        ),
        app.metadata.generation,
        now,
    );
    status
}

/// What became of a create job, as far as the application cares.
#[derive(Debug, Clone, Copy)]
pub enum JobOutcome<'a> {
    Succeeded,
    Failed(&'a GanetiFailure),
    /// Ganeti no longer knows the job (archived): what it did shows in Ganeti.
    Unknown,
}

/// The status once the create job `job_id` ended. `marked`: the instances Ganeti has
/// that carry the application's marker tag (see [`is_ours`]).
pub fn after_job(
    app: &InstanceApplication,
    job_id: u64,
    outcome: JobOutcome<'_>,
    marked: &[Instance],
    prefix: &str,
    now: Timestamp,
) -> InstanceApplicationStatus {
    if let JobOutcome::Failed(failure) = outcome {
        return failed(app, failure, now);
    }
    let ours: Vec<&Instance> = marked.iter().filter(|i| is_ours(app, i, prefix)).collect();
    match (ours.as_slice(), outcome) {
        ([instance], _) => created(app, instance, now),
        ([], JobOutcome::Succeeded) => failed_locally(
            app,
            "InstanceMissing",
            format!(
                "job {job_id} succeeded but Ganeti has no instance carrying this application's tags (removed meanwhile?)"
            ),
            now,
        ),
        ([], _) => failed_locally(
            app,
            "JobLost",
            format!("job {job_id} is no longer known to Ganeti and created no instance for this application"),
            now,
        ),
        (many, _) => failed_locally(
            app,
            "AmbiguousInstance",
            format!(
                "{} instances carry this application's tags ({}); an admin must sort out which is its VM",
                many.len(),
                many.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            now,
        ),
    }
}

/// Before submitting again after a restart: the instance an earlier attempt's job made,
/// if one carries the application's tags (whatever its name).
pub fn adopt(
    app: &InstanceApplication,
    marked: &[Instance],
    prefix: &str,
    now: Timestamp,
) -> Option<InstanceApplicationStatus> {
    if !marked.iter().any(|i| is_ours(app, i, prefix)) {
        return None;
    }
    let job_id = app.status.as_ref().and_then(|s| s.job_id).unwrap_or_default();
    Some(after_job(app, job_id, JobOutcome::Unknown, marked, prefix, now))
}

/// SSH keys for the VM: the application's own, then those of the owner's profiles (the
/// user, or every member of the group), without repeats.
pub fn ssh_keys(app: &InstanceApplication, profiles: &[UserProfile]) -> Vec<String> {
    let owner: &Subject = &app.spec.owner;
    let from_profiles = profiles.iter().filter(|p| match owner.kind {
        crate::api::SubjectKind::User => p.spec.username == owner.name,
        crate::api::SubjectKind::Group => p.spec.groups.contains(&owner.name),
    });
    let mut keys: Vec<String> = Vec::new();
    for key in app
        .spec
        .ssh_keys
        .iter()
        .chain(from_profiles.flat_map(|p| p.spec.ssh_keys.iter()))
    {
        let key = key.trim();
        if !key.is_empty() && !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }
    keys
}

/// The `POST /2/instances` body for an approved application.
pub fn create_request(
    app: &InstanceApplication,
    spec: &GanetiClusterSpec,
    catalog: &Catalog,
    prefix: &str,
    profiles: &[UserProfile],
) -> Result<InstanceCreate, String> {
    let template = disk_template_of(spec, catalog);
    let mut req = InstanceCreate::new(app.spec.hostname.clone(), template);
    if template != DiskTemplate::Diskless.as_str() {
        for disk in &app.spec.disks {
            let size = parse_bytes(&disk.size).map_err(|e| format!("disk size {}: {e}", disk.size))?;
            req.disks.push(DiskSpec {
                size: size.mebibytes_ceil(),
                ..Default::default()
            });
        }
    }
    let network = app.spec.network.clone().unwrap_or_default();
    let defaults = &spec.defaults;
    let ganeti_network = network.name.or_else(|| defaults.network.clone());
    req.nics.push(NicSpec {
        // A Ganeti network brings its own mode and link.
        mode: if ganeti_network.is_some() {
            None
        } else {
            network.mode.or(defaults.nic_mode).map(|m| m.as_str().to_string())
        },
        link: if ganeti_network.is_some() {
            None
        } else {
            network.link.or_else(|| defaults.nic_link.clone())
        },
        ip: network.ip,
        network: ganeti_network,
        ..Default::default()
    });
    req.os_type = os_of(app, spec).map(str::to_string);
    req.hypervisor = defaults.hypervisor.map(|h| h.as_str().to_string());
    req.iallocator = defaults.iallocator.clone();
    if req.iallocator.is_none() {
        req.pnode = defaults.primary_node.clone();
    }
    let memory = parse_bytes(&app.spec.memory).map_err(|e| format!("memory {}: {e}", app.spec.memory))?;
    req.beparams = BeParams {
        vcpus: Some(app.spec.vcpus),
        maxmem: Some(memory.mebibytes_ceil()),
        minmem: Some(memory.mebibytes_ceil()),
    };
    let keys = ssh_keys(app, profiles);
    if let Some(param) = &defaults.ssh_keys_os_parameter
        && !keys.is_empty()
    {
        req.osparams.insert(param.clone(), keys.join("\n"));
    }
    req.tags.push(owner_tag(app, prefix)?);
    req.tags.push(marker_tag(app, prefix)?);
    req.start = Some(true);
    Ok(req)
}

/// The `reason=` of the create job: which application, whose, approved by whom.
pub fn create_reason(app: &InstanceApplication) -> String {
    let approval = match app
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, DECIDED))
    {
        Some(c) if c.reason == "AutoApproved" => "auto-approved".to_string(),
        _ => format!("approved by {}", decider(app)),
    };
    format!(
        "ganeti-operator: InstanceApplication {}/{} of {}, {approval}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default(),
        applicant(app),
    )
}

fn transition(app: &InstanceApplication) -> (InstanceApplicationStatus, Option<i64>) {
    let mut status = app.status.clone().unwrap_or_default();
    // The generation the status describes stays the approved one: spec edits after
    // the approval are not carried out.
    if status.observed_generation.is_none() {
        status.observed_generation = app.metadata.generation;
    }
    let generation = status.approved_generation.or(status.observed_generation);
    (status, generation)
}

/// The create job was submitted (or one found running under the application's name).
pub fn submitted(
    app: &InstanceApplication,
    job_id: u64,
    adopted: bool,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Creating;
    status.job_id = Some(job_id);
    status.instance_name = Some(approved_name(app).to_string());
    let how = if adopted { "found running" } else { "submitted" };
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        "Creating",
        format!("Ganeti job {job_id} ({how}) creates the instance"),
        generation,
        now,
    );
    status
}

/// The VM exists: the instance the application's own job made (see [`is_ours`]).
fn created(app: &InstanceApplication, instance: &Instance, now: Timestamp) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Created;
    status.instance_name = Some(instance.name.clone());
    status.instance_uuid = Some(instance.uuid.clone()).filter(|u| !u.is_empty());
    status.primary_node = Some(instance.primary_node.clone()).filter(|n| !n.is_empty());
    status.ips = instance.ips.clone();
    status.ganeti_error = None;
    let at = instance
        .ctime
        .and_then(|t| Timestamp::from_duration(k8s_openapi::jiff::SignedDuration::from_secs_f64(t)).ok())
        .unwrap_or(now);
    status.created_time = Some(Time(at));
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::True,
        "Created",
        format!("instance {} runs on {}", instance.name, instance.primary_node),
        generation,
        now,
    );
    status
}

/// Ganeti refused or failed to create the VM.
pub fn failed(
    app: &InstanceApplication,
    failure: &GanetiFailure,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Failed;
    status.instance_uuid = None;
    status.ganeti_error = Some(GanetiError {
        message: failure.message.clone(),
        code: failure.ecode.as_ref().map(|c| c.as_str().to_string()),
    });
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        "CreateFailed",
        format!(
            "Ganeti could not create the instance: {failure}. To try again, file a new application (or an admin edits this one and decides again)."
        ),
        generation,
        now,
    );
    status
}

/// A failure the operator itself found (no Ganeti job), e.g. the name taken meanwhile.
pub fn failed_locally(
    app: &InstanceApplication,
    error_type: &str,
    message: String,
    now: Timestamp,
) -> InstanceApplicationStatus {
    failed(
        app,
        &GanetiFailure {
            error_type: error_type.to_string(),
            message,
            ecode: None,
        },
        now,
    )
}

/// The mail the applicant is owed, if any: one per phase they care about and spec
/// generation. `Creating` is still "approved" to them.
pub fn mail_due(app: &InstanceApplication) -> Option<MailKind> {
    let status = app.status.as_ref()?;
    let kind = match status.phase {
        Phase::Pending => return None,
        Phase::Approved | Phase::Creating => MailKind::Approved,
        Phase::Rejected => MailKind::Rejected,
        Phase::Created => MailKind::Created,
        Phase::Failed => MailKind::Failed,
    };
    match conditions::get(&status.conditions, APPLICANT_NOTIFIED) {
        Some(c) if c.reason == kind.as_str() && c.observed_generation == status.observed_generation => None,
        _ => Some(kind),
    }
}

/// Records that the applicant's mail about `kind` is done with (sent, or impossible).
pub fn notified(
    app: &InstanceApplication,
    kind: MailKind,
    sent: bool,
    message: String,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let mut status = app.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        APPLICANT_NOTIFIED,
        Status::from(sent),
        kind.as_str(),
        message,
        status.observed_generation,
        now,
    );
    status
}

/// The transitions the applicant is mailed about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Approved,
    Rejected,
    Created,
    Failed,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Approved => "Approved",
            MailKind::Rejected => "Rejected",
            MailKind::Created => "Created",
            MailKind::Failed => "Failed",
        }
    }
}

/// Subject and body of the applicant's mail.
pub fn mail_text(app: &InstanceApplication, kind: MailKind) -> (String, String) {
    let host = match kind {
        MailKind::Rejected => &app.spec.hostname,
        _ => approved_name(app),
    };
    let status = app.status.clone().unwrap_or_default();
    let cluster = status.cluster.as_deref().unwrap_or("(not chosen)");
    let name = format!(
        "{}/{}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    );
    let decided = app
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, DECIDED))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let greeting = format!("Hello {},\n\n", applicant(app));
    let footer = format!(
        "\n\nApplication: {name} (kubectl get instanceapplication -n {} {})\n-- \nganeti-operator\n",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    );
    let (subject, text) = match kind {
        MailKind::Approved => (
            format!("VM {host}: application approved"),
            format!(
                "your application for the VM {host} on cluster {cluster} was approved ({decided}).\nThe VM is being created; you will get another mail when it is ready."
            ),
        ),
        MailKind::Rejected => (
            format!("VM {host}: application rejected"),
            format!("your application for the VM {host} was not approved: {decided}."),
        ),
        MailKind::Created => (
            format!("VM {host} is ready"),
            format!(
                "your VM {host} was created on cluster {cluster}.\nPrimary node: {}\nIP addresses: {}",
                status.primary_node.as_deref().unwrap_or("-"),
                if status.ips.is_empty() {
                    "-".to_string()
                } else {
                    status.ips.join(", ")
                }
            ),
        ),
        MailKind::Failed => (
            format!("VM {host}: creation failed"),
            format!(
                "Ganeti could not create your VM {host}: {}.\nFile a new application to try again, or reply to ask an admin.",
                status
                    .ganeti_error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("unknown error")
            ),
        ),
    };
    (subject, format!("{greeting}{text}{footer}"))
}

#[cfg(test)]
mod tests;
