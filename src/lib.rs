//! ganeti-operator: a Kubernetes-native self-service VM service on Ganeti clusters.

pub mod access;
pub mod api;
pub mod authz;
pub mod clusters;
pub mod compute;
pub mod config;
pub mod controllers;
pub mod explain;
pub mod fault;
pub mod inventory;
pub mod keys;
pub mod leader;
pub mod mail;
pub mod metrics;
pub mod plugin;
pub mod profile;
pub mod quota;
pub mod rapi;
pub mod server;
pub mod shared;
pub mod signed;
pub mod status;
pub mod tags;
