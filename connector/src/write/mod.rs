//! Write: line protocol batches go to InfluxDB over HTTP until every line is either durable or
//! refused by InfluxDB itself.
//!
//! [`policy`] turns each HTTP response into a decision (the table is in its docs and in the
//! README); [`isolate`] finds the lines InfluxDB refuses so that they can be dead-lettered while
//! the rest is written. Transient failures and configuration problems are retried with
//! exponential backoff and jitter (honouring `Retry-After`) until they clear or the sink stops.
//! Nothing here ever gives up on a line by dropping it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::metrics::{Telemetry, WriteResponse};
use crate::secret::Secret;
use crate::tls::{HttpTls, TransportFailure};

mod gzip;
pub mod isolate;
pub mod policy;

pub use gzip::{GzipError, gzip};
pub use isolate::{RejectedLine, Verdict};
pub use policy::{Disposition, classify};

/// Which write API to use, with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfluxApi {
    /// `POST /write?db=…&rp=…` (InfluxDB 1.x, including 1.6/1.7).
    V1 {
        /// Database.
        database: String,
        /// Retention policy; the database default when `None`.
        retention_policy: Option<String>,
    },
    /// `POST /api/v2/write?org=…&bucket=…` (InfluxDB 1.8+, 2.x, 3.x, Cloud).
    V2 {
        /// Organisation.
        org: String,
        /// Bucket.
        bucket: String,
    },
    /// `POST /api/v3/write_lp?db=…` (InfluxDB 3).
    V3 {
        /// Database.
        database: String,
    },
}

/// Credentials sent with every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfluxAuth {
    /// No authentication.
    None,
    /// v1: HTTP Basic with user name and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// v2: `Authorization: Token …`.
    Token(Secret),
    /// v3: `Authorization: Bearer …`.
    Bearer(Secret),
}

/// Retry delays: exponential from `initial`, capped at `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial · 2^(attempt-1)` capped at
    /// `max`, then scaled by a random factor in [0.5, 1) so that replicas do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
        let capped = exponential.min(self.max);
        capped.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// The validated `[influxdb]` settings.
#[derive(Debug, Clone)]
pub struct InfluxSettings {
    /// Base URL (no credentials, no query).
    pub url: Url,
    /// API and target.
    pub api: InfluxApi,
    /// Credentials.
    pub auth: InfluxAuth,
    /// gzip request bodies.
    pub gzip: bool,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// Batches written at once.
    pub write_concurrency: usize,
    /// Give up on a write failing for this long (stop and stay unready); `None`: never.
    pub give_up_after: Option<Duration>,
    /// Trusted CAs, client certificate, and the explicit opt-out of verification.
    pub tls: HttpTls,
}

/// Why a write stopped without succeeding.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The sink is stopping; the batch is not durable and its offsets must not be committed.
    #[error("write abandoned because the sink is stopping")]
    Cancelled,
    /// The HTTP client cannot be built (bad TLS setup, say).
    #[error("cannot build the InfluxDB HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request body could not be compressed.
    #[error("cannot gzip the request body: {0}")]
    Compress(#[source] GzipError),
}

/// One batch's requests, all bound to the same stop token.
struct Attempts<'a> {
    writer: &'a InfluxWriter,
    stop: &'a CancellationToken,
}

impl isolate::Sender for Attempts<'_> {
    async fn send(&self, body: &[u8]) -> Result<Verdict, WriteError> {
        self.writer.send(body, self.stop).await
    }
}

/// Writes line protocol to InfluxDB.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    client: reqwest::Client,
    endpoint: Url,
    auth: InfluxAuth,
    gzip: bool,
    backoff: Backoff,
    give_up_after: Option<Duration>,
    /// Whether the previous write needed retries, so recovery is logged once.
    failing: Arc<AtomicBool>,
    /// Set once `give_up_after` passed: the sink stays unready whatever later writes do.
    gave_up: Arc<AtomicBool>,
    /// One permit per request InfluxDB may be working on (`write_concurrency`). A batch is
    /// compressed before it waits for one, so a request that ends is followed by the next at
    /// once, not after the next body's gzip.
    requests: Arc<tokio::sync::Semaphore>,
    telemetry: Arc<Telemetry>,
}

