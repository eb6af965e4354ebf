//! Whether the cluster can carry out what an application asks for.

use super::create::{disk_template_of, os_of};
use super::{ClusterView, phase};
use crate::api::application::{InstanceApplication, Phase};
use crate::api::cluster::GanetiClusterSpec;
use crate::inventory::ClusterInventory;

/// The owner is not a reserved group, the cluster exists, is ready, offers the OS, disk
/// template and network asked for, and the name is free.
pub(super) fn validate(
    app: &InstanceApplication,
    cluster: &ClusterView<'_>,
    applications: &[InstanceApplication],
) -> Result<(), (&'static str, String)> {
    owner_allowed(app)?;
    let (_, spec, inventory, catalog) = ready(cluster)?;
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

/// The owner may own a VM: not `system:authenticated` and the like (everyone, or
/// Kubernetes' own identities).
pub(super) fn owner_allowed(app: &InstanceApplication) -> Result<(), (&'static str, String)> {
    let owner = &app.spec.owner;
    if owner.kind == crate::api::SubjectKind::Group && owner.name.starts_with("system:") {
        return Err((
            "ReservedGroup",
            format!(
                "group {} is reserved by Kubernetes and cannot own a VM: name a group of people",
                owner.name
            ),
        ));
    }
    Ok(())
}

/// The cluster, if it was chosen, exists and is ready: its name, spec, inventory and
/// catalog.
pub(super) fn ready<'a>(
    cluster: &ClusterView<'a>,
) -> Result<
    (
        &'a str,
        &'a GanetiClusterSpec,
        &'a ClusterInventory,
        &'a super::Catalog,
    ),
    (&'static str, String),
> {
    match *cluster {
        ClusterView::Unchosen => Err((
            "NoCluster",
            "no cluster chosen: set spec.cluster (an admin may choose one)".into(),
        )),
        ClusterView::Missing(name) => Err((
            "ClusterNotFound",
            format!("GanetiCluster {name} does not exist: name one that `kubectl get ganeticlusters` lists"),
        )),
        ClusterView::NotReady { name, message } => Err((
            "ClusterNotReady",
            format!("GanetiCluster {name} is not ready: {message}"),
        )),
        ClusterView::Ready {
            name,
            spec,
            inventory,
            catalog,
        } => Ok((name, spec, inventory, catalog)),
    }
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
                "IP {ip} is held by application {}, approved and not created yet: choose another address",
                other.key()
            ),
        ));
    }
    Ok(())
}

/// Whether the IPv4 CIDR `range` (e.g. `198.51.100.0/24`) holds `addr`; a malformed
/// range holds nothing.
pub(super) fn cidr_contains(range: &str, addr: std::net::Ipv4Addr) -> bool {
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

/// Ganeti lists an OS with variants only as `name+variant`; a bare name names its
/// default variant.
fn os_offered(os: &str, offered: &[String]) -> bool {
    offered
        .iter()
        .any(|o| o == os || (!os.contains('+') && o.split_once('+').is_some_and(|(base, _)| base == os)))
}
