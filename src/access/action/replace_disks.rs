//! replace-disks: the mode, disks and new secondary checked as Ganeti would.

use super::{ActionParams, Plan, is_ganeti_name, is_hostname};
use crate::rapi::{InstanceReplaceDisks, ReplaceDisksMode};

/// replace-disks: Ganeti's own argument checks (LUInstanceReplaceDisks), so a mistake is
/// a 400 rather than a failed job.
pub(super) fn plan_replace_disks(params: ActionParams) -> Result<Plan, String> {
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

#[cfg(test)]
mod tests {
    use super::super::{Action, plan};
    use super::*;

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
}