impl InfluxWriter {
    /// A writer for the configured endpoint.
    pub fn new(settings: &InfluxSettings, telemetry: Arc<Telemetry>) -> Result<Self, WriteError> {
        let builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("kafka-influx-sink/", env!("CARGO_PKG_VERSION")));
        let client = settings
            .tls
            .apply(builder)
            .and_then(reqwest::ClientBuilder::build)
            .map_err(WriteError::Client)?;
        Ok(Self {
            client,
            endpoint: endpoint(&settings.url, &settings.api),
            auth: settings.auth.clone(),
            gzip: settings.gzip,
            backoff: settings.backoff,
            give_up_after: settings.give_up_after,
            failing: Default::default(),
            gave_up: Default::default(),
            requests: Arc::new(tokio::sync::Semaphore::new(
                settings.write_concurrency.max(1),
            )),
            telemetry,
        })
    }

    /// Whether a write gave up (`give_up_after_ms`): nothing in flight will finish on its own.
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// The write URL (contains no secret: credentials travel in headers).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Writes a batch: `lines` is newline-terminated line protocol whose line `i` ends at byte
    /// `line_ends[i]`. Returns the lines InfluxDB refused for good (to be dead-lettered); every
    /// other line is acknowledged. Transient failures and configuration problems are retried
    /// until they clear or `stop` is cancelled.
    pub async fn write(
        &self,
        lines: &[u8],
        line_ends: &[usize],
        stop: &CancellationToken,
    ) -> Result<Vec<RejectedLine>, WriteError> {
        let rejected =
            isolate::write_isolating(&Attempts { writer: self, stop }, lines, line_ends).await?;
        if !rejected.is_empty() {
            warn!(
                endpoint = %self.endpoint,
                rejected = rejected.len(),
                lines = line_ends.len(),
                first_error = rejected[0].message,
                "InfluxDB rejected some lines; they go to the dead-letter topic and the rest is written"
            );
        }
        Ok(rejected)
    }

    /// Sends one request until InfluxDB gives an answer about its lines (2xx, 400/422, 413).
    async fn send(&self, lines: &[u8], stop: &CancellationToken) -> Result<Verdict, WriteError> {
        let body = if self.gzip {
            gzip(lines).map_err(WriteError::Compress)?
        } else {
            lines.to_vec()
        };
        // `Bytes` clones share one buffer, so retries do not copy the body.
        let body = bytes::Bytes::from(body);
        // Held through the retries too: a batch waiting to be retried keeps its slot, so a
        // struggling InfluxDB never sees more than `write_concurrency` requests at once.
        let _slot = tokio::select! {
            () = stop.cancelled() => return Err(WriteError::Cancelled),
            permit = self.requests.acquire() => permit.map_err(|_| WriteError::Cancelled)?,
        };
        let mut attempt = 0u32;
        let started = std::time::Instant::now();
        loop {
            attempt += 1;
            if attempt > 1 {
                self.give_up_if_due(started, stop).await?;
            }
            let verdict = match self.attempt(body.clone()).await {
                Disposition::Written => Verdict::Written,
                Disposition::Rejected { message, lines } => Verdict::Rejected { message, lines },
                Disposition::TooLarge { message } => Verdict::TooLarge { message },
                Disposition::Retry { cause, after } => {
                    let wait = after.unwrap_or_else(|| self.backoff.delay(attempt));
                    self.report_failure(
                        attempt,
                        cause,
                        &format!("transient failure ({cause})"),
                        wait,
                        false,
                    );
                    self.pause(wait, stop).await?;
                    continue;
                }
                Disposition::Unreachable(TransportFailure {
                    cause,
                    detail,
                    tls: Some(trouble),
                }) => {
                    let message = format!("TLS: {detail}; {}", trouble.advice("influxdb"));
                    self.telemetry.set_influx_refusal(Some(message.clone()));
                    let wait = self.backoff.delay(attempt);
                    self.report_failure(attempt, cause, &message, wait, true);
                    self.pause(wait, stop).await?;
                    continue;
                }
                Disposition::Unreachable(failure) => {
                    let wait = self.backoff.delay(attempt);
                    let message = format!("{} failed: {}", failure.cause, failure.detail);
                    self.report_failure(attempt, failure.cause, &message, wait, false);
                    self.pause(wait, stop).await?;
                    continue;
                }
                Disposition::Misconfigured { message } => {
                    self.telemetry.set_influx_refusal(Some(message.clone()));
                    let wait = self.backoff.delay(attempt);
                    self.report_failure(attempt, "refused", &message, wait, true);
                    self.pause(wait, stop).await?;
                    continue;
                }
            };
            // InfluxDB answered about the lines themselves: it is reachable and accepts us.
            if self.failing.swap(false, Ordering::Relaxed) && !self.gave_up.load(Ordering::Relaxed)
            {
                self.telemetry.write_recovered();
                self.telemetry.set_influx_refusal(None);
                info!(endpoint = %self.endpoint, attempts = attempt, "InfluxDB accepts writes again");
            }
            return Ok(verdict);
        }
    }

    /// With `give_up_after_ms` set and passed: stop retrying and stay unready until the sink
    /// stops. Nothing is skipped: the batch stays uncommitted and is re-read after a restart.
    async fn give_up_if_due(
        &self,
        started: std::time::Instant,
        stop: &CancellationToken,
    ) -> Result<(), WriteError> {
        let Some(limit) = self.give_up_after else {
            return Ok(());
        };
        if started.elapsed() < limit {
            return Ok(());
        }
        let reason = format!(
            "gave up after {} s of failed writes (influxdb.give_up_after_ms); restart the sink once InfluxDB is fixed",
            limit.as_secs()
        );
        if !self.gave_up.swap(true, Ordering::Relaxed) {
            error!(endpoint = %self.endpoint, "{reason}; consuming has stopped and nothing more is committed");
        }
        self.telemetry.set_influx_refusal(Some(reason));
        stop.cancelled().await;
        Err(WriteError::Cancelled)
    }

    async fn pause(&self, wait: Duration, stop: &CancellationToken) -> Result<(), WriteError> {
        tokio::select! {
            () = stop.cancelled() => Err(WriteError::Cancelled),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// Logs the first failure of an outage loudly and the rest quietly: one line per state change.
    fn report_failure(
        &self,
        attempt: u32,
        cause: &'static str,
        what: &str,
        wait: Duration,
        needs_action: bool,
    ) {
        self.telemetry.write_retried(cause, what);
        let first = !self.failing.swap(true, Ordering::Relaxed);
        if first && needs_action {
            error!(endpoint = %self.endpoint, error = what, "InfluxDB refuses writes; nothing is committed and the batch is retried until this is fixed");
        } else if first {
            warn!(endpoint = %self.endpoint, error = what, retry_in_ms = wait.as_millis() as u64, "InfluxDB write failed; retrying without committing");
        } else {
            debug!(endpoint = %self.endpoint, error = what, attempt, retry_in_ms = wait.as_millis() as u64, "InfluxDB write retry");
        }
    }

    async fn attempt(&self, body: bytes::Bytes) -> Disposition {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        request = match &self.auth {
            InfluxAuth::None => request,
            InfluxAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            InfluxAuth::Token(token) => {
                request.header(AUTHORIZATION, format!("Token {}", token.expose()))
            }
            InfluxAuth::Bearer(token) => {
                request.header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            }
        };
        let started = std::time::Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                self.telemetry
                    .write_attempted(started.elapsed(), WriteResponse::Status(status.as_u16()));
                let headers = response.headers().clone();
                let body = if status.is_success() {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                classify(status, &headers, &body, SystemTime::now())
            }
            Err(error) => {
                let failure = TransportFailure::of(&error);
                let outcome = if failure.cause == "transport" {
                    "other"
                } else {
                    failure.cause
                };
                self.telemetry
                    .write_attempted(started.elapsed(), WriteResponse::Failed(outcome));
                Disposition::Unreachable(failure)
            }
        }
    }
}

