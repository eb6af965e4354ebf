//! What an InstanceApplication needs next, decided without IO: validation, quota,
//! approval, the create request, and each phase transition's status.
//!
//! Phases: Pending → Approved → Creating → Created, or Rejected, or Failed. A new spec
//! generation re-evaluates a Pending, Rejected or Failed application from scratch (so an
//! edited Failed application is tried again); once approved, spec edits are ignored: the
//! VM is being, or has been, created from the approved spec.

use crate::api::application::{GanetiError, InstanceApplication, InstanceApplicationStatus, Phase, Verdict};
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

pub fn phase(app: &InstanceApplication) -> Phase {
    app.status.as_ref().map(|s| s.phase).unwrap_or_default()
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
    // A fresh attempt: nothing of a previous one (job, Ganeti's error) applies any more.
    status.phase = Phase::Pending;
    status.observed_generation = generation;
    status.job_id = None;
    status.ganeti_error = None;
    status.instance_name = None;
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

    if let Some(d) = &app.spec.decision
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

    let validation = validate(app, &p.cluster);
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

    let approved_by_admin = app
        .spec
        .decision
        .as_ref()
        .is_some_and(|d| d.verdict == Verdict::Approved);
    let approved = validation.is_ok() && fits && (approved_by_admin || p.may_self_approve);
    if approved {
        status.phase = Phase::Approved;
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
        let previous = app
            .status
            .as_ref()
            .and_then(|s| conditions::get(&s.conditions, DECIDED));
        // Said once per change, not on every resync.
        if previous.is_none_or(|c| c.message != message) {
            note = Some(Note {
                warning: true,
                reason,
                message,
            });
        }
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

/// The cluster exists, is ready, offers the OS and disk template, and the name is free.
fn validate(app: &InstanceApplication, cluster: &ClusterView<'_>) -> Result<(), (&'static str, String)> {
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

/// Whether an instance found under the application's name is the one it created.
pub fn is_ours(app: &InstanceApplication, instance: &Instance, prefix: &str) -> bool {
    owner_tag(app, prefix).is_ok_and(|tag| instance.tags.contains(&tag))
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
    // Spec edits after approval are ignored, so the generation the status describes
    // stays the approved one.
    if status.observed_generation.is_none() {
        status.observed_generation = app.metadata.generation;
    }
    let generation = status.observed_generation;
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
    status.instance_name = Some(app.spec.hostname.clone());
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

/// The VM exists: from the finished job, or found by name.
pub fn created(app: &InstanceApplication, instance: &Instance, now: Timestamp) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Created;
    status.instance_name = Some(instance.name.clone());
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
    status.ganeti_error = Some(GanetiError {
        message: failure.message.clone(),
        code: failure.ecode.as_ref().map(|c| c.as_str().to_string()),
    });
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        "CreateFailed",
        format!("Ganeti could not create the instance: {failure}. Edit the application to try again."),
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
    let host = &app.spec.hostname;
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
                "Ganeti could not create your VM {host}: {}.\nEdit the application to try again, or reply to ask an admin.",
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
