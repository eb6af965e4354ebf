//! Bodies of instance creation (`POST /2/instances`, v1) and reinstallation, with
//! OS parameters kept out of Debug output.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Map whose values stay out of Debug output (private and secret OS parameters).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretParams(pub BTreeMap<String, String>);

impl SecretParams {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// One disk of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DiskSpec {
    /// MiB.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vg: Option<String>,
}

/// One NIC of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NicSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Backend parameters of a new instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BeParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minmem: Option<u64>,
}

impl BeParams {
    fn is_empty(&self) -> bool {
        self.vcpus.is_none() && self.maxmem.is_none() && self.minmem.is_none()
    }
}

/// Body of `POST /2/instances` (version 1, feature `instance-create-reqv1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceCreate {
    #[serde(rename = "__version__")]
    version: u8,
    mode: &'static str,
    pub instance_name: String,
    pub disk_template: String,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hvparams: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BeParams::is_empty")]
    pub beparams: BeParams,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub osparams: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "SecretParams::is_empty")]
    pub osparams_private: SecretParams,
    #[serde(skip_serializing_if = "SecretParams::is_empty")]
    pub osparams_secret: SecretParams,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_install: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_sync: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Always sent: Ganeti's defaults (resolve the name, ping the IP) must not decide.
    pub name_check: bool,
    pub ip_check: bool,
}

impl InstanceCreate {
    /// A create request with name and IP checks off; set the rest by field.
    pub fn new(instance_name: impl Into<String>, disk_template: impl Into<String>) -> Self {
        Self {
            version: 1,
            mode: "create",
            instance_name: instance_name.into(),
            disk_template: disk_template.into(),
            disks: Vec::new(),
            nics: Vec::new(),
            os_type: None,
            pnode: None,
            snode: None,
            iallocator: None,
            hypervisor: None,
            hvparams: BTreeMap::new(),
            beparams: BeParams::default(),
            osparams: BTreeMap::new(),
            osparams_private: SecretParams::default(),
            osparams_secret: SecretParams::default(),
            start: None,
            no_install: None,
            wait_for_sync: None,
            tags: Vec::new(),
            name_check: false,
            ip_check: false,
        }
    }
}

/// Body of `POST /2/instances/<n>/reinstall` (feature `instance-reinstall-reqv1`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct InstanceReinstall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub osparams: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_bodies_skip_nones_and_always_carry_the_checks() {
        let mut req = InstanceCreate::new("vm1.ganeti.test", "diskless");
        req.nics.push(NicSpec {
            ip: Some("198.51.100.80".into()),
            ..Default::default()
        });
        req.os_type = Some("noop".into());
        req.osparams
            .insert("ssh_authorized_keys".into(), "ssh-ed25519 AAAA".into());
        req.osparams_secret
            .0
            .insert("root_password".into(), "hunter2".into());
        req.tags = vec!["a:b".into()];
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "__version__": 1, "mode": "create", "instance_name": "vm1.ganeti.test",
                "disk_template": "diskless", "disks": [], "nics": [{"ip": "198.51.100.80"}],
                "os_type": "noop", "osparams": {"ssh_authorized_keys": "ssh-ed25519 AAAA"},
                "osparams_secret": {"root_password": "hunter2"},
                "tags": ["a:b"], "name_check": false, "ip_check": false
            })
        );
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}
