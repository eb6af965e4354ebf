//! ganeti-operator: a Kubernetes-native self-service VM service on Ganeti clusters.

pub mod access;
pub mod api;
pub mod authz;
pub mod clusters;
pub mod controllers;
pub mod explain;
pub mod fault;
pub mod inventory;
pub mod leader;
pub mod mail;
pub mod metrics;
pub mod quota;
pub mod rapi;
pub mod server;
pub mod signed;
pub mod tags;
