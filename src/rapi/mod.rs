//! The only code that speaks Ganeti's Remote API (RAPI v2): an async client on
//! reqwest + rustls with typed requests and answers, job waiting, typed error
//! kinds with bounded labels, read-only retries and a metrics hook.
//!
//! Behaviour follows the installed Ganeti 3.0 sources (lib/rapi/rlib2.py), not only
//! the documentation; quirks found on the real testbed are noted where handled.

mod client;
mod error;
pub mod tls;
mod types;

pub use client::{Credentials, NoopObserver, RapiClient, RapiConfig, RapiObserver, Target};
pub use error::{ErrorBody, ErrorCode, ErrorKind, GanetiFailure, RapiError};
pub use tls::TlsMode;
pub use types::*;
