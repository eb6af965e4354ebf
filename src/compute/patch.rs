//! A patch of a GanetiInstance: applied to the object as it is, then turned into the
//! Ganeti actions that make Ganeti so. Only `spec` is declarative; a change anywhere
//! else is refused rather than silently dropped.

use super::objects::{GanetiInstance, RunStrategy};
use crate::access::Action;
use serde_json::Value;

/// Disk templates Ganeti can live-migrate (its `DTS_MIRRORED`): isolating a running VM
/// on one of these migrates it, so the nodes' hooks apply the isolation at once.
const MIGRATABLE: &[&str] = &[
    "drbd",
    "sharedfile",
    "blockdev",
    "ext",
    "diskless",
    "gluster",
    "rbd",
];

/// How the body of a PATCH is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`: kubectl's default. The spec has no
    /// lists, so it reads as a merge patch.
    Strategic,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, String> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            other => Err(format!(
                "patch type {other:?} is not supported: use a merge patch (kubectl patch --type merge) or kubectl's default"
            )),
        }
    }
}

/// Why a patch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not JSON, or not a GanetiInstance after the patch (HTTP 400).
    BadRequest(String),
    /// A field that cannot change (HTTP 422): the field and why.
    Invalid(&'static str, String),
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// What the patch asks for: the patched object and the actions, in the order to run
/// them (an unlock first and a lock last, so a patch that unlocks and stops works,
/// and one that stops and locks does not lock itself out).
pub fn plan(current: &GanetiInstance, body: &[u8]) -> Result<(GanetiInstance, Vec<Action>), Refused> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| Refused::BadRequest(format!("the patch is not JSON: {e}")))?;
    if !patch.is_object() {
        return Err(Refused::BadRequest("the patch must be a JSON object".into()));
    }
    let mut value = serde_json::to_value(current).map_err(|e| Refused::BadRequest(e.to_string()))?;
    merge(&mut value, &patch);
    // `metadata.resourceVersion` in a patch is a precondition kubectl may send: ignore it.
    let wanted: GanetiInstance = serde_json::from_value(value)
        .map_err(|e| Refused::BadRequest(format!("not a GanetiInstance after the patch: {e}")))?;
    let mut meta = wanted.metadata.clone();
    meta.resource_version = current.metadata.resource_version.clone();
    if meta != current.metadata {
        return Err(Refused::Invalid(
            "metadata",
            "metadata is Ganeti's (name, UUID, labels from the cluster, owner and node): only spec can change".into(),
        ));
    }
    if wanted.status != current.status {
        return Err(Refused::Invalid(
            "status",
            "status is read from Ganeti and cannot be patched".into(),
        ));
    }
    if wanted.spec.cluster != current.spec.cluster {
        return Err(Refused::Invalid(
            "spec.cluster",
            "spec.cluster cannot change".into(),
        ));
    }
    let (from, to) = (&current.spec, &wanted.spec);
    let mut actions = Vec::new();
    if from.locked && !to.locked {
        actions.push(Action::Unlock);
    }
    if from.run_strategy != to.run_strategy {
        actions.push(match to.run_strategy {
            RunStrategy::Always => Action::Startup,
            RunStrategy::Halted => Action::Shutdown,
        });
    }
    if from.isolated != to.isolated {
        if to.isolated {
            actions.push(Action::Isolate);
            let stays_up = current.status.running && to.run_strategy == RunStrategy::Always;
            if stays_up && MIGRATABLE.contains(&current.status.disk_template.as_str()) {
                actions.push(Action::Migrate);
            }
        } else {
            actions.push(Action::Unisolate);
        }
    }
    if !from.locked && to.locked {
        actions.push(Action::Lock);
    }
    Ok((wanted, actions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterInventory, Instance};

    fn vm(running: bool, template: &str) -> GanetiInstance {
        let inventory = ClusterInventory {
            cluster: "lab".into(),
            ..Default::default()
        };
        let i = Instance {
            name: "vm1".into(),
            uuid: "u".into(),
            admin_up: running,
            running,
            disk_template: template.into(),
            ..Default::default()
        };
        let mut o = GanetiInstance::from_inventory(&inventory, &i);
        o.metadata.resource_version = Some("5".into());
        o
    }

    fn actions(o: &GanetiInstance, patch: &str) -> Result<Vec<Action>, Refused> {
        plan(o, patch.as_bytes()).map(|(_, a)| a)
    }

    #[test]
    fn run_strategy_maps_to_startup_and_shutdown() {
        let up = vm(true, "plain");
        assert_eq!(
            actions(&up, r#"{"spec":{"runStrategy":"Halted"}}"#),
            Ok(vec![Action::Shutdown])
        );
        assert_eq!(actions(&up, r#"{"spec":{"runStrategy":"Always"}}"#), Ok(vec![]));
        let down = vm(false, "plain");
        assert_eq!(
            actions(&down, r#"{"spec":{"runStrategy":"Always"}}"#),
            Ok(vec![Action::Startup])
        );
        assert!(matches!(
            actions(&down, r#"{"spec":{"runStrategy":"Sometimes"}}"#),
            Err(Refused::BadRequest(_))
        ));
    }

    #[test]
    fn unlock_runs_first_and_lock_last() {
        let mut locked = vm(true, "plain");
        locked.spec.locked = true;
        assert_eq!(
            actions(&locked, r#"{"spec":{"locked":false,"runStrategy":"Halted"}}"#),
            Ok(vec![Action::Unlock, Action::Shutdown])
        );
        assert_eq!(
            actions(
                &vm(true, "plain"),
                r#"{"spec":{"locked":true,"runStrategy":"Halted"}}"#
            ),
            Ok(vec![Action::Shutdown, Action::Lock])
        );
    }

    #[test]
    fn isolating_a_running_vm_migrates_it_when_ganeti_can() {
        assert_eq!(
            actions(&vm(true, "drbd"), r#"{"spec":{"isolated":true}}"#),
            Ok(vec![Action::Isolate, Action::Migrate])
        );
        assert_eq!(
            actions(&vm(true, "plain"), r#"{"spec":{"isolated":true}}"#),
            Ok(vec![Action::Isolate])
        );
        assert_eq!(
            actions(&vm(false, "drbd"), r#"{"spec":{"isolated":true}}"#),
            Ok(vec![Action::Isolate])
        );
        let mut isolated = vm(true, "drbd");
        isolated.spec.isolated = true;
        assert_eq!(
            actions(&isolated, r#"{"spec":{"isolated":false}}"#),
            Ok(vec![Action::Unisolate])
        );
    }

    #[test]
    fn only_the_spec_can_change() {
        let o = vm(true, "plain");
        assert!(matches!(
            actions(&o, r#"{"spec":{"cluster":"other"}}"#),
            Err(Refused::Invalid(..))
        ));
        assert!(matches!(
            actions(&o, r#"{"status":{"vcpus":64}}"#),
            Err(Refused::Invalid(..))
        ));
        assert!(matches!(
            actions(&o, r#"{"metadata":{"labels":{"x":"y"}}}"#),
            Err(Refused::Invalid(..))
        ));
        // kubectl's precondition is not a change.
        assert_eq!(actions(&o, r#"{"metadata":{"resourceVersion":"4"}}"#), Ok(vec![]));
        assert!(matches!(actions(&o, "[1]"), Err(Refused::BadRequest(_))));
        assert!(matches!(actions(&o, "not json"), Err(Refused::BadRequest(_))));
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut v = serde_json::json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge(&mut v, &serde_json::json!({"a": {"b": null, "e": 4}, "d": [1]}));
        assert_eq!(v, serde_json::json!({"a": {"c": 2, "e": 4}, "d": [1]}));
    }
}
