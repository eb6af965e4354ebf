//! Label and field selectors, as `kubectl get -l ... --field-selector ...` sends them.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelTerm>);

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected (value, ...) in {values:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in terms(s) {
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                LabelTerm::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelTerm::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                LabelTerm::NotIn(k.trim().into(), set(v)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                LabelTerm::In(k.trim().into(), set(v)?)
            } else if let Some(k) = term.strip_prefix('!') {
                LabelTerm::Absent(k.trim().into())
            } else if term.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
                return Err(format!("unable to parse requirement {term:?}"));
            } else {
                LabelTerm::Exists(term.into())
            };
            out.push(parsed);
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.0.iter().all(|t| match t {
            LabelTerm::Equals(k, v) => get(k) == Some(v),
            LabelTerm::NotEquals(k, v) => get(k) != Some(v),
            LabelTerm::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            LabelTerm::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            LabelTerm::Exists(k) => get(k).is_some(),
            LabelTerm::Absent(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector over the fields a resource supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Refuses fields not in `supported`, as the API server does.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in terms(s) {
            let (field, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid field selector term {term:?}: expected field=value or field!=value"
                ));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(format!(
                    "field label not supported: {field} (supported: {})",
                    supported.join(", ")
                ));
            }
            out.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(out))
    }

    /// `value(field)` gives an object's value of a supported field.
    pub fn matches<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0
            .iter()
            .all(|(field, equal, wanted)| (value(field).unwrap_or("") == wanted) == *equal)
    }

    /// The value a term pins `field` to (`field=value`), for a lookup instead of a scan.
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, equal, _)| f == field && *equal)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_of_every_form() {
        let l = labels(&[("cluster", "lab"), ("owner", "alice")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(m(""));
        assert!(m("cluster=lab"));
        assert!(m("cluster==lab,owner"));
        assert!(!m("cluster=other"));
        assert!(m("cluster!=other"));
        assert!(m("cluster in (lab, other)"));
        assert!(!m("cluster notin (lab)"));
        assert!(m("!group"));
        assert!(!m("!owner"));
        assert!(!m("group"));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors_refuse_unknown_fields() {
        let f = FieldSelector::parse(
            "spec.cluster=lab,status.state!=running",
            &["spec.cluster", "status.state"],
        )
        .unwrap();
        assert!(f.matches(|k| Some(if k == "spec.cluster" { "lab" } else { "ADMIN_down" })));
        assert!(!f.matches(|k| Some(if k == "spec.cluster" { "lab" } else { "running" })));
        assert_eq!(f.pinned("spec.cluster"), Some("lab"));
        assert_eq!(f.pinned("status.state"), None);
        let e = FieldSelector::parse("spec.owner=x", &["spec.cluster"]).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(FieldSelector::parse("spec.cluster", &["spec.cluster"]).is_err());
    }
}
