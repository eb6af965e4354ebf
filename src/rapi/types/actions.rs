//! Requests of the actions on an existing instance: reboot types and the bodies of
//! migrate, resize (modify), replace-disks and export.

use serde::Serialize;

/// `POST /2/instances/<n>/reboot?type=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootType {
    Soft,
    Hard,
    Full,
}

impl RebootType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soft => "soft",
            Self::Hard => "hard",
            Self::Full => "full",
        }
    }
}

/// Migration mode of `PUT /2/instances/<n>/migrate` (absent: the hypervisor's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MigrationMode {
    #[serde(rename = "live")]
    Live,
    #[serde(rename = "non-live")]
    NonLive,
}

/// Body of `PUT /2/instances/<n>/migrate` (opcode `OpInstanceMigrate`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InstanceMigrate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MigrationMode>,
    /// Clean up after a previously failed migration instead of migrating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    /// For externally mirrored (shared, diskless) instances: where to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
}

/// Body of `PUT /2/instances/<n>/modify` for a resize (opcode `OpInstanceSetParams`):
/// backend parameters only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InstanceResize {
    pub beparams: ResizeBeparams,
}

/// The backend parameters a resize sets. Memory is set as both `maxmem` and `minmem`,
/// as the operator creates VMs (no ballooning range).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ResizeBeparams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minmem: Option<u64>,
}

/// Ganeti's `replace-disks` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceDisksMode {
    /// Whichever side is faulty.
    ReplaceAuto,
    ReplaceOnPrimary,
    ReplaceOnSecondary,
    /// A new secondary node (`remote_node` or `iallocator` chooses it).
    ReplaceNewSecondary,
}

impl ReplaceDisksMode {
    pub const ALL: [Self; 4] = [
        Self::ReplaceAuto,
        Self::ReplaceOnPrimary,
        Self::ReplaceOnSecondary,
        Self::ReplaceNewSecondary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplaceAuto => "replace_auto",
            Self::ReplaceOnPrimary => "replace_on_primary",
            Self::ReplaceOnSecondary => "replace_on_secondary",
            Self::ReplaceNewSecondary => "replace_new_secondary",
        }
    }
}

/// Body of `POST /2/instances/<n>/replace-disks` (opcode `OpInstanceReplaceDisks`; a
/// body, not the legacy query arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceReplaceDisks {
    pub mode: ReplaceDisksMode,
    /// Disk indices; empty: all (Ganeti refuses a list with `replace_auto` and
    /// `replace_new_secondary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
}

/// Body of `PUT /2/instances/<n>/export` in mode `local` (opcode `OpBackupExport`; RAPI
/// renames `destination` to `target_node`). Remote exports need Ganeti's X509
/// handshake (`prepare-export`) and are not offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceExport {
    /// Always `local`.
    pub mode: &'static str,
    /// The node that keeps the export.
    pub destination: String,
    /// Shut the instance down first (Ganeti's default: yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<bool>,
    /// Sent as `false` always: removing the instance is `destroy`'s business.
    pub remove_instance: bool,
}

impl InstanceExport {
    pub fn local(destination: impl Into<String>, shutdown: Option<bool>) -> Self {
        Self {
            mode: "local",
            destination: destination.into(),
            shutdown,
            remove_instance: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn action_bodies_as_ganeti_reads_them() {
        let migrate = InstanceMigrate {
            mode: Some(MigrationMode::NonLive),
            cleanup: None,
            target_node: Some("node2".into()),
        };
        assert_eq!(
            serde_json::to_value(&migrate).unwrap(),
            json!({"mode": "non-live", "target_node": "node2"})
        );
        let replace = InstanceReplaceDisks {
            mode: ReplaceDisksMode::ReplaceOnSecondary,
            disks: vec![0, 2],
            remote_node: None,
            iallocator: None,
        };
        assert_eq!(
            serde_json::to_value(&replace).unwrap(),
            json!({"mode": "replace_on_secondary", "disks": [0, 2]})
        );
        for mode in ReplaceDisksMode::ALL {
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        assert_eq!(
            serde_json::to_value(InstanceExport::local("node2", Some(false))).unwrap(),
            json!({"mode": "local", "destination": "node2", "shutdown": false, "remove_instance": false})
        );
    }
}
