//! A GanetiCluster's Ganeti Web Manager id map (`spec.gwm`): the ConfigMap it names,
//! read and judged in one place for the cluster controller and `ganeti-operator explain`.
//!
//! The ConfigMap must carry [`GWM_IDS_LABEL`]: the operator watches only labelled
//! ConfigMaps (so a changed map is read at once, and its own ledgers, rewritten on
//! every tag change, stream to nobody), and an admin says by the label that this
//! ConfigMap is an id map, so a GanetiCluster cannot have another ConfigMap of the
//! namespace taken for one.

use crate::api::cluster::GanetiClusterSpec;
use crate::inventory::GwmSetting;
use crate::tags::{GWM_IDS_LABEL, GWM_IDS_LABEL_VALUE, GwmIds};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use std::sync::Arc;

/// Errors quoted at most in the condition message.
const MAX_ERRORS: usize = 5;

/// Whether a ConfigMap is labelled as an id map.
pub fn is_id_map(cm: &ConfigMap) -> bool {
    cm.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(GWM_IDS_LABEL))
        .is_some_and(|v| v == GWM_IDS_LABEL_VALUE)
}

/// The setting `spec` asks for, given the ConfigMap found under its `idMap` name in
/// `namespace` (`None`: there is none). Pure.
pub fn setting(spec: &GanetiClusterSpec, namespace: &str, found: Option<&ConfigMap>) -> GwmSetting {
    let Some(gwm) = &spec.gwm else {
        return GwmSetting::default();
    };
    let mut setting = GwmSetting {
        id_map: gwm.id_map.clone(),
        write_ids: gwm.write_ids == Some(true),
        ..Default::default()
    };
    let Some(name) = &gwm.id_map else {
        return setting;
    };
    let problem = match found {
        None => (
            "IdMapNotFound",
            format!(
                "ConfigMap {namespace}/{name} (spec.gwm.idMap) does not exist: no GWM id grants anything"
            ),
        ),
        Some(cm) if !is_id_map(cm) => (
            "IdMapNotLabelled",
            format!(
                "ConfigMap {namespace}/{name} is not labelled {GWM_IDS_LABEL}={GWM_IDS_LABEL_VALUE}: the operator reads only ConfigMaps marked as GWM id maps (kubectl -n {namespace} label configmap {name} {GWM_IDS_LABEL}={GWM_IDS_LABEL_VALUE})"
            ),
        ),
        Some(cm) => match GwmIds::from_data(cm.data.as_ref().unwrap_or(&Default::default())) {
            Ok(ids) => {
                setting.ids = Some(Arc::new(ids));
                return setting;
            }
            Err(errors) => {
                let message = crate::api::conditions::list(&errors, MAX_ERRORS);
                (
                    "IdMapInvalid",
                    format!(
                        "ConfigMap {namespace}/{name} is not a valid GWM id map, so it maps nothing: {message}"
                    ),
                )
            }
        },
    };
    setting.problem = Some(problem);
    setting
}

/// Reads the id map `spec` names; the setting and the ConfigMap's resource version (a
/// changed map is a changed cluster to read). `Err`: the API server failed.
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    spec: &GanetiClusterSpec,
) -> Result<(GwmSetting, Option<String>), kube::Error> {
    let Some(name) = spec.gwm.as_ref().and_then(|g| g.id_map.as_ref()) else {
        return Ok((setting(spec, namespace, None), None));
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await?;
    let version = found.as_ref().and_then(|cm| cm.metadata.resource_version.clone());
    Ok((setting(spec, namespace, found.as_ref()), version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::GwmSpec;
    use crate::api::common::SubjectKind;
    use std::collections::BTreeMap;

    fn spec(write_ids: bool) -> GanetiClusterSpec {
        let mut s: GanetiClusterSpec = serde_json::from_value(serde_json::json!({
            "rapiUrl": "https://c.example.org:5080", "credentialsSecret": {"name": "s"}
        }))
        .unwrap();
        s.gwm = Some(GwmSpec {
            id_map: Some("gwm-ids".into()),
            write_ids: Some(write_ids),
        });
        s
    }

    fn cm(labelled: bool, users: &str) -> ConfigMap {
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([("users".to_string(), users.to_string())])),
            ..Default::default()
        };
        if labelled {
            cm.metadata.labels = Some(BTreeMap::from([(
                GWM_IDS_LABEL.into(),
                GWM_IDS_LABEL_VALUE.into(),
            )]));
        }
        cm
    }

    #[test]
    fn a_usable_map_is_in_force_and_every_other_case_says_why() {
        let ok = setting(&spec(true), "ns", Some(&cm(true, "2: alice")));
        assert!(ok.write_ids && ok.problem.is_none());
        assert_eq!(ok.ids.unwrap().name(SubjectKind::User, 2), Some("alice"));

        for (found, reason, words) in [
            (None, "IdMapNotFound", "does not exist"),
            (
                Some(cm(false, "2: alice")),
                "IdMapNotLabelled",
                "label configmap gwm-ids",
            ),
            (Some(cm(true, "2: alice\n3: alice")), "IdMapInvalid", "two ids"),
        ] {
            let s = setting(&spec(true), "ns", found.as_ref());
            assert!(s.ids.is_none(), "{reason}: nothing is mapped");
            let (r, message) = s.problem.unwrap();
            assert_eq!(r, reason);
            assert!(message.contains(words), "{message}");
        }
        let mut none = spec(false);
        none.gwm = None;
        assert_eq!(setting(&none, "ns", None), GwmSetting::default());
    }
}
