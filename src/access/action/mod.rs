//! The actions a user may take on a VM, as named in the URL, and their parameters
//! checked into a [`Plan`] (400 material) before anything is authorized or sent. Pure.
//!
//! This file owns the action names, the body every action shares and the dispatch;
//! the checks with rules of their own are in `resize`, `replace_disks` and `tags`
//! (tags and ganetimgr's flag tags), and `reasons` names the user in Ganeti's jobs.

mod reasons;
mod replace_disks;
mod resize;
mod tags;

pub use reasons::{CLUSTER_ACTIONS, reason, reason_for, submitted_by};
pub use resize::{GrowDisk, MAX_VCPUS, MIN_MEMORY_MIB, ResizePlan};
pub use tags::{ADMINLOCK_TAG, ISOLATE_TAG, MAX_TAGS_PER_REQUEST, TagsPlan};

use crate::api::role::VmRight;
use crate::rapi::{InstanceExport, InstanceMigrate, InstanceReplaceDisks, MigrationMode, RebootType};
use replace_disks::plan_replace_disks;
use resize::plan_resize;
use serde::Deserialize;
use std::time::Duration;
use tags::plan_tags;

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
        Action::Tags => plan_tags(params)?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
