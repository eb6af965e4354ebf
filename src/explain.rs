//! `ganeti-operator explain <user> <right> [<cluster>[/<instance>]] [--group g]...`: the
//! decision the engine makes for a user, and which roles, bindings and tags made it.
//!
//! Roles and bindings come from the API server, as the operator sees them. A VM's tags
//! (owners, GWM grants, locks) come straight from Ganeti through the cluster's RAPI with
//! the GanetiCluster's credentials, so the answer reflects tags written a moment ago by
//! anyone; without access to those credentials it explains without tags and says so.
//! The credentials are read as the operator reads them ([`crate::clusters`]): only from a
//! Secret labelled as RAPI credentials, and `insecure` only with `--allow-insecure-rapi`.

use crate::api::profile::UserProfile;
use crate::api::role::{ClusterRight, SystemRight, VmRight};
use crate::api::{GanetiCluster, Role, RoleBinding};
use crate::authz::{AuthzIndex, Principal, Request, Right};
use crate::clusters::{self, Policy};
use anyhow::Context as _;
use kube::api::{Api, ListParams};
use std::fmt::Write as _;

/// What is asked: a right, and the object for VM and cluster rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub right: Right,
    pub cluster: Option<String>,
    pub instance: Option<String>,
}

fn names<T: std::fmt::Display>(all: &[T]) -> String {
    all.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Parses `right` (`reboot`, `vms.reboot`, `clusters.createVm`, `system.jobs`) and the
/// object (`cluster/instance`, `cluster`, or none for system rights). A bare right is a
/// VM right on `cluster/instance`, a cluster right on `cluster`, a system right alone.
pub fn parse_question(right: &str, object: Option<&str>) -> Result<Question, String> {
    let (cluster, instance) = match object {
        Some(o) => match o.split_once('/') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => (Some(c.to_owned()), Some(i.to_owned())),
            Some(_) => return Err(format!("{o:?}: write a VM as <cluster>/<instance>")),
            None if !o.is_empty() => (Some(o.to_owned()), None),
            None => (None, None),
        },
        None => (None, None),
    };
    let (kind, name) = match right.split_once('.') {
        Some((k, n)) => (Some(k), n),
        None => (None, right),
    };
    let kind = kind.unwrap_or(match (&cluster, &instance) {
        (Some(_), Some(_)) => "vms",
        (Some(_), None) => "clusters",
        _ => "system",
    });
    let parsed = match kind {
        "vms" => VmRight::parse(name)
            .map(Right::Vm)
            .ok_or_else(|| names(VmRight::ALL)),
        "clusters" => ClusterRight::parse(name)
            .map(Right::Cluster)
            .ok_or_else(|| names(ClusterRight::ALL)),
        "system" => SystemRight::parse(name)
            .map(Right::System)
            .ok_or_else(|| names(SystemRight::ALL)),
        other => {
            return Err(format!(
                "{other:?}: rights are vms.<right>, clusters.<right> or system.<right>"
            ));
        }
    };
    let right = parsed.map_err(|valid| format!("{name:?} is not a {kind} right; those are: {valid}"))?;
    match (right, &cluster, &instance) {
        (Right::Vm(_), Some(_), Some(_))
        | (Right::Cluster(_), Some(_), None)
        | (Right::System(_), None, None) => {}
        (Right::Vm(_), _, _) => {
            return Err(format!(
                "{right} is asked of a VM: give it as <cluster>/<instance>"
            ));
        }
        (Right::Cluster(_), _, _) => {
            return Err(format!("{right} is asked of a cluster: give its name alone"));
        }
        (Right::System(_), _, _) => return Err(format!("{right} is a right on the service: give no object")),
    }
    Ok(Question {
        right,
        cluster,
        instance,
    })
}

impl Question {
    pub fn request(&self) -> Request<'_> {
        match self.right {
            Right::Vm(right) => Request::Vm {
                cluster: self.cluster.as_deref().unwrap_or_default(),
                instance: self.instance.as_deref().unwrap_or_default(),
                right,
            },
            Right::Cluster(right) => Request::Cluster {
                cluster: self.cluster.as_deref().unwrap_or_default(),
                right,
            },
            Right::System(right) => Request::System(right),
        }
    }
}

/// A VM's tags as Ganeti has them: `Ok(None)` when Ganeti has no instance of exactly
/// that name (Ganeti would answer for a unique prefix: that is another VM).
async fn ganeti_tags(
    client: &kube::Client,
    secrets_namespace: &str,
    cluster: &GanetiCluster,
    instance: &str,
    policy: Policy,
) -> anyhow::Result<Option<Vec<String>>> {
    let secret = clusters::fetch_secret(client, secrets_namespace, &cluster.spec).await?;
    let rapi = clusters::connect(&cluster.spec, &secret, policy)?;
    Ok(crate::access::read_exact(&rapi, instance).await?.map(|i| i.tags))
}

