//! The actions a user may take on a VM, as named in the URL, and their parameters
//! checked into a [`Plan`] (400 material) before anything is authorized or sent. Pure.

use crate::api::role::VmRight;
use crate::rapi::{
    InstanceExport, InstanceMigrate, InstanceReplaceDisks, Job, MigrationMode, RebootType, ReplaceDisksMode,
};
use serde::Deserialize;
use std::time::Duration;

/// An action on a VM, as named in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Startup,
    Shutdown,
    Reboot,
    Migrate,
    ReplaceDisks,
    Export,
    Rename,
    Reinstall,
    Destroy,
    Resize,
    Tags,
    Lock,
    Unlock,
    Isolate,
    Unisolate,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Self::Startup,
        Self::Shutdown,
        Self::Reboot,
        Self::Migrate,
        Self::ReplaceDisks,
        Self::Export,
        Self::Rename,
        Self::Reinstall,
        Self::Destroy,
        Self::Resize,
        Self::Tags,
        Self::Lock,
        Self::Unlock,
        Self::Isolate,
        Self::Unisolate,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Shutdown => "shutdown",
            Self::Reboot => "reboot",
            Self::Migrate => "migrate",
            Self::ReplaceDisks => "replace-disks",
            Self::Export => "export",
            Self::Rename => "rename",
            Self::Reinstall => "reinstall",
            Self::Destroy => "destroy",
            Self::Resize => "resize",
            Self::Tags => "tags",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::Isolate => "isolate",
            Self::Unisolate => "unisolate",
        }
    }

    pub fn right(self) -> VmRight {
        match self {
            Self::Startup => VmRight::Start,
            Self::Shutdown => VmRight::Shutdown,
            Self::Reboot => VmRight::Reboot,
            Self::Migrate => VmRight::Migrate,
            Self::ReplaceDisks => VmRight::ReplaceDisks,
            Self::Export => VmRight::Export,
            Self::Rename => VmRight::Rename,
            Self::Reinstall => VmRight::Reinstall,
            Self::Destroy => VmRight::Destroy,
            Self::Resize => VmRight::Modify,
            Self::Tags => VmRight::Tags,
            Self::Lock | Self::Unlock => VmRight::Lock,
            Self::Isolate | Self::Unisolate => VmRight::Isolate,
        }
    }

    /// Needs a mailed confirmation.
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Rename | Self::Reinstall | Self::Destroy)
    }

    /// The body fields the action takes (camelCase, as in [`ActionParams`]).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Startup | Self::Destroy | Self::Lock | Self::Unlock | Self::Isolate | Self::Unisolate => {
                &[]
            }
            Self::Shutdown => &["timeoutSeconds"],
            Self::Reboot => &["type"],
            Self::Migrate => &["mode", "cleanup", "targetNode"],
            Self::ReplaceDisks => &["mode", "remoteNode", "iallocator", "disks"],
            Self::Export => &["targetNode", "mode", "shutdown", "removeInstance"],
            Self::Rename => &["newName"],
            Self::Reinstall => &["os"],
            Self::Resize => &["vcpus", "memory", "growDisk"],
            Self::Tags => &["add", "remove"],
        }
    }
}

/// The optional JSON body of an action; which fields each action takes is
/// [`Action::fields`].
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionParams {
    /// reboot: soft (default), hard or full.
    #[serde(default, rename = "type")]
    pub reboot_type: Option<String>,
    /// shutdown: seconds before Ganeti forces the VM off.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// rename: the new name.
    #[serde(default)]
    pub new_name: Option<String>,
    /// reinstall: the OS (default: the current one).
    #[serde(default)]
    pub os: Option<String>,
    /// migrate: live or non-live (default: the hypervisor's); replace-disks: one of
    /// Ganeti's four modes (default replace_auto); export: local (the default; remote
    /// exports are not offered).
    #[serde(default)]
    pub mode: Option<String>,
    /// migrate: clean up after a failed migration instead of migrating.
    #[serde(default)]
    pub cleanup: Option<bool>,
    /// migrate: the node to migrate to (instances on shared or no storage); export:
    /// the node that keeps the export (required).
    #[serde(default)]
    pub target_node: Option<String>,
    /// replace-disks with replace_new_secondary: the new secondary node...
    #[serde(default)]
    pub remote_node: Option<String>,
    /// ...or the allocator that chooses it.
    #[serde(default)]
    pub iallocator: Option<String>,
    /// replace-disks on primary or secondary: the disk indices (default: all).
    #[serde(default)]
    pub disks: Option<Vec<u8>>,
    /// export: shut the VM down first (Ganeti's default: yes).
    #[serde(default)]
    pub shutdown: Option<bool>,
    /// export: must not be true here (removing the VM is destroy, confirmed by mail).
    #[serde(default)]
    pub remove_instance: Option<bool>,
    /// resize: the new number of vCPUs.
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// resize: the new memory, as a Kubernetes quantity (`2Gi`).
    #[serde(default)]
    pub memory: Option<String>,
    /// resize: grow one disk (a request of its own: Ganeti runs it as another job).
    #[serde(default)]
    pub grow_disk: Option<GrowDisk>,
    /// tags: free-form tags to add...
    #[serde(default)]
    pub add: Option<Vec<String>>,
    /// ...or to remove (one or the other per request: each is one Ganeti job).
    #[serde(default)]
    pub remove: Option<Vec<String>>,
}

