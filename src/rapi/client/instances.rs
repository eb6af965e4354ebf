//! Instances: the bulk and single reads, the writes on one instance, and its console.
//!
//! Writes on one instance take a [`Target`]: a bare name, or a name pinned to the
//! instance's UUID. A pinned write sends `instance_uuid` in the body, where RAPI
//! passes the body into the opcode (rlib2's reboot, shutdown, rename, remove,
//! migrate, replace-disks, export); Ganeti then refuses the job (`ECODE_NOTUNIQUE`)
//! if the name resolves to another instance by the time the job runs
//! (`ExpandInstanceUuidAndName` in cmdlib/common.py). rlib2 drops the body of
//! startup and builds reinstall's opcodes from the name alone: those two cannot be
//! pinned through RAPI, so callers read the instance by exact name right before.

use super::{Kind, RapiClient};
use crate::inventory;
use crate::rapi::error::RapiError;
use crate::rapi::types::{
    BulkInstances, Console, InstanceCreate, InstanceExport, InstanceMigrate, InstanceReinstall,
    InstanceReplaceDisks, InstanceResize, JobId, RebootType, WireInstance,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

impl RapiClient {
    /// `GET /2/instances?bulk=1`.
    pub async fn instances(&self) -> Result<Vec<WireInstance>, RapiError> {
        self.get("instances_bulk", &["2", "instances"], &[("bulk", "1")])
            .await
    }

    /// `GET /2/instances?bulk=1` parsed straight into the inventory's model: the
    /// periodic sync's read, without wire types in between.
    pub async fn instances_inventory(&self) -> Result<Vec<inventory::Instance>, RapiError> {
        let bulk: BulkInstances = self
            .get("instances_bulk", &["2", "instances"], &[("bulk", "1")])
            .await?;
        Ok(bulk.0)
    }

    /// `GET /2/instances` without bulk: every instance's name, and nothing else.
    pub async fn instance_names(&self) -> Result<Vec<String>, RapiError> {
        #[derive(serde::Deserialize)]
        struct Item {
            id: String,
        }
        let items: Vec<Item> = self.get("instance_names", &["2", "instances"], &[]).await?;
        Ok(items.into_iter().map(|i| i.id).collect())
    }

    /// `GET /2/instances/<name>`.
    pub async fn instance(&self, name: &str) -> Result<WireInstance, RapiError> {
        self.get("instance", &["2", "instances", name], &[]).await
    }

    /// Names of the instances carrying `tag`, via `PUT /2/query/instance` with a filter
    /// (`=[]`: the tag list contains it): fresh from Ganeti, and found whatever the
    /// instances are called now.
    pub async fn instances_tagged(&self, tag: &str) -> Result<Vec<String>, RapiError> {
        let body = json!({"fields": ["name"], "qfilter": ["=[]", "tags", tag]});
        let answer = self.query("instances_tagged_query", "instance", &body).await?;
        answer.names()
    }

    /// Instance name → hypervisor, via `GET /2/query/instance` (the bulk answer lacks
    /// the hypervisor). Needs a user with the `read` or `write` option.
    pub async fn instance_hypervisors(&self) -> Result<HashMap<String, String>, RapiError> {
        #[derive(serde::Deserialize)]
        struct QueryResponse {
            data: Vec<Vec<(i64, Value)>>,
        }
        let resp: QueryResponse = self
            .get(
                "instances_query",
                &["2", "query", "instance"],
                &[("fields", "name,hypervisor")],
            )
            .await?;
        Ok(resp
            .data
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [(_, Value::String(name)), (_, Value::String(hv))] => Some((name.clone(), hv.clone())),
                _ => None,
            })
            .collect())
    }

    /// `POST /2/instances` with a v1 body; returns the job id.
    pub async fn create_instance(&self, req: &InstanceCreate, reason: &str) -> Result<JobId, RapiError> {
        self.write_body("instance_create", Method::POST, &["2", "instances"], req, reason)
            .await
    }

    /// `PUT /2/instances/<n>/startup`.
    pub async fn startup_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        // Not pinnable: rlib2 ignores the body of startup (see above).
        let name = target.into().name;
        self.write(
            "instance_startup",
            Method::PUT,
            &["2", "instances", name, "startup"],
            &[],
            None,
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/shutdown`, with Ganeti's default timeout unless given.
    pub async fn shutdown_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        timeout: Option<Duration>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let name = target.name;
        let body = target.pin(match timeout {
            Some(t) => json!({ "timeout": t.as_secs() }),
            None => json!({}),
        });
        self.write(
            "instance_shutdown",
            Method::PUT,
            &["2", "instances", name, "shutdown"],
            &[],
            Some(&body),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/reboot?type=...`.
    pub async fn reboot_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        kind: RebootType,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = target.uuid.map(|_| target.pin(json!({})));
        self.write(
            "instance_reboot",
            Method::POST,
            &["2", "instances", target.name, "reboot"],
            &[("type", kind.as_str())],
            body.as_ref(),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/rename`.
    pub async fn rename_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        new_name: &str,
        name_check: bool,
        ip_check: bool,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let name = target.name;
        let body =
            target.pin(json!({ "new_name": new_name, "name_check": name_check, "ip_check": ip_check }));
        self.write(
            "instance_rename",
            Method::PUT,
            &["2", "instances", name, "rename"],
            &[],
            Some(&body),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/reinstall` (v1 body).
    pub async fn reinstall_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceReinstall,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        // Not pinnable: rlib2 builds the opcodes from the name alone (see above).
        let name = target.into().name;
        // rlib2 refuses a body together with query parameters, and `reason` is one:
        // without OS parameters, the query form says the same (`os`, `nostartup`).
        if req.osparams.is_none() {
            let nostartup = if req.start == Some(false) { "1" } else { "0" };
            let mut query = vec![("nostartup", nostartup)];
            if let Some(os) = &req.os {
                query.push(("os", os.as_str()));
            }
            return self
                .write(
                    "instance_reinstall",
                    Method::POST,
                    &["2", "instances", name, "reinstall"],
                    &query,
                    None,
                    reason,
                )
                .await;
        }
        self.write_body(
            "instance_reinstall",
            Method::POST,
            &["2", "instances", name, "reinstall"],
            req,
            reason,
        )
        .await
    }

    /// `DELETE /2/instances/<n>`.
    pub async fn remove_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = target.uuid.map(|_| target.pin(json!({})));
        self.write(
            "instance_remove",
            Method::DELETE,
            &["2", "instances", target.name],
            &[],
            body.as_ref(),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/migrate`.
    pub async fn migrate_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceMigrate,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_migrate",
            Method::PUT,
            &["2", "instances", target.name, "migrate"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/modify` with new backend parameters.
    pub async fn resize_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceResize,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_modify",
            Method::PUT,
            &["2", "instances", target.name, "modify"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/disk/<i>/grow`: grows disk `disk` by `amount_mib`.
    pub async fn grow_instance_disk<'a>(
        &self,
        target: impl Into<Target<'a>>,
        disk: u8,
        amount_mib: u64,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let index = disk.to_string();
        self.write(
            "instance_disk_grow",
            Method::POST,
            &["2", "instances", target.name, "disk", &index, "grow"],
            &[],
            Some(&target.pin(serde_json::json!({ "amount": amount_mib }))),
            reason,
        )
        .await
    }

    /// `POST /2/instances/<n>/replace-disks` with a body.
    pub async fn replace_instance_disks<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceReplaceDisks,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_replace_disks",
            Method::POST,
            &["2", "instances", target.name, "replace-disks"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `PUT /2/instances/<n>/export` (local exports).
    pub async fn export_instance<'a>(
        &self,
        target: impl Into<Target<'a>>,
        req: &InstanceExport,
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let target = target.into();
        let body = serde_json::to_value(req).map_err(|e| RapiError::Config {
            detail: e.to_string(),
        })?;
        self.write(
            "instance_export",
            Method::PUT,
            &["2", "instances", target.name, "export"],
            &[],
            Some(&target.pin(body)),
            reason,
        )
        .await
    }

    /// `GET /2/instances/<n>/console`. A stopped instance is `Unavailable` (503);
    /// Ganeti 3.0.2 answers an unknown instance with 500, not 404.
    pub async fn console(&self, name: &str) -> Result<Console, RapiError> {
        let url = self.url(&["2", "instances", name, "console"], &[]);
        self.call(
            "instance_console",
            Kind::Once,
            Method::GET,
            url,
            None,
            self.request_timeout,
        )
        .await
    }
}

/// The instance a write is for: its name, and when known its UUID, which the write
/// then pins (see the module documentation of `rapi/client/instances.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub name: &'a str,
    pub uuid: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// The instance named `name` only if it is still the one with this UUID.
    pub fn pinned(name: &'a str, uuid: &'a str) -> Self {
        Self {
            name,
            uuid: Some(uuid).filter(|u| !u.is_empty()),
        }
    }

    /// `body` with `instance_uuid` added when pinned.
    fn pin(&self, mut body: Value) -> Value {
        if let (Some(uuid), Some(map)) = (self.uuid, body.as_object_mut()) {
            map.insert("instance_uuid".into(), Value::String(uuid.to_string()));
        }
        body
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(name: &'a str) -> Self {
        Self { name, uuid: None }
    }
}

impl<'a> From<&'a String> for Target<'a> {
    fn from(name: &'a String) -> Self {
        Self::from(name.as_str())
    }
}
