//! Answers of `PUT /2/query/<resource>` (and `GET /2/query/...`): rows of
//! `[result status, value]` cells, read into job summaries, progress, names and counts.

use super::job::{JobProgress, JobStatus, JobSummary};
use super::timestamp;
use crate::rapi::error::RapiError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The value of field `i` of a query row (`Null` when absent or not available).
fn cell(row: &[Value], i: usize) -> Value {
    row.get(i)
        .and_then(|cell| cell.get(1))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Answer of `PUT /2/query/<resource>`: per row, per field, `[result status, value]`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct QueryAnswer {
    #[serde(default)]
    pub data: Vec<Vec<Value>>,
}

impl QueryAnswer {
    /// Rows of a job query for the fields `id`, `status`, `summary`, in that order.
    pub(crate) fn job_summaries(self) -> Result<Vec<JobSummary>, RapiError> {
        let decode = |what: &str, e: serde_json::Error| RapiError::Decode {
            detail: format!("job query {what}: {e}"),
        };
        self.data
            .into_iter()
            .map(|row| {
                let field = |i: usize| cell(&row, i);
                Ok(JobSummary {
                    id: serde_json::from_value(field(0)).map_err(|e| decode("id", e))?,
                    status: serde_json::from_value(field(1)).map_err(|e| decode("status", e))?,
                    summary: serde_json::from_value(field(2)).unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl QueryAnswer {
    /// Rows of a job query for the fields `id`, `status`, `received_ts`, in that order.
    pub(crate) fn job_progress(self) -> Result<Vec<JobProgress>, RapiError> {
        #[derive(Deserialize)]
        struct Received(#[serde(deserialize_with = "timestamp")] Option<f64>);
        let decode = |what: &str, e: serde_json::Error| RapiError::Decode {
            detail: format!("job query {what}: {e}"),
        };
        self.data
            .into_iter()
            .map(|row| {
                let field = |i: usize| cell(&row, i);
                Ok(JobProgress {
                    id: serde_json::from_value(field(0)).map_err(|e| decode("id", e))?,
                    status: serde_json::from_value(field(1)).map_err(|e| decode("status", e))?,
                    received_ts: serde_json::from_value::<Received>(field(2))
                        .map(|r| r.0)
                        .unwrap_or(None),
                })
            })
            .collect()
    }

    /// Rows of a query for the single field `name`.
    pub(crate) fn names(self) -> Result<Vec<String>, RapiError> {
        self.data
            .into_iter()
            .map(|row| {
                serde_json::from_value(cell(&row, 0)).map_err(|e| RapiError::Decode {
                    detail: format!("query name: {e}"),
                })
            })
            .collect()
    }

    /// Counts of a job query for the single field `status`.
    pub(crate) fn status_counts(self) -> Result<BTreeMap<String, u32>, RapiError> {
        let mut counts = BTreeMap::new();
        for row in self.data {
            let status = cell(&row, 0);
            let status: JobStatus = serde_json::from_value(status).map_err(|e| RapiError::Decode {
                detail: format!("job query status: {e}"),
            })?;
            *counts.entry(status.as_str().to_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_query_rows() {
        // Recorded from the testbed: `PUT /2/query/job` with a status filter.
        let answer: QueryAnswer = serde_json::from_str(
            r#"{"data": [[[0, 1778], [0, "queued"], [0, ["INSTANCE_CREATE(qtest.ganeti.test)"]]]], "fields": [{"name": "id", "title": "ID", "kind": "number", "doc": "Job ID"}, {"name": "status", "title": "Status", "kind": "text", "doc": "Job status"}, {"name": "summary", "title": "Summary", "kind": "other", "doc": "List of per-opcode summaries"}]}"#,
        )
        .unwrap();
        assert_eq!(
            answer.job_summaries().unwrap(),
            vec![JobSummary {
                id: 1778,
                status: JobStatus::Queued,
                summary: vec!["INSTANCE_CREATE(qtest.ganeti.test)".into()],
            }]
        );
        let broken: QueryAnswer =
            serde_json::from_value(json!({"data": [[[0, "x"], [0, "queued"], [0, []]]]})).unwrap();
        assert!(broken.job_summaries().is_err());
        let statuses: QueryAnswer = serde_json::from_str(
            r#"{"data": [[[0, "success"]], [[0, "success"]], [[0, "error"]]], "fields": [{"name": "status"}]}"#,
        )
        .unwrap();
        assert_eq!(
            statuses.status_counts().unwrap(),
            BTreeMap::from([("error".to_string(), 1), ("success".to_string(), 2)])
        );
    }

    #[test]
    fn job_progress_rows_parse() {
        let answer: QueryAnswer = serde_json::from_value(json!({
            "fields": [],
            "data": [
                [[0, 7], [0, "running"], [0, [1795541331, 500000]]],
                [[0, 8], [0, "success"], [0, null]],
            ]
        }))
        .unwrap();
        let rows = answer.job_progress().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, rows[0].status), (7, JobStatus::Running));
        assert_eq!(rows[0].received_ts, Some(1795541331.5));
        assert_eq!(
            (rows[1].id, rows[1].status, rows[1].received_ts),
            (8, JobStatus::Success, None)
        );
    }
}
