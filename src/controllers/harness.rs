//! What every controller does around its own decisions, written once: a tracing span
//! per object, the reconcile timer and counters, a typed error kind, a Warning Event on
//! the object when a reconcile fails (so `kubectl describe` says why), the retry policy,
//! and driving kube-runtime's `Controller` stream to its end.

use super::cluster::plan::FailureReason;
use crate::metrics::Metrics;
use crate::rapi::{self, RapiError};
use futures::{Stream, StreamExt};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Ganeti RAPI: {0}")]
    Rapi(#[from] RapiError),
    /// A GanetiCluster that could not be read; its status says so too.
    #[error("{message}")]
    ClusterSync { reason: FailureReason, message: String },
    /// An object in a state the controller cannot act on.
    #[error("{0}")]
    Invalid(String),
}

/// A bounded, typed kind of [`Error`]: the label of
/// `ganeti_operator_reconcile_errors_total`, the reason of the Warning Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Someone else wrote the object meanwhile (optimistic concurrency): retried at once.
    Conflict,
    /// The operator's RBAC does not allow the write.
    Forbidden,
    Kubernetes,
    Rapi(rapi::ErrorKind),
    Cluster(FailureReason),
    Invalid,
}

impl ErrorKind {
    /// CamelCase, as Event and condition reasons are.
    pub fn as_str(self) -> &'static str {
        use rapi::ErrorKind as R;
        match self {
            Self::Conflict => "Conflict",
            Self::Forbidden => "Forbidden",
            Self::Kubernetes => "KubernetesError",
            Self::Rapi(kind) => match kind {
                R::AuthFailed => "RapiAuthFailed",
                R::Forbidden => "RapiForbidden",
                R::NotFound => "RapiNotFound",
                R::BadRequest => "RapiBadRequest",
                R::Unavailable => "RapiUnavailable",
                R::Http => "RapiHttpError",
                R::Timeout => "RapiTimeout",
                R::Unreachable => "RapiUnreachable",
                R::Tls => "RapiTLSError",
                R::Decode => "RapiBadResponse",
                R::JobFailed => "GanetiJobFailed",
                R::Config => "RapiConfigError",
                R::ReadOnly => "ClusterObservedOnly",
            },
            Self::Cluster(reason) => reason.as_str(),
            Self::Invalid => "InvalidState",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => ErrorKind::Conflict,
            Error::Kube(kube::Error::Api(e)) if e.code == 403 => ErrorKind::Forbidden,
            Error::Kube(_) => ErrorKind::Kubernetes,
            Error::Rapi(e) => ErrorKind::Rapi(e.kind()),
            Error::ClusterSync { reason, .. } => ErrorKind::Cluster(*reason),
            Error::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// Records one reconciliation's duration when dropped (also when its future is
/// dropped unfinished at shutdown), and its error kind if it failed.
struct Timer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconciles
            .with_label_values(&[self.controller])
            .inc();
        self.metrics
            .reconcile_duration
            .with_label_values(&[self.controller])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Counts a failure of `kind`.
fn count_error(metrics: &Metrics, controller: &'static str, kind: ErrorKind) {
    metrics
        .reconcile_errors
        .with_label_values(&[controller, kind.as_str()])
        .inc();
}

/// Runs one reconciliation of `obj` under the harness: a span naming the controller
/// and the object, the timer, and on failure the error counted by kind and a Warning
/// Event on the object (not for conflicts: they are retried at once and mean nothing
/// to a reader of `kubectl describe`).
pub async fn reconcile<K>(
    controller: &'static str,
    metrics: &Metrics,
    recorder: &Recorder,
    obj: &K,
    work: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    let span = tracing::info_span!(
        "reconcile",
        controller,
        object = %obj.name_any(),
        namespace = obj.namespace().unwrap_or_default()
    );
    let timer = Timer {
        metrics,
        controller,
        started: Instant::now(),
    };
    let result = work.instrument(span).await;
    drop(timer);
    if let Err(e) = &result {
        let kind = e.kind();
        count_error(metrics, controller, kind);
        if kind != ErrorKind::Conflict {
            warn(recorder, obj, kind, &e.to_string()).await;
        }
    }
    result
}

/// Longest Event note the API server takes (1 KiB); longer messages are cut.
const NOTE_MAX: usize = 1000;

/// Publishes a Warning Event of `kind` on `obj` (kube's Recorder folds repeats into
/// one Event with a count). A failure to publish is logged, never fatal.
pub async fn warn<K>(recorder: &Recorder, obj: &K, kind: ErrorKind, message: &str)
where
    K: Resource<DynamicType = ()>,
{
    let mut note = message.to_string();
    if note.len() > NOTE_MAX {
        let mut end = NOTE_MAX;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let event = Event {
        type_: EventType::Warning,
        reason: kind.as_str().into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, object = %obj.name_any(), "publishing a Warning Event failed");
    }
}

/// When to try again after `error`: at once after a conflict, else after `delay`.
pub fn retry(controller: &'static str, object: &str, error: &Error, delay: Duration) -> Action {
    let kind = error.kind();
    tracing::warn!(controller, object, error = %error, kind = kind.as_str(), "reconcile failed");
    match kind {
        ErrorKind::Conflict => Action::requeue(Duration::from_millis(200)),
        _ => Action::requeue(delay),
    }
}

/// Drives a controller's result stream to its end (the controller's graceful
/// shutdown). `deleted` hears the name of each object that was gone when its turn
/// came: the store no longer has it, so whatever was kept for it can go.
pub async fn drive<K, E>(
    controller: &'static str,
    results: impl Stream<
        Item = Result<(ObjectRef<K>, Action), controller::Error<E, kube::runtime::watcher::Error>>,
    >,
    deleted: impl Fn(&str),
) where
    K: Resource,
    E: std::error::Error + 'static,
{
    results
        .for_each(|result| {
            match result {
                Ok(_) => {}
                Err(controller::Error::ObjectNotFound(object)) => deleted(&object.name),
                // The reconciler's own errors were reported by [`reconcile`].
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::debug!(controller, error = %e, "controller event"),
            }
            futures::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_bounded_and_distinct() {
        let mut kinds = vec![
            ErrorKind::Conflict,
            ErrorKind::Forbidden,
            ErrorKind::Kubernetes,
            ErrorKind::Invalid,
        ];
        for r in rapi::ErrorKind::ALL {
            kinds.push(ErrorKind::Rapi(r));
        }
        let names: std::collections::HashSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), kinds.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().next().unwrap().is_ascii_uppercase())
        );
    }

    #[test]
    fn errors_map_to_their_kind() {
        let api = |code| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("x", "y").with_code(code).boxed(),
            ))
        };
        assert_eq!(api(409).kind(), ErrorKind::Conflict);
        assert_eq!(api(403).kind(), ErrorKind::Forbidden);
        assert_eq!(api(500).kind(), ErrorKind::Kubernetes);
        assert_eq!(
            Error::Rapi(RapiError::Timeout).kind(),
            ErrorKind::Rapi(rapi::ErrorKind::Timeout)
        );
        assert_eq!(ErrorKind::Rapi(rapi::ErrorKind::Timeout).as_str(), "RapiTimeout");
        let sync = Error::ClusterSync {
            reason: FailureReason::Unreachable,
            message: "no route".into(),
        };
        assert_eq!(sync.kind().as_str(), "Unreachable");
        assert_eq!(
            retry("x", "o", &api(409), Duration::from_secs(5)),
            Action::requeue(Duration::from_millis(200))
        );
    }
}
