//! Jobs: ids, statuses, `/2/jobs/<id>` with its failure and reason trail, the rows of
//! job queries and the answer of `/2/jobs/<id>/wait`.

use super::{null_as_default, timestamp};
use crate::rapi::error::{GanetiFailure, RapiError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

/// A Ganeti job id. Ganeti 3.0 answers a bare JSON number; older versions a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(JobId(n)),
            Raw::S(s) => s.parse().map(JobId).map_err(serde::de::Error::custom),
        }
    }
}

/// Job (and opcode) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Waiting,
    Canceling,
    Running,
    Canceled,
    Success,
    Error,
}

impl JobStatus {
    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Canceled | Self::Success | Self::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Canceling => "canceling",
            Self::Running => "running",
            Self::Canceled => "canceled",
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// A job as `GET /2/jobs/<id>` (and, without results, `/2/jobs?bulk=1`) reports it.
///
/// Ganeti 3.0.2 answers an unknown job id with 200 and every field `null`: the
/// client turns that into `RapiError::NotFound`, so `status` is always present here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Job {
    pub id: u64,
    pub status: JobStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub summary: Vec<String>,
    /// Per opcode.
    #[serde(default, deserialize_with = "null_as_default")]
    pub opstatus: Vec<JobStatus>,
    /// Per opcode: its result, or for a failed opcode `[error_type, [message, ecode]]`.
    /// Absent in bulk listings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub opresult: Vec<Value>,
    #[serde(default, deserialize_with = "timestamp")]
    pub received_ts: Option<f64>,
    #[serde(default, deserialize_with = "timestamp")]
    pub start_ts: Option<f64>,
    #[serde(default, deserialize_with = "timestamp")]
    pub end_ts: Option<f64>,
    /// Per opcode, as submitted; only the reason trail is kept of it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ops: Vec<JobOp>,
}

/// One opcode of a job: its reason trail, `[source, text, nanoseconds]` entries.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct JobOp {
    #[serde(default, deserialize_with = "null_as_default")]
    pub reason: Vec<Value>,
}

/// The reason trail source of the `reason=` a RAPI caller gave.
pub const REASON_SOURCE_USER: &str = "gnt:user";

impl Job {
    /// The `reason=` texts the job was submitted with (one per opcode that has one).
    pub fn user_reasons(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().flat_map(|op| {
            op.reason
                .iter()
                .filter_map(|entry| match entry.as_array()?.as_slice() {
                    [source, text, ..] if source.as_str() == Some(REASON_SOURCE_USER) => text.as_str(),
                    _ => None,
                })
        })
    }

    /// Why the job failed, when it did (error or canceled).
    pub fn failure(&self) -> Option<GanetiFailure> {
        match self.status {
            JobStatus::Error => {}
            JobStatus::Canceled => {
                return Some(GanetiFailure {
                    error_type: "JobCanceled".into(),
                    message: format!("job {} was canceled", self.id),
                    ecode: None,
                });
            }
            _ => return None,
        }
        let failed = self
            .opstatus
            .iter()
            .zip(&self.opresult)
            .find(|(s, _)| **s == JobStatus::Error)
            .and_then(|(_, r)| GanetiFailure::from_opresult(r));
        Some(failed.unwrap_or_else(|| GanetiFailure {
            error_type: "JobError".into(),
            message: format!("job {} failed: {}", self.id, Value::from(self.opresult.clone())),
            ecode: None,
        }))
    }

    /// The job if it succeeded, else `RapiError::JobFailed`.
    pub fn into_success(self) -> Result<Job, RapiError> {
        match self.failure() {
            Some(f) => Err(RapiError::JobFailed(f)),
            None => Ok(self),
        }
    }
}

/// A job as a filtered job query reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub id: u64,
    pub status: JobStatus,
    /// One entry per opcode, e.g. `INSTANCE_CREATE(vm1.example.org)`.
    pub summary: Vec<String>,
}

/// A job's status and when Ganeti received it, from a job query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobProgress {
    pub id: u64,
    pub status: JobStatus,
    /// Seconds since the epoch.
    pub received_ts: Option<f64>,
}

