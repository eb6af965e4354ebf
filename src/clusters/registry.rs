//! The RAPI client of each GanetiCluster, shared by everything that talks to Ganeti:
//! the GanetiCluster controller builds (and rebuilds) them as it reads the clusters,
//! the other controllers and the HTTP server take them from here. A client is rebuilt
//! only when something it is built from changes (URL, CA bundle, insecure flag, the
//! credentials Secret's version), so its connection pool survives the sync loop.

use super::{ConnectError, Policy};
use crate::api::cluster::GanetiClusterSpec;
use crate::rapi::{RapiClient, RapiObserver};
use k8s_openapi::api::core::v1::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Everything a RAPI client is built from; a change means a new client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    url: String,
    ca_bundle: Option<String>,
    insecure: bool,
    observed: bool,
    secret_version: Option<String>,
}

impl ClientKey {
    pub fn new(spec: &GanetiClusterSpec, secret: &Secret) -> Self {
        Self {
            url: spec.rapi_url.clone(),
            ca_bundle: spec.ca_bundle.clone(),
            insecure: spec.insecure == Some(true),
            observed: spec.observed_only(),
            secret_version: secret.metadata.resource_version.clone(),
        }
    }
}

/// The clients by GanetiCluster name.
pub struct Registry {
    policy: Policy,
    observer: Arc<dyn RapiObserver>,
    clients: Mutex<HashMap<String, (ClientKey, Arc<RapiClient>)>>,
}

impl Registry {
    /// Clients under the deployer's `policy`, reporting each request to `observer`.
    pub fn new(policy: Policy, observer: Arc<dyn RapiObserver>) -> Self {
        Self {
            policy,
            observer,
            clients: Mutex::default(),
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The client of a cluster, as last connected.
    pub fn client(&self, cluster: &str) -> Option<Arc<RapiClient>> {
        self.clients
            .lock()
            .expect("clients lock")
            .get(cluster)
            .map(|(_, c)| c.clone())
    }

    /// The cluster's client: the one built before if nothing it comes from changed,
    /// else a new one (see [`super::connect`] for what is refused).
    pub fn connect(
        &self,
        cluster: &str,
        spec: &GanetiClusterSpec,
        secret: &Secret,
    ) -> Result<Arc<RapiClient>, ConnectError> {
        let key = ClientKey::new(spec, secret);
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some((k, c)) = clients.get(cluster)
            && *k == key
        {
            return Ok(c.clone());
        }
        let client = Arc::new(
            super::connect_named(cluster, spec, secret, self.policy)?.with_observer(self.observer.clone()),
        );
        clients.insert(cluster.to_string(), (key, client.clone()));
        Ok(client)
    }

    /// Drops a deleted cluster's client.
    pub fn forget(&self, cluster: &str) {
        self.clients.lock().expect("clients lock").remove(cluster);
    }
}
