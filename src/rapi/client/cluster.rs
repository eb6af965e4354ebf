//! Cluster-wide reads and node management: `/2/info`, features, OS definitions, the
//! bulk node and group lists, and node roles.

use super::RapiClient;
use crate::inventory::{self, NodeRole};
use crate::rapi::error::RapiError;
use crate::rapi::types::{BulkNodes, Info, JobId, WireGroup, WireNode, node_role_name, parse_node_role_name};
use reqwest::Method;
use serde_json::Value;

impl RapiClient {
    /// `GET /2/info`.
    pub async fn info(&self) -> Result<Info, RapiError> {
        self.get("info", &["2", "info"], &[]).await
    }

    /// `GET /2/features`; the operator requires
    /// [`FEATURE_INSTANCE_CREATE_V1`](crate::rapi::FEATURE_INSTANCE_CREATE_V1).
    pub async fn features(&self) -> Result<Vec<String>, RapiError> {
        self.get("features", &["2", "features"], &[]).await
    }

    /// `GET /2/os`: the OS definitions valid on every node, with variants
    /// (`debootstrap+default`), as instance creation accepts them.
    pub async fn operating_systems(&self) -> Result<Vec<String>, RapiError> {
        self.get("os_list", &["2", "os"], &[]).await
    }

    /// `GET /2/nodes?bulk=1`.
    pub async fn nodes(&self) -> Result<Vec<WireNode>, RapiError> {
        self.get("nodes_bulk", &["2", "nodes"], &[("bulk", "1")]).await
    }

    /// `GET /2/nodes?bulk=1` parsed straight into the inventory's model.
    pub async fn nodes_inventory(&self) -> Result<Vec<inventory::Node>, RapiError> {
        let bulk: BulkNodes = self.get("nodes_bulk", &["2", "nodes"], &[("bulk", "1")]).await?;
        Ok(bulk.0)
    }

    /// `GET /2/groups?bulk=1`.
    pub async fn groups(&self) -> Result<Vec<WireGroup>, RapiError> {
        self.get("groups_bulk", &["2", "groups"], &[("bulk", "1")]).await
    }

    /// `GET /2/nodes/<n>/role`.
    pub async fn node_role(&self, node: &str) -> Result<NodeRole, RapiError> {
        let name: String = self.get("node_role", &["2", "nodes", node, "role"], &[]).await?;
        parse_node_role_name(&name).ok_or_else(|| RapiError::Decode {
            detail: format!("unknown node role {name:?}"),
        })
    }

    /// `PUT /2/nodes/<n>/role` with the role name as a JSON string body. `force` is
    /// needed e.g. to demote a master candidate below the pool size.
    pub async fn set_node_role(
        &self,
        node: &str,
        role: NodeRole,
        force: bool,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let body = Value::String(node_role_name(role).to_owned());
        let q: &[(&str, &str)] = if force { &[("force", "1")] } else { &[] };
        self.write(
            "node_role_set",
            Method::PUT,
            &["2", "nodes", node, "role"],
            q,
            Some(&body),
            reason,
        )
        .await
    }
}
