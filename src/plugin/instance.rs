//! What the operator's aggregated API sends (`compute.ganeti.dev/v1alpha1`), read
//! leniently: a field the server leaves out is empty here, never an error.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// One Ganeti instance as a GanetiInstance object (cluster-scoped, named
/// `<cluster>.<instance name>`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GanetiInstance {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: InstanceSpec,
    #[serde(default)]
    pub status: InstanceStatus,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub run_strategy: Option<String>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub isolated: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    #[serde(default)]
    pub instance_name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub primary_node: Option<String>,
    #[serde(default)]
    pub secondary_nodes: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub vcpus: Option<u64>,
    #[serde(default, rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
    #[serde(default, rename = "diskMiB")]
    pub disk_mib: Option<u64>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub hypervisor: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct Owner {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

impl GanetiInstance {
    /// The object's name (`<cluster>.<instance>`).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Ganeti instance name, or the object's name when the status lacks it.
    pub fn instance_name(&self) -> &str {
        match self.status.instance_name.as_str() {
            "" => self.name(),
            name => name,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct InstanceList {
    #[serde(default)]
    pub items: Vec<GanetiInstance>,
}

/// The answer to `POST ganetiinstances/{name}/{start|shutdown|reboot|migrate}`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct ActionResult {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub instance: String,
    pub job: u64,
}

/// The answer to `POST ganetiinstances/{name}/console`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleTicket {
    pub url: String,
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_example_reads() {
        let vm: GanetiInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "compute.ganeti.dev/v1alpha1",
            "kind": "GanetiInstance",
            "metadata": {"name": "lab.vm1.example.org", "uid": "u-1", "resourceVersion": "7",
                "labels": {"compute.ganeti.dev/cluster": "lab"}},
            "spec": {"cluster": "lab", "runStrategy": "Always", "locked": false, "isolated": false},
            "status": {"instanceName": "vm1.example.org", "uuid": "u-1", "state": "running",
                "running": true, "primaryNode": "node1", "secondaryNodes": ["node2"],
                "ips": ["192.0.2.5"], "vcpus": 1, "memoryMiB": 512, "diskMiB": 1024,
                "os": "debootstrap+default", "hypervisor": "kvm",
                "owner": {"kind": "User", "name": "alice"}, "locked": false, "isolated": false}
        }))
        .unwrap();
        assert_eq!(vm.name(), "lab.vm1.example.org");
        assert_eq!(vm.instance_name(), "vm1.example.org");
        assert_eq!(vm.spec.cluster, "lab");
        assert_eq!(
            (vm.status.memory_mib, vm.status.disk_mib),
            (Some(512), Some(1024))
        );
        assert_eq!(vm.status.owner.unwrap().name, "alice");
    }

    #[test]
    fn a_sparse_object_still_reads() {
        let vm: GanetiInstance =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "lab.x"}})).unwrap();
        assert_eq!(vm.instance_name(), "lab.x");
        assert!(!vm.status.running);
    }

    #[test]
    fn action_and_console_answers_read() {
        let done: ActionResult = serde_json::from_value(serde_json::json!({
            "apiVersion": "compute.ganeti.dev/v1alpha1", "kind": "GanetiInstanceAction",
            "action": "shutdown", "cluster": "lab", "instance": "vm1", "uuid": "u", "job": 42
        }))
        .unwrap();
        assert_eq!(done.job, 42);
        let ticket: ConsoleTicket = serde_json::from_value(serde_json::json!({
            "ticket": "t", "expiresInSeconds": 60, "url": "https://p/console/?t", "websocket": "/w"
        }))
        .unwrap();
        assert_eq!(ticket.expires_in_seconds, Some(60));
    }
}