/// Answer of `GET /2/jobs/<id>/wait` when something changed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobChange {
    /// The requested fields, in order (the client asks for `["status"]`).
    pub job_info: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub log_entries: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rapi::ErrorCode;
    use serde_json::json;

    #[test]
    fn the_reason_trail_names_what_the_caller_gave() {
        // Recorded from the testbed: `GET /2/jobs/<id>` of a migrate with `reason=`.
        let job: Job = serde_json::from_str(
            r#"{"id": 6, "ops": [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "probe", "reason": [["gnt:user", "test migrate", 1795563899581329408], ["gnt:library:rlib2:instances_name_migrate", "", 1795563899581336064], ["gnt:opcode:instance_migrate", "job=6;index=0", 1795563899583681000]]}], "status": "error", "summary": ["INSTANCE_MIGRATE(probe)"], "opstatus": ["error"], "opresult": [["OpPrereqError", ["Can't compute nodes using iallocator 'hail'", "insufficient_resources"]]]}"#,
        )
        .unwrap();
        assert_eq!(job.user_reasons().collect::<Vec<_>>(), ["test migrate"]);
        // Jobs of the CLI carry no user reason; odd entries are skipped, not fatal.
        let cli: Job = serde_json::from_value(json!({"id": 4, "status": "success",
            "ops": [{"reason": [["gnt:opcode:node_add", "job=4;index=0", 1]]}, {"reason": null}, {"reason": [["gnt:user"], 7]}]}))
        .unwrap();
        assert_eq!(cli.user_reasons().count(), 0);
    }

    const JOB_OK: &str = r#"{"id": 2, "ops": [{"OP_ID": "OP_INSTANCE_CREATE"}], "status": "success", "summary": ["INSTANCE_CREATE(probe1.ganeti.test)"], "opstatus": ["success"], "received_ts": [1795541331, 727868], "start_ts": [1795541331, 866993], "end_ts": [1795541332, 302401], "oplog": [[[1, [1795541331, 992744], "message", "* creating instance disks..."]]], "opresult": [["node1.ganeti.test"]]}"#;
    const JOB_FAILED: &str = r#"{"id": 3, "status": "error", "summary": ["INSTANCE_CREATE(probe1.ganeti.test)"], "opstatus": ["error"], "received_ts": [1795541340, 942454], "start_ts": [1795541341, 79335], "end_ts": [1795541341, 84994], "oplog": [[]], "opresult": [["OpPrereqError", ["Instance 'probe1.ganeti.test' is already in the cluster", "already_exists"]]]}"#;
    const JOBS_BULK: &str = r#"[{"id": 1, "ops": [{"OP_ID": "OP_CLUSTER_POST_INIT"}], "status": "success", "summary": ["CLUSTER_POST_INIT"], "opstatus": ["success"], "received_ts": [1795541319, 859656], "start_ts": [1795541320, 5618], "end_ts": [1795541320, 45064]},
        {"id": 4, "status": "running", "summary": ["INSTANCE_STARTUP(x)"], "opstatus": ["running"], "received_ts": [1795541319, 0], "start_ts": [1795541320, 0], "end_ts": null}]"#;

    #[test]
    fn jobs_parse_with_results_and_failures() {
        let ok: Job = serde_json::from_str(JOB_OK).unwrap();
        assert_eq!(ok.status, JobStatus::Success);
        assert_eq!(ok.opresult, vec![json!(["node1.ganeti.test"])]);
        assert!((ok.end_ts.unwrap() - 1795541332.302401).abs() < 1e-6);
        assert_eq!(ok.failure(), None);
        assert!(ok.into_success().is_ok());

        let failed: Job = serde_json::from_str(JOB_FAILED).unwrap();
        let f = failed.failure().unwrap();
        assert_eq!(f.error_type, "OpPrereqError");
        assert_eq!(f.ecode, Some(ErrorCode::AlreadyExists));
        assert!(matches!(failed.into_success(), Err(RapiError::JobFailed(_))));

        let bulk: Vec<Job> = serde_json::from_str(JOBS_BULK).unwrap();
        assert_eq!(bulk[1].status, JobStatus::Running);
        assert!(!bulk[1].status.is_final());
        assert_eq!(bulk[1].end_ts, None);
        assert!(bulk[1].opresult.is_empty());

        // An unknown id: Ganeti 3.0.2 answers 200 with nulls; this must not parse as a job.
        let unknown = r#"{"id": 9999, "ops": null, "status": null, "summary": null, "opstatus": null, "received_ts": null, "start_ts": null, "end_ts": null, "oplog": null, "opresult": null}"#;
        assert!(serde_json::from_str::<Job>(unknown).is_err());
    }

    #[test]
    fn job_ids_are_numbers_or_strings() {
        assert_eq!(serde_json::from_str::<JobId>("2").unwrap(), JobId(2));
        assert_eq!(serde_json::from_str::<JobId>("\"17\"").unwrap(), JobId(17));
        assert!(serde_json::from_str::<JobId>("\"x\"").is_err());
    }
}