/// resize: which disk grows, by how much (a Kubernetes quantity).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrowDisk {
    pub index: u8,
    pub by: String,
}

/// What a resize changes: backend parameters, or one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizePlan {
    Parameters {
        vcpus: Option<u32>,
        memory_mib: Option<u64>,
    },
    GrowDisk {
        index: u8,
        by_mib: u64,
    },
}

/// Tags to add or remove (checked against the cluster's reserved prefixes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagsPlan {
    Add(Vec<String>),
    Remove(Vec<String>),
}

/// At most this many tags per request.
pub const MAX_TAGS_PER_REQUEST: usize = 32;
/// vCPUs a resize may ask for (Ganeti's own upper bound is the hypervisor's).
pub const MAX_VCPUS: u32 = 256;
/// The smallest memory Ganeti's default instance policy allows.
pub const MIN_MEMORY_MIB: u64 = 128;

/// What to run, with its parameters checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Startup,
    Shutdown(Option<Duration>),
    Reboot(RebootType),
    Migrate(InstanceMigrate),
    ReplaceDisks(InstanceReplaceDisks),
    Export(InstanceExport),
    Rename(String),
    Reinstall(Option<String>),
    Destroy,
    Resize(ResizePlan),
    Tags(TagsPlan),
    /// Set (`on`) or clear one of ganetimgr's flag tags (`ganetimgr:adminlock`,
    /// `ganetimgr:isolate`), which the reserved-prefix rule keeps from `tags`.
    Flag {
        tag: &'static str,
        on: bool,
    },
}

/// ganetimgr's admin lock: owners' actions are refused while it is set.
pub const ADMINLOCK_TAG: &str = "ganetimgr:adminlock";
/// ganetimgr's isolation: the nodes' network hooks cut the VM off while it is set.
pub const ISOLATE_TAG: &str = "ganetimgr:isolate";

