//! RAPI request and answer types (shapes checked against Ganeti 3.0.2), and their
//! conversion into the domain model of `crate::inventory`, one file per resource:
//! `cluster`, `instance`, `node`, `job` and `query` answers, the request bodies of
//! `create` and of the instance `actions`, and the `bulk` reads.
//!
//! Wire types are lenient: every field Ganeti may leave out or send as `null` (for
//! example `dtotal` on a diskless node, or `oper_state` of an instance on an offline
//! node) is optional, so one odd object cannot break a whole bulk read.
//!
//! The periodic bulk reads skip the wire types: `BulkInstances` and `BulkNodes` parse
//! straight into the inventory, keeping only what it holds (see `bulk`).

mod actions;
mod bulk;
mod cluster;
mod create;
#[cfg(test)]
mod fixtures;
mod instance;
mod job;
mod node;
mod query;

pub use actions::*;
pub(crate) use bulk::*;
pub use cluster::*;
pub use create::*;
pub use instance::*;
pub use job::*;
pub use node::*;
pub(crate) use query::*;

use serde::{Deserialize, Deserializer};

/// `[seconds, microseconds]` as seconds since the epoch.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let raw: Option<(f64, f64)> = Option::deserialize(d)?;
    Ok(raw.map(|(s, us)| s + us / 1e6))
}

/// Ganeti sends `null` for absent lists and maps in places.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
