//! Jobs: listing and counting them, following many through job queries, reading one,
//! and waiting for one to finish (long-polling `/wait`, or polling when refused).

use super::{Kind, RapiClient};
use crate::rapi::error::RapiError;
use crate::rapi::types::{Job, JobChange, JobId, JobProgress, JobStatus, JobSummary, QueryAnswer};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl RapiClient {
    /// `GET /2/jobs?bulk=1` (without op results).
    pub async fn jobs(&self) -> Result<Vec<Job>, RapiError> {
        self.get("jobs_bulk", &["2", "jobs"], &[("bulk", "1")]).await
    }

    /// Job counts by status (`queued`, `success`, ...), from `GET /2/query/job?fields=status`:
    /// the same jobs as `/2/jobs?bulk=1`, without Ganeti encoding every job's opcodes
    /// and results (a megabyte per few hundred jobs, and CPU the master needs).
    ///
    /// A RAPI user with neither the `read` nor the `write` option (the plainest
    /// read-only user) may not use `/2/query` (403): then the bulk job list, which
    /// any user may read, is counted instead.
    pub async fn job_counts(&self) -> Result<BTreeMap<String, u32>, RapiError> {
        let answer: Result<QueryAnswer, _> = self
            .get(
                "jobs_status_query",
                &["2", "query", "job"],
                &[("fields", "status")],
            )
            .await;
        match answer {
            Ok(answer) => answer.status_counts(),
            Err(RapiError::Forbidden) => {
                let mut counts = BTreeMap::new();
                for job in self.jobs().await? {
                    *counts.entry(job.status.as_str().to_owned()).or_insert(0) += 1;
                }
                Ok(counts)
            }
            Err(e) => Err(e),
        }
    }

    /// Jobs not finished yet (queued, waiting, running, canceling), with their
    /// summaries (`INSTANCE_CREATE(name)`), via `PUT /2/query/job` with a filter: unlike
    /// `GET /2/jobs?bulk=1` its cost does not grow with the job history Ganeti keeps.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobSummary>, RapiError> {
        let unfinished = [
            JobStatus::Queued,
            JobStatus::Waiting,
            JobStatus::Running,
            JobStatus::Canceling,
        ];
        let mut filter = vec![json!("|")];
        filter.extend(unfinished.iter().map(|s| json!(["=", "status", s.as_str()])));
        let body = json!({"fields": ["id", "status", "summary"], "qfilter": filter});
        let answer = self.query("jobs_query", "job", &body).await?;
        answer.job_summaries()
    }

    /// The status of each of `ids` that Ganeti still knows (archived ones are absent),
    /// in one `PUT /2/query/job`: what a controller following many jobs asks instead of
    /// one `GET /2/jobs/<id>` (all opcodes included) per job.
    pub async fn job_progress(&self, ids: &[u64]) -> Result<Vec<JobProgress>, RapiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut filter = vec![json!("|")];
        filter.extend(ids.iter().map(|id| json!(["=", "id", id])));
        let body = json!({"fields": ["id", "status", "received_ts"], "qfilter": filter});
        let answer = self.query("jobs_progress_query", "job", &body).await?;
        answer.job_progress()
    }

    /// `GET /2/jobs/<id>`. An unknown (or archived) job is `NotFound`: Ganeti 3.0.2
    /// answers it with 200 and all fields null.
    pub async fn job(&self, id: JobId) -> Result<Job, RapiError> {
        let id_text = id.to_string();
        let raw: Value = self.get("job", &["2", "jobs", &id_text], &[]).await?;
        if raw.get("status").is_none_or(Value::is_null) {
            return Err(RapiError::NotFound {
                message: format!("job {id} is unknown"),
            });
        }
        serde_json::from_value(raw).map_err(|e| RapiError::Decode {
            detail: e.to_string(),
        })
    }

    /// One `GET /2/jobs/<id>/wait` long-poll for a status change: `Ok(None)` when
    /// nothing changed within Ganeti's poll window (10 s), else the new status.
    pub async fn wait_job_change(
        &self,
        id: JobId,
        previous: Option<JobStatus>,
    ) -> Result<Option<JobStatus>, RapiError> {
        let id_text = id.to_string();
        let url = self.url(&["2", "jobs", &id_text, "wait"], &[]);
        let body = json!({
            "fields": ["status"],
            "previous_job_info": previous.map(|s| json!([s.as_str()])),
            "previous_log_serial": null,
        });
        // A GET with a body, as RAPI wants; a read, but not retried here: the caller
        // loops anyway.
        let change: Option<JobChange> = self
            .call(
                "job_wait",
                Kind::Once,
                Method::GET,
                url,
                Some(&body),
                self.wait_timeout,
            )
            .await?;
        let Some(change) = change else { return Ok(None) };
        match change.job_info.first() {
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| RapiError::Decode {
                    detail: format!("job status {v}: {e}"),
                }),
            None => Err(RapiError::Decode {
                detail: "wait answer without job_info".into(),
            }),
        }
    }

    /// Waits until the job is final and returns it (look at `Job::failure()` or use
    /// `into_success()`). Long-polls `/wait`; falls back to plain GET polling when the
    /// user may not use it (4xx other than 404, e.g. a read-only user's 403), or when
    /// Ganeti errs on it (500 "Can't load job file" for an unknown job). `Timeout` when
    /// `deadline` passes first.
    pub async fn wait_job(&self, id: JobId, deadline: Duration) -> Result<Job, RapiError> {
        let until = Instant::now() + deadline;
        let mut previous: Option<JobStatus> = None;
        let mut long_poll = true;
        let mut poll_delay = Duration::from_millis(250);
        loop {
            if Instant::now() >= until {
                return Err(RapiError::Timeout);
            }
            if long_poll {
                match self.wait_job_change(id, previous).await {
                    Ok(Some(status)) if status.is_final() => return self.job(id).await,
                    Ok(Some(status)) => previous = Some(status),
                    Ok(None) => {}
                    Err(RapiError::NotFound { .. }) => {
                        return Err(RapiError::NotFound {
                            message: format!("job {id} is unknown"),
                        });
                    }
                    Err(
                        RapiError::Unauthorized
                        | RapiError::Forbidden
                        | RapiError::BadRequest { .. }
                        | RapiError::Http { .. },
                    ) => {
                        tracing::debug!(job = %id, "job wait refused; polling instead");
                        long_poll = false;
                    }
                    Err(e) if e.is_retryable_read() => {
                        tokio::time::sleep(poll_delay).await;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let job = self.job(id).await?;
                if job.status.is_final() {
                    return Ok(job);
                }
                let left = until.saturating_duration_since(Instant::now());
                tokio::time::sleep(poll_delay.min(left)).await;
                poll_delay = (poll_delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
