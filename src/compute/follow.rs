//! Keeps a [`Catalog`] up to date: it follows the authorization snapshots (which carry
//! the inventories) and a watch of the InstanceApplications (which name the VMs they
//! made). The IO edge of this module.

use super::catalog::Catalog;
use super::objects::{ApplicationRef, Applications};
use crate::access::rules::Rules;
use crate::api::InstanceApplication;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A burst of application changes is published once.
const SETTLE: Duration = Duration::from_millis(20);

/// The VMs' applications, from a watch of every InstanceApplication, by the UUID the
/// application recorded.
pub fn applications(client: kube::Client) -> watch::Receiver<Arc<Applications>> {
    let (publish, current) = watch::channel(Arc::new(Applications::new()));
    let (store, writer) = reflector::store::<InstanceApplication>();
    let events = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<InstanceApplication>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    tokio::spawn(events.for_each(move |event| {
        match event {
            Ok(_) => notify.notify_one(),
            Err(e) => tracing::debug!(error = %e, "InstanceApplication watch error"),
        }
        futures::future::ready(())
    }));
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            tokio::time::sleep(SETTLE).await;
            let map: Applications = store
                .state()
                .iter()
                .filter_map(|app| {
                    let uuid = app.status.as_ref()?.instance_uuid.clone()?;
                    let reference = ApplicationRef {
                        namespace: app.metadata.namespace.clone()?,
                        name: app.metadata.name.clone()?,
                    };
                    Some((uuid, reference))
                })
                .collect();
            if **publish.borrow() != map && publish.send(Arc::new(map)).is_err() {
                return;
            }
        }
    });
    current
}

impl Catalog {
    /// Follows the rules' snapshots and the applications until either ends.
    pub async fn follow(self: Arc<Self>, rules: Rules, mut applications: watch::Receiver<Arc<Applications>>) {
        let mut changes = rules.changes();
        loop {
            let snapshot = changes.borrow_and_update().clone();
            let apps = applications.borrow_and_update().clone();
            let changed = self.update(snapshot, &apps);
            if changed > 0 {
                tracing::debug!(changed, "compute API: objects changed");
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = applications.changed() => if r.is_err() { return },
            }
        }
    }
}
