//! Ganeti Web Manager's numeric user and group ids, mapped to Kubernetes users and
//! groups: what makes GWM's tags (`GANETI_WEB_MANAGER:admin:U:2`) mean someone here,
//! and lets the tag sync write tags GWM understands. Pure: built from a ConfigMap's data.
//!
//! The ConfigMap (named by `GanetiCluster.spec.gwm.idMap`) holds two keys, each a YAML
//! mapping of GWM id to name:
//! ```yaml
//! users: |
//!   "2": alice
//!   "7": bob
//! groups: |
//!   "5": team-a
//! ```
//! Every problem is an error and the whole map is refused: a map half read would grant
//! to some and silently not to others. Two ids for one name are refused too: the tag
//! sync could not tell which one GWM should see.

use crate::api::common::SubjectKind;
use std::collections::BTreeMap;

/// The label a ConfigMap needs to be read as an id map (the operator watches only
/// ConfigMaps that carry it, never its own ledgers).
pub const GWM_IDS_LABEL: &str = "ganeti.dev/gwm-ids";
pub const GWM_IDS_LABEL_VALUE: &str = "true";

/// Ids mapped at most per kind: a ConfigMap holds 1 MiB, and an id map of a larger
/// GWM installation than this is more likely a mistake.
const MAX_IDS: usize = 100_000;

/// GWM ids to names and back, for users and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GwmIds {
    users: Side,
    groups: Side,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Side {
    names: BTreeMap<u64, String>,
    ids: BTreeMap<String, u64>,
}

impl GwmIds {
    /// The map of a ConfigMap's `data`; every problem found, when there is any.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        for key in data.keys().filter(|k| !matches!(k.as_str(), "users" | "groups")) {
            errors.push(format!("unknown key {key:?}: only `users` and `groups` are read"));
        }
        let mut map = GwmIds::default();
        for (key, side) in [("users", &mut map.users), ("groups", &mut map.groups)] {
            if let Some(text) = data.get(key) {
                *side = Side::parse(key, text, &mut errors);
            }
        }
        if map.users.names.is_empty() && map.groups.names.is_empty() && errors.is_empty() {
            errors.push("maps no id: `users` and `groups` are both absent or empty".into());
        }
        if errors.is_empty() { Ok(map) } else { Err(errors) }
    }

    fn side(&self, kind: SubjectKind) -> &Side {
        match kind {
            SubjectKind::User => &self.users,
            SubjectKind::Group => &self.groups,
        }
    }

    /// The user or group GWM knows by `id`.
    pub fn name(&self, kind: SubjectKind, id: u64) -> Option<&str> {
        self.side(kind).names.get(&id).map(String::as_str)
    }

    /// The GWM id of a user or group.
    pub fn id(&self, kind: SubjectKind, name: &str) -> Option<u64> {
        self.side(kind).ids.get(name).copied()
    }

    /// How many ids of `kind` are mapped.
    pub fn len(&self, kind: SubjectKind) -> usize {
        self.side(kind).names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.names.is_empty() && self.groups.names.is_empty()
    }
}

impl Side {
    fn parse(key: &str, text: &str, errors: &mut Vec<String>) -> Side {
        let mut side = Side::default();
        let mapping: serde_yaml::Mapping = match serde_yaml::from_str::<Option<serde_yaml::Mapping>>(text) {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                errors.push(format!(
                    "{key}: not a YAML mapping of id to name (such as `\"2\": alice`): {e}"
                ));
                return side;
            }
        };
        if mapping.len() > MAX_IDS {
            errors.push(format!(
                "{key}: {} ids, at most {MAX_IDS} are read",
                mapping.len()
            ));
            return side;
        }
        for (k, v) in &mapping {
            let id = match k {
                serde_yaml::Value::Number(n) => n.as_u64().filter(|_| !n.is_f64()),
                serde_yaml::Value::String(s) => super::gwm_id(s),
                _ => None,
            };
            let Some(id) = id else {
                errors.push(format!(
                    "{key}: {} is not a GWM id (a number such as \"2\")",
                    show(k)
                ));
                continue;
            };
            let name = match v {
                serde_yaml::Value::String(s) if !s.is_empty() => s.clone(),
                _ => {
                    errors.push(format!(
                        "{key}: id {id} maps to {}: a name must be a non-empty string (quote a numeric one)",
                        show(v)
                    ));
                    continue;
                }
            };
            if side.names.contains_key(&id) {
                errors.push(format!("{key}: id {id} is mapped twice"));
                continue;
            }
            if let Some(other) = side.ids.get(&name) {
                errors.push(format!(
                    "{key}: {name:?} has two ids, {other} and {id}: a name has one GWM id"
                ));
                continue;
            }
            side.ids.insert(name.clone(), id);
            side.names.insert(id, name);
        }
        side
    }
}

/// A YAML value as an error message quotes it: short, on one line.
fn show(v: &serde_yaml::Value) -> String {
    let text = serde_yaml::to_string(v).unwrap_or_default();
    let text = text.trim();
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    short.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(users: &str, groups: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("users".into(), users.into()), ("groups".into(), groups.into())])
    }

    #[test]
    fn maps_ids_both_ways() {
        let m = GwmIds::from_data(&data("\"2\": alice\n7: bob\n", "5: team-a\n\"6\": \"42\"\n")).unwrap();
        assert_eq!(m.name(SubjectKind::User, 2), Some("alice"));
        assert_eq!(m.name(SubjectKind::User, 7), Some("bob"));
        assert_eq!(m.name(SubjectKind::Group, 2), None, "users and groups are apart");
        assert_eq!(m.id(SubjectKind::Group, "team-a"), Some(5));
        assert_eq!(
            m.id(SubjectKind::Group, "42"),
            Some(6),
            "a quoted numeric name is a name"
        );
        assert_eq!((m.len(SubjectKind::User), m.len(SubjectKind::Group)), (2, 2));
        let only_users = BTreeMap::from([("users".to_string(), "1: root\n".to_string())]);
        assert_eq!(GwmIds::from_data(&only_users).unwrap().len(SubjectKind::User), 1);
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_mapped() {
        let errors = GwmIds::from_data(&data(
            "alice: 2\n\"02\": bob\n3: carol\n4: carol\n5: 17\n-1: x\n",
            "[not, a, mapping]",
        ))
        .unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "users: alice is not a GWM id",
            "users: '02' is not a GWM id",
            "\"carol\" has two ids, 3 and 4",
            "id 5 maps to 17",
            "users: -1 is not a GWM id",
            "groups: not a YAML mapping",
        ] {
            assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
        }
        assert!(
            GwmIds::from_data(&data("2: a\n2: b\n", "")).is_err(),
            "duplicate id"
        );
        let extra = BTreeMap::from([("user".to_string(), "2: alice".to_string())]);
        assert!(GwmIds::from_data(&extra).unwrap_err()[0].contains("unknown key \"user\""));
        assert!(GwmIds::from_data(&data("", "")).unwrap_err()[0].contains("maps no id"));
    }
}
