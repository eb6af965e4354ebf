//! The operator's Prometheus registry.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric the operator exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Build information (value always 1), labelled with the version.
    pub build_info: IntGauge,
    /// HTTP requests served, by route and status class.
    pub http_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new(
                "ganeti_operator_build_info",
                "Build information of the running operator; always 1.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ganeti_operator_http_requests_total",
                "HTTP requests served, by route and status class.",
            ),
            &["route", "code"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        Ok(Self {
            registry,
            build_info,
            http_requests,
        })
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
