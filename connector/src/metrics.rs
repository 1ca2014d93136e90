//! Telemetry: Prometheus metrics and the health endpoints.
//!
//! `/metrics` serves OpenMetrics text, `/healthz` answers while the process runs (never tied to
//! InfluxDB, so an outage does not restart pods in a loop), `/readyz` answers 200 once the
//! consumer joined its group and while InfluxDB accepts the sink's credentials and target, and
//! 503 with the reason otherwise. Counters are bumped once per batch, not per record.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::alerts::AlertMetrics;
use crate::reject::Rejection;

/// Labels of the dead-letter counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    stage: &'static str,
    reason: &'static str,
}

/// Labels of the Schema Registry request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    outcome: &'static str,
}

/// Every metric and health flag of one sink process.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    consumed: Counter,
    written: Counter,
    dead_lettered: Family<RejectLabels, Counter>,
    batches: Counter,
    skipped: Family<RejectLabels, Counter>,
    write_retries: Counter,
    last_write_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    registry_requests: Family<RegistryLabels, Counter>,
    alerts: AlertMetrics,
    joined: AtomicBool,
    influx_refusal: Mutex<Option<String>>,
    registry_refusal: Mutex<Option<String>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Creates and registers the metrics (prefix `kis_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kis");
        let consumed = Counter::default();
        let written = Counter::default();
        let dead_lettered = Family::<RejectLabels, Counter>::default();
        let batches = Counter::default();
        let skipped = Family::<RejectLabels, Counter>::default();
        let write_retries = Counter::default();
        let last_write_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "records_consumed",
            "Records read from Kafka",
            consumed.clone(),
        );
        registry.register(
            "points_written",
            "Points acknowledged by InfluxDB",
            written.clone(),
        );
        registry.register(
            "records_dead_lettered",
            "Records acknowledged by the dead-letter topic, by stage and reason",
            dead_lettered.clone(),
        );
        registry.register("batches_written", "Batches made durable", batches.clone());
        registry.register(
            "records_skipped",
            "Invalid records let go under dead_letter.policy = \"skip\", by stage and reason",
            skipped.clone(),
        );
        registry.register(
            "write_retries",
            "InfluxDB write attempts that failed and were retried",
            write_retries.clone(),
        );
        registry.register(
            "last_durable_batch_timestamp_seconds",
            "Unix time of the last batch made durable",
            last_write_seconds.clone(),
        );
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "schema_registry_requests",
            "Schema fetches from the Schema Registry, by outcome (ok, not_found, refused, error); each schema id is fetched once and cached",
            registry_requests.clone(),
        );
        let alerts = AlertMetrics::register(&mut registry);
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "Build information", build_info);
        Self {
            registry,
            consumed,
            written,
            dead_lettered,
            batches,
            skipped,
            write_retries,
            last_write_seconds,
            registry_requests,
            alerts,
            joined: AtomicBool::new(false),
            influx_refusal: Mutex::new(None),
            registry_refusal: Mutex::new(None),
        }
    }

    /// Records consumed since the last call.
    pub fn consumed(&self, records: u64) {
        self.consumed.inc_by(records);
    }

    /// A batch became durable.
    pub fn batch_durable<'a>(&self, points: u64, rejections: impl Iterator<Item = &'a Rejection>) {
        self.written.inc_by(points);
        for rejection in rejections {
            self.dead_lettered
                .get_or_create(&RejectLabels {
                    stage: rejection.stage.as_str(),
                    reason: rejection.reason,
                })
                .inc();
        }
        self.batches.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        self.last_write_seconds.set(now);
    }

    /// An invalid record was skipped (lossy policy).
    pub fn skipped(&self, rejection: &Rejection) {
        self.skipped
            .get_or_create(&RejectLabels {
                stage: rejection.stage.as_str(),
                reason: rejection.reason,
            })
            .inc();
    }

    /// An InfluxDB write attempt failed and will be retried.
    pub fn write_retried(&self) {
        self.write_retries.inc();
    }

    /// Partitions were revoked from this member: their series go, so that replicas never report
    /// stale values for partitions another member now owns.
    pub fn partitions_revoked(&self, partitions: &[(String, i32)]) {
        // Per-partition series are removed here as they are added.
        self.alerts.partitions_revoked(partitions);
    }

    /// The fuel alert gauges and counters.
    pub fn alert_metrics(&self) -> &AlertMetrics {
        &self.alerts
    }

    /// The consumer joined its group (an assignment arrived, possibly empty).
    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// InfluxDB refuses writes for a reason the operator must fix (`Some`), or accepts them again (`None`).
    pub fn set_influx_refusal(&self, refusal: Option<String>) {
        if let Ok(mut current) = self.influx_refusal.lock() {
            *current = refusal;
        }
    }

    /// A schema fetch from the Schema Registry ended with `outcome`.
    pub fn registry_request(&self, outcome: &'static str) {
        self.registry_requests
            .get_or_create(&RegistryLabels { outcome })
            .inc();
    }

    /// The Schema Registry refuses the sink's credentials (`Some`), or accepts them again.
    pub fn set_registry_refusal(&self, refusal: Option<String>) {
        if let Ok(mut current) = self.registry_refusal.lock() {
            *current = refusal;
        }
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.joined.load(Ordering::Relaxed) {
            return Err("the Kafka consumer has not joined its group yet".into());
        }
        match self
            .influx_refusal
            .lock()
            .ok()
            .and_then(|refusal| refusal.clone())
        {
            Some(refusal) => Err(format!("InfluxDB refuses writes: {refusal}")),
            None => match self
                .registry_refusal
                .lock()
                .ok()
                .and_then(|refusal| refusal.clone())
            {
                Some(refusal) => Err(format!("the Schema Registry refuses the sink: {refusal}")),
                None => Ok(()),
            },
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the telemetry address (done at start-up, so a taken port is a start-up error).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn metrics(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        telemetry.render(),
    )
}

async fn readyz(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    match telemetry.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Stage;

    #[test]
    fn counts_batches_and_rejections() {
        let telemetry = Telemetry::new();
        telemetry.consumed(3);
        let rejection = Rejection {
            stage: Stage::Decode,
            reason: "InvalidJson",
            message: "x".into(),
        };
        telemetry.batch_durable(2, [&rejection].into_iter());
        let text = telemetry.render();
        assert!(text.contains("kis_records_consumed_total 3"), "{text}");
        assert!(text.contains("kis_points_written_total 2"), "{text}");
        assert!(
            text.contains(
                "kis_records_dead_lettered_total{stage=\"decode\",reason=\"InvalidJson\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("kis_build_info{version="), "{text}");
    }

    #[test]
    fn readiness_needs_a_join_and_an_accepting_influxdb() {
        let telemetry = Telemetry::new();
        assert!(telemetry.readiness().unwrap_err().contains("not joined"));
        telemetry.set_joined();
        assert!(telemetry.readiness().is_ok());
        telemetry.set_influx_refusal(Some("HTTP 401 Unauthorized".into()));
        assert!(telemetry.readiness().unwrap_err().contains("401"));
        telemetry.set_influx_refusal(None);
        assert!(telemetry.readiness().is_ok());
        telemetry.set_registry_refusal(Some("HTTP 403 Forbidden".into()));
        assert!(
            telemetry
                .readiness()
                .unwrap_err()
                .contains("Schema Registry")
        );
        telemetry.set_registry_refusal(None);
        assert!(telemetry.readiness().is_ok());
    }
}