/// Checks an action's parameters (400 material). Pure.
pub fn plan(action: Action, body: &[u8]) -> Result<Plan, String> {
    let name = action.as_str();
    let object = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => return Err(format!("the body of {name} is a JSON object")),
            Err(e) => return Err(format!("the body is not valid JSON for {name}: {e}")),
        }
    };
    if let Some(key) = object.keys().find(|k| !action.fields().contains(&k.as_str())) {
        return Err(match action.fields() {
            [] => format!("{name} takes no {key}"),
            fields => format!("{name} takes no {key}; it takes {}", fields.join(", ")),
        });
    }
    let params: ActionParams = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("bad parameters for {name}: {e}"))?;
    let node = |field: &str, value: Option<String>| match value {
        Some(n) if !is_hostname(&n) => Err(format!("{field} {n:?} is not a valid node name")),
        v => Ok(v),
    };
    Ok(match action {
        Action::Startup => Plan::Startup,
        Action::Shutdown => match params.timeout_seconds {
            Some(t) if t > 3600 => return Err("timeoutSeconds is at most 3600".into()),
            t => Plan::Shutdown(t.map(Duration::from_secs)),
        },
        Action::Reboot => Plan::Reboot(match params.reboot_type.as_deref() {
            None | Some("soft") => RebootType::Soft,
            Some("hard") => RebootType::Hard,
            Some("full") => RebootType::Full,
            Some(other) => return Err(format!("type {other:?} is not one of soft, hard, full")),
        }),
        Action::Migrate => Plan::Migrate(InstanceMigrate {
            mode: match params.mode.as_deref() {
                None => None,
                Some("live") => Some(MigrationMode::Live),
                Some("non-live") => Some(MigrationMode::NonLive),
                Some(other) => return Err(format!("mode {other:?} is not one of live, non-live")),
            },
            cleanup: params.cleanup,
            target_node: node("targetNode", params.target_node)?,
        }),
        Action::ReplaceDisks => plan_replace_disks(params)?,
        Action::Export => {
            if let Some(mode) = params.mode.as_deref().filter(|m| *m != "local") {
                return Err(format!(
                    "mode {mode:?}: only local exports are offered (a remote one needs Ganeti's \
                     X509 handshake between clusters)"
                ));
            }
            if params.remove_instance == Some(true) {
                return Err(
                    "removeInstance cannot be true here: removing the VM is destroy, confirmed by mail"
                        .into(),
                );
            }
            let target = node("targetNode", params.target_node)?.ok_or("export needs targetNode")?;
            Plan::Export(InstanceExport::local(target, params.shutdown))
        }
        Action::Rename => {
            let name = params.new_name.ok_or("rename needs newName")?;
            if !is_hostname(&name) {
                return Err(format!("newName {name:?} is not a valid host name"));
            }
            Plan::Rename(name)
        }
        Action::Reinstall => {
            if let Some(os) = &params.os
                && !is_ganeti_name(os)
            {
                return Err(format!("os {os:?} is not a valid OS name"));
            }
            Plan::Reinstall(params.os)
        }
        Action::Destroy => Plan::Destroy,
        Action::Resize => plan_resize(params)?,
        Action::Lock => Plan::Flag {
            tag: ADMINLOCK_TAG,
            on: true,
        },
        Action::Unlock => Plan::Flag {
            tag: ADMINLOCK_TAG,
            on: false,
        },
        Action::Isolate => Plan::Flag {
            tag: ISOLATE_TAG,
            on: true,
        },
        Action::Unisolate => Plan::Flag {
            tag: ISOLATE_TAG,
            on: false,
        },
        Action::Tags => Plan::Tags(match (params.add, params.remove) {
            (Some(_), Some(_)) => return Err("give add or remove, not both (each is one Ganeti job)".into()),
            (None, None) => return Err("tags needs add or remove: a list of tags".into()),
            (Some(t), None) | (None, Some(t)) if t.is_empty() || t.len() > MAX_TAGS_PER_REQUEST => {
                return Err(format!("give 1 to {MAX_TAGS_PER_REQUEST} tags"));
            }
            (Some(t), None) => TagsPlan::Add(t),
            (None, Some(t)) => TagsPlan::Remove(t),
        }),
    })
}

fn plan_resize(params: ActionParams) -> Result<Plan, String> {
    const MIB: u64 = 1 << 20;
    let mib = |field: &str, q: &str| {
        let bytes = crate::api::quantity::parse_bytes(q).map_err(|e| format!("{field} {q:?}: {e}"))?;
        if bytes.0 % MIB != 0 {
            return Err(format!("{field} {q:?} is not a whole number of MiB"));
        }
        Ok(bytes.0 / MIB)
    };
    let parameters = params.vcpus.is_some() || params.memory.is_some();
    match (parameters, params.grow_disk) {
        (true, Some(_)) => {
            Err("give vcpus and memory, or growDisk, not both: Ganeti runs them as separate jobs".into())
        }
        (false, None) => Err("resize needs vcpus, memory or growDisk".into()),
        (false, Some(grow)) => {
            if grow.index >= 16 {
                return Err(format!("disk index {} is out of range (0 to 15)", grow.index));
            }
            let by_mib = mib("growDisk.by", &grow.by)?;
            if by_mib == 0 {
                return Err("growDisk.by must be more than 0".into());
            }
            Ok(Plan::Resize(ResizePlan::GrowDisk {
                index: grow.index,
                by_mib,
            }))
        }
        (true, None) => {
            if let Some(v) = params.vcpus.filter(|v| *v == 0 || *v > MAX_VCPUS) {
                return Err(format!("vcpus {v} is not between 1 and {MAX_VCPUS}"));
            }
            let memory_mib = params.memory.as_deref().map(|m| mib("memory", m)).transpose()?;
            if let Some(m) = memory_mib.filter(|m| *m < MIN_MEMORY_MIB) {
                return Err(format!(
                    "memory {m} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"
                ));
            }
            Ok(Plan::Resize(ResizePlan::Parameters {
                vcpus: params.vcpus,
                memory_mib,
            }))
        }
    }
}

