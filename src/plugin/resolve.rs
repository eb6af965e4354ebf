//! Which VM the user means: a GanetiInstance name (`<cluster>.<instance>`) as is, else a
//! Ganeti instance name looked up across clusters.

use super::client::{About, INSTANCES, explain, get, with_query};
use super::instance::{GanetiInstance, InstanceList};
use kube::Client;

/// Why a name does not pick exactly one VM.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0:?} is not a VM name (letters, digits, '.', '-', '_' only)")]
    Malformed(String),
    #[error("VM {0} does not exist or is not yours")]
    NotFound(String),
    #[error("{name} names {} VMs: {}; use one of these names", candidates.len(), candidates.join(", "))]
    Ambiguous { name: String, candidates: Vec<String> },
}

/// A name goes into URL paths and field selectors as is, so only the characters of
/// object and host names are accepted.
pub fn check_name(name: &str) -> Result<(), ResolveError> {
    let fine = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if fine {
        Ok(())
    } else {
        Err(ResolveError::Malformed(name.to_string()))
    }
}

/// The one VM whose Ganeti instance name is `name` among `found` (what the field
/// selector returned; checked again here in case a server ignores the selector).
pub fn pick(name: &str, found: Vec<GanetiInstance>) -> Result<GanetiInstance, ResolveError> {
    let mut matching: Vec<GanetiInstance> = found
        .into_iter()
        .filter(|vm| vm.status.instance_name == name)
        .collect();
    match matching.len() {
        0 => Err(ResolveError::NotFound(name.to_string())),
        1 => Ok(matching.remove(0)),
        _ => {
            let mut candidates: Vec<String> = matching.iter().map(|vm| vm.name().to_string()).collect();
            candidates.sort();
            Err(ResolveError::Ambiguous {
                name: name.to_string(),
                candidates,
            })
        }
    }
}

/// The path of a VM object (or of a subresource when `sub` is given).
pub fn instance_path(object: &str, sub: Option<&str>) -> String {
    match sub {
        Some(sub) => format!("{INSTANCES}/{object}/{sub}"),
        None => format!("{INSTANCES}/{object}"),
    }
}

/// The VM the user named: the object of that name, else the one VM with that instance name.
pub async fn resolve(client: &Client, name: &str) -> anyhow::Result<GanetiInstance> {
    check_name(name)?;
    match get::<GanetiInstance>(client, &instance_path(name, None)).await {
        Ok(vm) => return Ok(vm),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(explain(client, error, About::Vm(name)).await),
    }
    let selector = format!("status.instanceName={name}");
    let path = with_query(INSTANCES, &[("fieldSelector", &selector)]);
    let list: InstanceList = match get(client, &path).await {
        Ok(list) => list,
        Err(error) => return Err(explain(client, error, About::Vm(name)).await),
    };
    Ok(pick(name, list.items)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(cluster: &str, instance: &str) -> GanetiInstance {
        let mut vm = GanetiInstance::default();
        vm.metadata.name = Some(format!("{cluster}.{instance}"));
        vm.spec.cluster = cluster.to_string();
        vm.status.instance_name = instance.to_string();
        vm
    }

    #[test]
    fn one_match_is_the_vm() {
        let found = vec![vm("lab", "vm1.example.org"), vm("lab", "vm2.example.org")];
        assert_eq!(
            pick("vm1.example.org", found).unwrap().name(),
            "lab.vm1.example.org"
        );
    }

    #[test]
    fn none_is_not_found() {
        assert_eq!(
            pick("vm9", vec![vm("lab", "vm1")]),
            Err(ResolveError::NotFound("vm9".into()))
        );
        assert_eq!(
            pick("vm9", vec![]).unwrap_err().to_string(),
            "VM vm9 does not exist or is not yours"
        );
    }

    #[test]
    fn several_name_the_candidates() {
        let error = pick("vm1", vec![vm("prod", "vm1"), vm("lab", "vm1")]).unwrap_err();
        assert_eq!(
            error,
            ResolveError::Ambiguous {
                name: "vm1".into(),
                candidates: vec!["lab.vm1".into(), "prod.vm1".into()]
            }
        );
        assert_eq!(
            error.to_string(),
            "vm1 names 2 VMs: lab.vm1, prod.vm1; use one of these names"
        );
    }

    #[test]
    fn names_that_would_change_the_url_are_refused() {
        for bad in ["", "a/b", "vm1?x=1", "a b", "../x", ".", "vm%2F", "x#y", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["vm1", "lab.vm1.example.org", "web_1-a"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
        assert!(check_name(&"a".repeat(254)).is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            instance_path("lab.vm1", Some("reboot")),
            "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances/lab.vm1/reboot"
        );
        assert_eq!(
            instance_path("lab.vm1", None),
            "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances/lab.vm1"
        );
    }
}
