//! The pieces built once in `main` and shared by the controllers and the HTTP server:
//! neither builds its own, and the server never reaches into the controllers.

use crate::access::rules::Rules;
use crate::clusters::Registry;
use crate::config::Config;
use crate::inventory::Inventory;
use crate::keys::Keys;
use crate::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct Shared {
    pub client: kube::Client,
    /// Every cluster's latest read (filled by the GanetiCluster controller).
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub keys: Arc<Keys>,
    /// Every cluster's RAPI client.
    pub clusters: Arc<Registry>,
    /// Roles, bindings and profiles from watches, with the authorization index.
    pub rules: Rules,
}