/// replace-disks: Ganeti's own argument checks (LUInstanceReplaceDisks), so a mistake is
/// a 400 rather than a failed job.
fn plan_replace_disks(params: ActionParams) -> Result<Plan, String> {
    let mode = match params.mode.as_deref() {
        None => ReplaceDisksMode::ReplaceAuto,
        Some(m) => ReplaceDisksMode::ALL
            .into_iter()
            .find(|x| x.as_str() == m)
            .ok_or_else(|| {
                let known: Vec<&str> = ReplaceDisksMode::ALL.iter().map(|x| x.as_str()).collect();
                format!("mode {m:?} is not one of {}", known.join(", "))
            })?,
    };
    if let Some(n) = params.remote_node.as_deref().filter(|n| !is_hostname(n)) {
        return Err(format!("remoteNode {n:?} is not a valid node name"));
    }
    if let Some(a) = params.iallocator.as_deref().filter(|a| !is_ganeti_name(a)) {
        return Err(format!("iallocator {a:?} is not a valid allocator name"));
    }
    let new_secondary = mode == ReplaceDisksMode::ReplaceNewSecondary;
    match (&params.remote_node, &params.iallocator) {
        (Some(_), Some(_)) => return Err("give remoteNode or iallocator, not both".into()),
        (None, None) if new_secondary => {
            return Err("replace_new_secondary needs remoteNode or iallocator".into());
        }
        (Some(_), _) | (_, Some(_)) if !new_secondary => {
            return Err("remoteNode and iallocator go with mode replace_new_secondary only".into());
        }
        _ => {}
    }
    let mut disks = params.disks.unwrap_or_default();
    if !disks.is_empty()
        && matches!(
            mode,
            ReplaceDisksMode::ReplaceAuto | ReplaceDisksMode::ReplaceNewSecondary
        )
    {
        return Err(format!(
            "mode {} replaces every disk: give no disks",
            mode.as_str()
        ));
    }
    // Ganeti's limit is 16 disks (indices 0 to 15).
    if let Some(d) = disks.iter().find(|d| **d >= 16) {
        return Err(format!("disk index {d} is out of range (0 to 15)"));
    }
    disks.sort_unstable();
    disks.dedup();
    Ok(Plan::ReplaceDisks(InstanceReplaceDisks {
        mode,
        disks,
        remote_node: params.remote_node,
        iallocator: params.iallocator,
    }))
}

/// An OS or allocator name as Ganeti names them (`debootstrap+bookworm`, `hail`).
fn is_ganeti_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

/// An RFC 1123 host name (what Ganeti accepts as an instance name).
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The `reason` Ganeti records with the job.
pub fn reason(user: &str, action: Action) -> String {
    reason_for(user, action.as_str())
}

/// The `reason` of a job for `action`, named as in the URL (VM actions, and
/// [`CLUSTER_ACTIONS`]).
pub fn reason_for(user: &str, action: &str) -> String {
    format!("ganeti-operator console endpoint: {action} by {user}")
}

/// Actions on a cluster itself, whose jobs name the user too.
pub const CLUSTER_ACTIONS: &[&str] = &["cluster-tags"];

