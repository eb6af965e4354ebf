//! resize: new vCPUs and memory (backend parameters), or one disk grown; the bounds
//! a resize must stay within.

use super::{ActionParams, Plan};
use serde::Deserialize;

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

/// vCPUs a resize may ask for (Ganeti's own upper bound is the hypervisor's).
pub const MAX_VCPUS: u32 = 256;
/// The smallest memory Ganeti's default instance policy allows.
pub const MIN_MEMORY_MIB: u64 = 128;

pub(super) fn plan_resize(params: ActionParams) -> Result<Plan, String> {
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

#[cfg(test)]
mod tests {
    use super::super::{Action, plan};
    use super::*;
    use crate::api::role::VmRight;

    #[test]
    fn resize_is_checked() {
        assert_eq!(Action::Resize.right(), VmRight::Modify);
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
    }
}
