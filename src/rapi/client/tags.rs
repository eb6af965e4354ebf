//! Tags of the cluster and of instances: reading them, and adding or removing several
//! in one job.

use super::RapiClient;
use crate::rapi::error::RapiError;
use crate::rapi::types::JobId;
use reqwest::Method;

impl RapiClient {
    /// `GET /2/tags`.
    pub async fn cluster_tags(&self) -> Result<Vec<String>, RapiError> {
        self.get("cluster_tags", &["2", "tags"], &[]).await
    }

    /// `PUT /2/tags?tag=...`: all tags in one job.
    pub async fn add_cluster_tags(&self, tags: &[&str], reason: &str) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write("cluster_tags_add", Method::PUT, &["2", "tags"], &q, None, reason)
            .await
    }

    /// `DELETE /2/tags?tag=...`.
    pub async fn remove_cluster_tags(&self, tags: &[&str], reason: &str) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "cluster_tags_remove",
            Method::DELETE,
            &["2", "tags"],
            &q,
            None,
            reason,
        )
        .await
    }

    /// `GET /2/instances/<n>/tags`.
    pub async fn instance_tags(&self, name: &str) -> Result<Vec<String>, RapiError> {
        self.get("instance_tags", &["2", "instances", name, "tags"], &[])
            .await
    }

    /// `PUT /2/instances/<n>/tags?tag=a&tag=b`: one job for all tags.
    pub async fn add_instance_tags(
        &self,
        name: &str,
        tags: &[&str],
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "instance_tags_add",
            Method::PUT,
            &["2", "instances", name, "tags"],
            &q,
            None,
            reason,
        )
        .await
    }

    /// `DELETE /2/instances/<n>/tags?tag=a&tag=b`.
    pub async fn remove_instance_tags(
        &self,
        name: &str,
        tags: &[&str],
        reason: &str,
    ) -> Result<JobId, RapiError> {
        let q: Vec<_> = tags.iter().map(|t| ("tag", *t)).collect();
        self.write(
            "instance_tags_remove",
            Method::DELETE,
            &["2", "instances", name, "tags"],
            &q,
            None,
            reason,
        )
        .await
    }
}