/// Whether `user` submitted the job through this API (through any replica): the
/// `reason=` we submit with names the user, and Ganeti keeps it in the job. Exact
/// matches only: an action name has no space, so `<action> by <user>` cannot be
/// forged by another user's name.
pub fn submitted_by(job: &Job, user: &str) -> bool {
    job.user_reasons().any(|r| {
        Action::ALL.iter().any(|a| r == reason(user, *a))
            || CLUSTER_ACTIONS.iter().any(|a| r == reason_for(user, a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_parse_and_map_to_rights() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("explode"), None);
        assert_eq!(Action::Startup.right(), VmRight::Start);
        assert!(Action::Destroy.is_fatal() && !Action::Reboot.is_fatal());
        assert_eq!(
            Action::parse("replace-disks").map(Action::right),
            Some(VmRight::ReplaceDisks)
        );
        assert!(!Action::Export.is_fatal() && !Action::Migrate.is_fatal());
    }

    #[test]
    fn resize_and_tags_are_checked() {
        assert_eq!(Action::Resize.right(), VmRight::Modify);
        assert_eq!(Action::Tags.right(), VmRight::Tags);
        assert_eq!(
            plan(Action::Resize, br#"{"vcpus":2,"memory":"1Gi"}"#),
            Ok(Plan::Resize(ResizePlan::Parameters {
                vcpus: Some(2),
                memory_mib: Some(1024)
            }))
        );
        assert_eq!(
            plan(Action::Resize, br#"{"growDisk":{"index":0,"by":"512Mi"}}"#),
            Ok(Plan::Resize(ResizePlan::GrowDisk {
                index: 0,
                by_mib: 512
            }))
        );
        for (body, says) in [
            (&br#"{}"#[..], "needs vcpus"),
            (br#"{"vcpus":0}"#, "between 1"),
            (br#"{"memory":"64Mi"}"#, "minimum"),
            (br#"{"memory":"1.5Ki"}"#, "MiB"),
            (br#"{"vcpus":2,"growDisk":{"index":0,"by":"1Gi"}}"#, "not both"),
            (br#"{"growDisk":{"index":16,"by":"1Gi"}}"#, "out of range"),
            (br#"{"growDisk":{"index":0,"by":"0"}}"#, "more than 0"),
        ] {
            let e = plan(Action::Resize, body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        assert_eq!(
            plan(Action::Tags, br#"{"add":["web"]}"#),
            Ok(Plan::Tags(TagsPlan::Add(vec!["web".into()])))
        );
        assert!(plan(Action::Tags, br#"{"add":["a"],"remove":["b"]}"#).is_err());
        assert!(plan(Action::Tags, br#"{"add":[]}"#).is_err());
        assert!(plan(Action::Tags, br#"{}"#).is_err());
        assert_eq!(Action::Unlock.right(), VmRight::Lock);
        assert_eq!(
            plan(Action::Isolate, b""),
            Ok(Plan::Flag {
                tag: "ganetimgr:isolate",
                on: true
            })
        );
        assert!(
            plan(Action::Lock, br#"{"x":1}"#)
                .unwrap_err()
                .contains("takes no x")
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(plan(Action::Reboot, b""), Ok(Plan::Reboot(RebootType::Soft)));
        assert_eq!(
            plan(Action::Reboot, br#"{"type":"hard"}"#),
            Ok(Plan::Reboot(RebootType::Hard))
        );
        assert!(
            plan(Action::Reboot, br#"{"type":"gentle"}"#)
                .unwrap_err()
                .contains("gentle")
        );
        assert_eq!(
            plan(Action::Shutdown, br#"{"timeoutSeconds":30}"#),
            Ok(Plan::Shutdown(Some(Duration::from_secs(30))))
        );
        assert!(plan(Action::Shutdown, br#"{"timeoutSeconds":99999}"#).is_err());
        assert!(
            plan(Action::Startup, br#"{"timeoutSeconds":3}"#)
                .unwrap_err()
                .contains("takes no")
        );
        assert!(
            plan(Action::Startup, b"{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(plan(Action::Startup, br#"{"bogus":1}"#).is_err());
        assert!(plan(Action::Rename, b"").unwrap_err().contains("newName"));
        assert!(plan(Action::Rename, br#"{"newName":"bad name"}"#).is_err());
        assert_eq!(
            plan(Action::Rename, br#"{"newName":"vm2.example.org"}"#),
            Ok(Plan::Rename("vm2.example.org".into()))
        );
        assert_eq!(plan(Action::Reinstall, b"  "), Ok(Plan::Reinstall(None)));
        assert!(plan(Action::Reinstall, br#"{"os":"x;rm"}"#).is_err());
        assert_eq!(plan(Action::Destroy, b""), Ok(Plan::Destroy));
        assert!(plan(Action::Destroy, b"[]").unwrap_err().contains("JSON object"));
    }

    #[test]
    fn migrate_parameters() {
        assert_eq!(
            plan(Action::Migrate, b""),
            Ok(Plan::Migrate(InstanceMigrate::default()))
        );
        assert_eq!(
            plan(
                Action::Migrate,
                br#"{"mode":"non-live","cleanup":true,"targetNode":"node2.example.org"}"#
            ),
            Ok(Plan::Migrate(InstanceMigrate {
                mode: Some(MigrationMode::NonLive),
                cleanup: Some(true),
                target_node: Some("node2.example.org".into()),
            }))
        );
        assert!(
            plan(Action::Migrate, br#"{"mode":"teleport"}"#)
                .unwrap_err()
                .contains("live, non-live")
        );
        assert!(plan(Action::Migrate, br#"{"cleanup":"yes"}"#).is_err());
        assert!(plan(Action::Migrate, br#"{"targetNode":"no such node"}"#).is_err());
        // Another action's field is named as such.
        let e = plan(Action::Migrate, br#"{"remoteNode":"n2"}"#).unwrap_err();
        assert!(
            e.contains("migrate takes no remoteNode; it takes mode, cleanup, targetNode"),
            "{e}"
        );
    }

    #[test]
    fn replace_disks_parameters_follow_ganetis_rules() {
        let ok = |body: &[u8]| match plan(Action::ReplaceDisks, body) {
            Ok(Plan::ReplaceDisks(r)) => r,
            other => panic!("{other:?}"),
        };
        let auto = ok(b"");
        assert_eq!((auto.mode, auto.disks.len()), (ReplaceDisksMode::ReplaceAuto, 0));
        let secondary = ok(br#"{"mode":"replace_on_secondary","disks":[2,0,2]}"#);
        assert_eq!(
            (secondary.mode, secondary.disks),
            (ReplaceDisksMode::ReplaceOnSecondary, vec![0, 2])
        );
        let moved = ok(br#"{"mode":"replace_new_secondary","remoteNode":"node3.example.org"}"#);
        assert_eq!(moved.remote_node.as_deref(), Some("node3.example.org"));
        assert_eq!(
            ok(br#"{"mode":"replace_new_secondary","iallocator":"hail"}"#)
                .iallocator
                .as_deref(),
            Some("hail")
        );
        let err = |body: &[u8]| plan(Action::ReplaceDisks, body).unwrap_err();
        assert!(err(br#"{"mode":"replace_everything"}"#).contains("replace_on_primary"));
        assert!(err(br#"{"mode":"replace_new_secondary"}"#).contains("needs remoteNode or iallocator"));
        assert!(
            err(br#"{"mode":"replace_new_secondary","remoteNode":"n3","iallocator":"hail"}"#)
                .contains("not both")
        );
        assert!(
            err(br#"{"mode":"replace_on_primary","remoteNode":"n3"}"#).contains("replace_new_secondary only")
        );
        assert!(err(br#"{"disks":[0]}"#).contains("give no disks"));
        assert!(err(br#"{"mode":"replace_on_primary","disks":[16]}"#).contains("out of range"));
        assert!(err(br#"{"mode":"replace_on_primary","disks":[-1]}"#).contains("bad parameters"));
        assert!(err(br#"{"mode":"replace_new_secondary","iallocator":"ha il"}"#).contains("allocator"));
    }

    #[test]
    fn export_parameters() {
        assert_eq!(
            plan(
                Action::Export,
                br#"{"targetNode":"node2.example.org","shutdown":false}"#
            ),
            Ok(Plan::Export(InstanceExport::local(
                "node2.example.org",
                Some(false)
            )))
        );
        assert_eq!(
            plan(
                Action::Export,
                br#"{"targetNode":"n2","mode":"local","removeInstance":false}"#
            ),
            Ok(Plan::Export(InstanceExport::local("n2", None)))
        );
        let err = |body: &[u8]| plan(Action::Export, body).unwrap_err();
        assert!(err(b"").contains("needs targetNode"));
        assert!(err(br#"{"targetNode":"n2","mode":"remote"}"#).contains("only local"));
        assert!(err(br#"{"targetNode":"n2","removeInstance":true}"#).contains("destroy"));
        assert!(err(br#"{"targetNode":"n2","cleanup":true}"#).contains("export takes no cleanup"));
    }

    #[test]
    fn a_job_is_the_users_whose_name_its_reason_carries() {
        let job = |reason: &str| -> Job {
            serde_json::from_value(json!({"id": 1, "status": "success",
                "ops": [{"reason": [["gnt:user", reason, 1], ["gnt:library:rlib2:instances_name_reboot", "", 2]]}]}))
            .unwrap()
        };
        let alices = job(&reason("alice", Action::Reboot));
        assert!(submitted_by(&alices, "alice"));
        assert!(!submitted_by(&alices, "bob"));
        assert!(!submitted_by(&alices, "ali"));
        // A user named to look like the tail of someone else's reason is still themselves.
        let tricky = job(&reason("x by alice", Action::Migrate));
        assert!(submitted_by(&tricky, "x by alice"));
        assert!(!submitted_by(&tricky, "alice"));
        // Another tool's reason, even naming alice, is not ours.
        assert!(!submitted_by(&job("console endpoint: reboot by alice"), "alice"));
        let untagged: Job = serde_json::from_value(json!({"id": 2, "status": "running"})).unwrap();
        assert!(!submitted_by(&untagged, "alice"));
    }

    #[test]
    fn the_reason_names_the_user() {
        assert_eq!(
            reason("alice", Action::Reboot),
            "ganeti-operator console endpoint: reboot by alice"
        );
    }
}
