//! tags: free-form tags to add or remove, and ganetimgr's flag tags that the lock and
//! isolate actions set and clear.

use super::{ActionParams, Plan};

/// Tags to add or remove (checked against the cluster's reserved prefixes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagsPlan {
    Add(Vec<String>),
    Remove(Vec<String>),
}

/// At most this many tags per request.
pub const MAX_TAGS_PER_REQUEST: usize = 32;

/// ganetimgr's admin lock: owners' actions are refused while it is set.
pub const ADMINLOCK_TAG: &str = "ganetimgr:adminlock";
/// ganetimgr's isolation: the nodes' network hooks cut the VM off while it is set.
pub const ISOLATE_TAG: &str = "ganetimgr:isolate";

/// tags: add or remove, 1 to [`MAX_TAGS_PER_REQUEST`] of them, one or the other.
pub(super) fn plan_tags(params: ActionParams) -> Result<Plan, String> {
    Ok(Plan::Tags(match (params.add, params.remove) {
        (Some(_), Some(_)) => return Err("give add or remove, not both (each is one Ganeti job)".into()),
        (None, None) => return Err("tags needs add or remove: a list of tags".into()),
        (Some(t), None) | (None, Some(t)) if t.is_empty() || t.len() > MAX_TAGS_PER_REQUEST => {
            return Err(format!("give 1 to {MAX_TAGS_PER_REQUEST} tags"));
        }
        (Some(t), None) => TagsPlan::Add(t),
        (None, Some(t)) => TagsPlan::Remove(t),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{Action, plan};
    use super::*;
    use crate::api::role::VmRight;

    #[test]
    fn tags_and_flags_are_checked() {
        assert_eq!(Action::Tags.right(), VmRight::Tags);
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
}
