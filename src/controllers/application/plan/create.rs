//! The create request and the tags that make the VM recognisably the application's.

use super::{Catalog, DECIDED, applicant, decider};
use crate::api::application::InstanceApplication;
use crate::api::cluster::{DiskTemplate, GanetiClusterSpec};
use crate::api::common::Subject;
use crate::api::conditions;
use crate::api::profile::UserProfile;
use crate::api::quantity::parse_bytes;
use crate::inventory::Instance;
use crate::rapi::{BeParams, DiskSpec, InstanceCreate, NicSpec};

pub(super) fn os_of<'a>(app: &'a InstanceApplication, spec: &'a GanetiClusterSpec) -> Option<&'a str> {
    app.spec.os.as_deref().or(spec.defaults.os.as_deref())
}

pub(super) fn disk_template_of<'a>(spec: &GanetiClusterSpec, catalog: &'a Catalog) -> &'a str {
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
        "ganeti-operator: InstanceApplication {} of {}, {approval}",
        app.key(),
        applicant(app),
    )
}