/// The full write URL for `api` under `base` (which may carry a path prefix, e.g. behind a proxy).
pub fn endpoint(base: &Url, api: &InfluxApi) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let (path, query): (&str, Vec<(&str, &str)>) = match api {
        InfluxApi::V1 {
            database,
            retention_policy,
        } => {
            let mut query = vec![("db", database.as_str()), ("precision", "ns")];
            if let Some(rp) = retention_policy {
                query.push(("rp", rp.as_str()));
            }
            ("/write", query)
        }
        InfluxApi::V2 { org, bucket } => (
            "/api/v2/write",
            vec![
                ("org", org.as_str()),
                ("bucket", bucket.as_str()),
                ("precision", "ns"),
            ],
        ),
        InfluxApi::V3 { database } => (
            "/api/v3/write_lp",
            vec![("db", database.as_str()), ("precision", "nanosecond")],
        ),
    };
    url.set_path(&format!("{prefix}{path}"));
    url.query_pairs_mut().clear().extend_pairs(query);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for attempt in 1..40 {
            let delay = backoff.delay(attempt);
            let nominal = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(backoff.max);
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn endpoints_per_api() {
        let base = Url::parse("http://influx:8086").unwrap();
        let v1 = InfluxApi::V1 {
            database: "gen db".into(),
            retention_policy: Some("autogen".into()),
        };
        assert_eq!(
            endpoint(&base, &v1).as_str(),
            "http://influx:8086/write?db=gen+db&precision=ns&rp=autogen"
        );
        let v2 = InfluxApi::V2 {
            org: "acme".into(),
            bucket: "gen&x".into(),
        };
        assert_eq!(
            endpoint(&base, &v2).as_str(),
            "http://influx:8086/api/v2/write?org=acme&bucket=gen%26x&precision=ns"
        );
        let prefixed = Url::parse("https://proxy/influx/").unwrap();
        let v3 = InfluxApi::V3 {
            database: "gen".into(),
        };
        assert_eq!(
            endpoint(&prefixed, &v3).as_str(),
            "https://proxy/influx/api/v3/write_lp?db=gen&precision=nanosecond"
        );
    }

    /// An InfluxDB stand-in that answers every write after `delay`, counting how many requests
    /// it holds at once.
    async fn slow_influx(delay: Duration) -> (Url, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::AtomicUsize;
        let active = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let state = (active, most.clone());
        let app = axum::Router::new()
            .route(
                "/write",
                axum::routing::post(
                    move |axum::extract::State((active, most)): axum::extract::State<(
                        Arc<AtomicUsize>,
                        Arc<AtomicUsize>,
                    )>| async move {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        active.fetch_sub(1, Ordering::SeqCst);
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Url::parse(&format!("http://{address}")).unwrap(), most)
    }

    fn writer_for(url: &Url, extra: &str) -> InfluxWriter {
        let text = format!(
            "[kafka]\nbrokers = [\"localhost:9092\"]\ngroup_id = \"g\"\ntopics = [\"t\"]\n\
             [influxdb]\napi = \"v1\"\nurl = \"{url}\"\ndatabase = \"d\"\n{extra}\n"
        );
        let config = crate::config::Config::parse(
            &text,
            std::path::Path::new("test.toml"),
            std::path::Path::new("."),
            std::iter::empty(),
        )
        .unwrap();
        InfluxWriter::new(&config.influxdb, Arc::new(Telemetry::new())).unwrap()
    }

    #[tokio::test]
    async fn influxdb_never_holds_more_than_write_concurrency_requests() {
        let (url, most) = slow_influx(Duration::from_millis(150)).await;
        let writer = writer_for(&url, "write_concurrency = 2");
        let stop = CancellationToken::new();
        let lines = b"generator,generatorID=g fuel=1 1\n".to_vec();
        let ends = [lines.len()];
        let write = || writer.write(&lines, &ends, &stop);
        // More batches at once than requests allowed, as the pipeline's batch waiting for a slot.
        let results = tokio::join!(write(), write(), write(), write(), write());
        let results = [results.0, results.1, results.2, results.3, results.4];
        assert!(
            results
                .iter()
                .all(|result| matches!(result, Ok(rejected) if rejected.is_empty()))
        );
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_waiting_for_a_request_slot_ends_when_the_sink_stops() {
        let (url, _) = slow_influx(Duration::from_secs(30)).await;
        let writer = writer_for(&url, "write_concurrency = 1\ntimeout_ms = 500");
        let stop = CancellationToken::new();
        let lines = b"generator,generatorID=g fuel=1 1\n".to_vec();
        let ends = [lines.len()];
        let first = writer.write(&lines, &ends, &stop);
        let waiting = writer.write(&lines, &ends, &stop);
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        };
        let (first, waiting, ()) = tokio::join!(first, waiting, cancel);
        assert!(matches!(waiting, Err(WriteError::Cancelled)), "{waiting:?}");
        assert!(first.is_err(), "{first:?}");
    }
}