/// Explains one question; returns whether it is allowed and the text to print.
pub async fn explain(
    client: &kube::Client,
    secrets_namespace: &str,
    user: &str,
    groups: &[String],
    question: &Question,
    policy: Policy,
) -> anyhow::Result<(bool, String)> {
    let lp = ListParams::default();
    let roles = Api::<Role>::all(client.clone())
        .list(&lp)
        .await
        .context("listing Roles")?
        .items;
    let bindings = Api::<RoleBinding>::all(client.clone())
        .list(&lp)
        .await
        .context("listing RoleBindings")?
        .items;
    let mut out = String::new();
    let mut builder = AuthzIndex::builder().roles(&roles).bindings(&bindings);
    if let (Some(cluster), Some(instance)) = (&question.cluster, &question.instance) {
        match Api::<GanetiCluster>::all(client.clone()).get_opt(cluster).await? {
            None => {
                let _ = writeln!(out, "note: there is no GanetiCluster {cluster}");
            }
            Some(gc) => {
                let prefix = gc
                    .spec
                    .tag_prefix
                    .clone()
                    .unwrap_or_else(|| crate::tags::DEFAULT_PREFIX.to_owned());
                // GWM ids read as the operator reads them: with the cluster's id map.
                let (gwm, _) = crate::clusters::gwm::load(client, secrets_namespace, &gc.spec)
                    .await
                    .context("reading the cluster's GWM id map")?;
                if let Some((_, why)) = &gwm.problem {
                    let _ = writeln!(out, "note: {why}");
                }
                let reader = crate::tags::Reader {
                    prefix: &prefix,
                    ids: gwm.ids.as_deref(),
                };
                match ganeti_tags(client, secrets_namespace, &gc, instance, policy).await {
                    Ok(Some(tags)) => {
                        let _ = writeln!(out, "tags of {cluster}/{instance} in Ganeti: {}", tags.join(" "));
                        for t in &tags {
                            match reader.parse(t) {
                                Some(crate::tags::ParsedTag::GwmId { kind, id, .. }) => {
                                    let _ = writeln!(
                                        out,
                                        "tag {t}: GWM {} id {id} is not in the cluster's id map: it grants nothing",
                                        match kind {
                                            crate::api::common::SubjectKind::User => "user",
                                            crate::api::common::SubjectKind::Group => "group",
                                        }
                                    );
                                }
                                Some(crate::tags::ParsedTag::GwmGrant { subject, .. })
                                    if crate::tags::parse(t, &prefix) != reader.parse(t) =>
                                {
                                    let _ = writeln!(
                                        out,
                                        "tag {t}: GWM id of {subject} (id map {})",
                                        gwm.id_map.as_deref().unwrap_or_default()
                                    );
                                }
                                _ => {}
                            }
                        }
                        builder = builder.instance(cluster, instance, &tags, reader);
                    }
                    Ok(None) => {
                        let _ = writeln!(out, "note: Ganeti has no instance {instance} on {cluster}");
                    }
                    Err(e) => {
                        let _ = writeln!(
                            out,
                            "note: the tags of {cluster}/{instance} could not be read ({e:#}); explaining without them"
                        );
                    }
                }
            }
        }
    }
    // A user's profile groups count as theirs, as everywhere in the service.
    let profiles = Api::<UserProfile>::all(client.clone())
        .list(&lp)
        .await
        .context("listing UserProfiles")?
        .items;
    let mut all_groups = groups.to_vec();
    for g in profiles
        .iter()
        .filter(|p| p.spec.username == user)
        .flat_map(|p| &p.spec.groups)
    {
        if !all_groups.contains(g) {
            let _ = writeln!(out, "group {g} from {user}'s UserProfile");
            all_groups.push(g.clone());
        }
    }
    let index = builder.build();
    let p = Principal::new(user, &all_groups);
    let request = question.request();
    out.push_str(&index.explain(&p, &request));
    let mut allowed = index.decide(&p, &request).allowed;
    if let (Right::Vm(vm_right), Some(cluster)) = (question.right, &question.cluster)
        && let Some(cluster_right) = crate::access::cluster_right_for(vm_right)
    {
        let request = Request::Cluster {
            cluster,
            right: cluster_right,
        };
        let _ = writeln!(
            out,
            "\nvms.{vm_right} also needs clusters.{cluster_right} on {cluster}:"
        );
        out.push_str(&index.explain(&p, &request));
        allowed &= index.decide(&p, &request).allowed;
    }
    if let Right::System(right) = question.right
        && crate::authz::holders::ADMISSION_RIGHTS.contains(&right)
        && !crate::authz::has_administrator_binding(&bindings)
    {
        let _ = writeln!(
            out,
            "\nnote: no un-narrowed binding to administrator exists yet, so members of the \
             installation's admin groups (and system:masters) also hold system.{right} at admission, \
             unless a role forbids it"
        );
    }
    Ok((allowed, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_parse_with_and_without_kinds() {
        let q = parse_question("reboot", Some("prod/web1.example.org")).unwrap();
        assert_eq!(q.right, Right::Vm(VmRight::Reboot));
        assert_eq!(q.instance.as_deref(), Some("web1.example.org"));
        assert_eq!(
            parse_question("vms.replaceDisks", Some("p/i")).unwrap().right,
            Right::Vm(VmRight::ReplaceDisks)
        );
        assert_eq!(
            parse_question("createVm", Some("prod")).unwrap().right,
            Right::Cluster(ClusterRight::CreateVm)
        );
        assert_eq!(
            parse_question("system.jobs", None).unwrap().right,
            Right::System(SystemRight::Jobs)
        );
        assert_eq!(
            parse_question("audit", None).unwrap().right,
            Right::System(SystemRight::Audit)
        );
    }

    #[test]
    fn mistakes_say_what_is_expected() {
        let e = parse_question("fly", Some("p/i")).unwrap_err();
        assert!(e.contains("not a vms right") && e.contains("reboot"), "{e}");
        let e = parse_question("vms.reboot", Some("prod")).unwrap_err();
        assert!(e.contains("<cluster>/<instance>"), "{e}");
        let e = parse_question("clusters.view", None).unwrap_err();
        assert!(e.contains("give its name"), "{e}");
        let e = parse_question("system.jobs", Some("p")).unwrap_err();
        assert!(e.contains("no object"), "{e}");
        assert!(parse_question("reboot", Some("/i")).is_err());
        assert!(
            parse_question("nodes.x", None)
                .unwrap_err()
                .contains("vms.<right>")
        );
    }
}
