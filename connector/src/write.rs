//! Write: line protocol batches go to InfluxDB over HTTP, retried until they are durable.
//!
//! The response policy is a table over HTTP status codes ([`classify`]), mirrored in the
//! README. A batch is only reported written after a 2xx; every other outcome is retried with
//! exponential backoff and jitter (honouring `Retry-After`) until it succeeds or the sink is
//! stopped. Nothing here ever gives up on a batch by dropping it.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::metrics::Telemetry;
use crate::secret::Secret;

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
}

/// What to do after one write attempt, decided from the HTTP response alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: the points are durable.
    Written,
    /// Transient: 5xx, 429, timeouts, connection errors. Retry, after `after` when the server said.
    Retry {
        /// Why.
        cause: &'static str,
        /// The server's `Retry-After`, when it gave one.
        after: Option<Duration>,
    },
    /// 400/422: InfluxDB refused some or all lines. Retried until the full error policy
    /// (isolating the rejected records) is in place; never skipped.
    Refused {
        /// InfluxDB's error message.
        message: String,
    },
    /// 401/403/404/413 and other 4xx: the sink's configuration or InfluxDB's setup is wrong
    /// (token, database, bucket, size limit). Retried so the sink resumes once it is fixed.
    Misconfigured {
        /// What InfluxDB said.
        message: String,
    },
}

/// Longest `Retry-After` honoured; a server asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The response policy table.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> Disposition {
    let message = || format!("HTTP {status}: {}", error_message(body));
    match status.as_u16() {
        200..=299 => Disposition::Written,
        429 | 503 => Disposition::Retry {
            cause: if status == StatusCode::TOO_MANY_REQUESTS {
                "throttled"
            } else {
                "unavailable"
            },
            after: retry_after(headers, now),
        },
        500..=599 => Disposition::Retry {
            cause: "server_error",
            after: None,
        },
        400 | 422 => Disposition::Refused { message: message() },
        _ => Disposition::Misconfigured { message: message() },
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Pulls the human message out of an InfluxDB error body (`{"error": …}` in v1,
/// `{"message": …}` in v2/v3), falling back to the raw body.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|json| {
        json.get("error")
            .or_else(|| json.get("message"))
            .and_then(|message| message.as_str())
    });
    let text = message.unwrap_or(body).trim();
    crate::reject::truncate_message(if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_owned()
    })
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
    Compress(#[source] std::io::Error),
}

/// The result of a successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
}

/// Writes line protocol to InfluxDB.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    client: reqwest::Client,
    endpoint: Url,
    auth: InfluxAuth,
    gzip: bool,
    backoff: Backoff,
    /// Whether the previous write needed retries, so recovery is logged once.
    failing: Arc<AtomicBool>,
    telemetry: Arc<Telemetry>,
}

impl InfluxWriter {
    /// A writer for the configured endpoint.
    pub fn new(settings: &InfluxSettings, telemetry: Arc<Telemetry>) -> Result<Self, WriteError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("kafka-influx-sink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WriteError::Client)?;
        Ok(Self {
            client,
            endpoint: endpoint(&settings.url, &settings.api),
            auth: settings.auth.clone(),
            gzip: settings.gzip,
            backoff: settings.backoff,
            failing: Default::default(),
            telemetry,
        })
    }

    /// The write URL (contains no secret: credentials travel in headers).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Writes `lines` (newline-terminated line protocol), retrying until InfluxDB acknowledges
    /// them or `stop` is cancelled.
    pub async fn write(
        &self,
        lines: &[u8],
        stop: &CancellationToken,
    ) -> Result<WriteReport, WriteError> {
        let body = if self.gzip {
            gzip(lines).map_err(WriteError::Compress)?
        } else {
            lines.to_vec()
        };
        // `Bytes` clones share one buffer, so retries do not copy the batch.
        let body = bytes::Bytes::from(body);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let disposition = self.attempt(body.clone()).await;
            let wait = match disposition {
                Disposition::Written => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        self.telemetry.set_influx_refusal(None);
                        info!(endpoint = %self.endpoint, attempts = attempt, "InfluxDB writes succeed again");
                    }
                    return Ok(WriteReport { attempts: attempt });
                }
                Disposition::Retry { cause, after } => {
                    let wait = after.unwrap_or_else(|| self.backoff.delay(attempt));
                    self.report_failure(
                        attempt,
                        &format!("transient failure ({cause})"),
                        wait,
                        false,
                    );
                    wait
                }
                Disposition::Refused { message } | Disposition::Misconfigured { message } => {
                    self.telemetry.set_influx_refusal(Some(message.clone()));
                    let wait = self.backoff.delay(attempt);
                    self.report_failure(attempt, &message, wait, true);
                    wait
                }
            };
            tokio::select! {
                () = stop.cancelled() => return Err(WriteError::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Logs the first failure of an outage loudly and the rest quietly: one line per state change.
    fn report_failure(&self, attempt: u32, what: &str, wait: Duration, needs_action: bool) {
        self.telemetry.write_retried();
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
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let body = if status.is_success() {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                classify(status, &headers, &body, SystemTime::now())
            }
            Err(error) => Disposition::Retry {
                cause: if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "transport"
                },
                after: None,
            },
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

/// gzip at the fastest level: line protocol compresses well even there, and the sink's CPU
/// is better spent decoding.
fn gzip(lines: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(lines.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(lines)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn response_policy_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases: Vec<(u16, Option<&str>, &str, Disposition)> = vec![
            (204, None, "", Disposition::Written),
            (200, None, "", Disposition::Written),
            (
                429,
                Some("7"),
                "",
                Disposition::Retry {
                    cause: "throttled",
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                503,
                None,
                "",
                Disposition::Retry {
                    cause: "unavailable",
                    after: None,
                },
            ),
            (
                503,
                Some("Tue, 14 Nov 2023 22:13:30 GMT"),
                "",
                Disposition::Retry {
                    cause: "unavailable",
                    after: Some(Duration::from_secs(10)),
                },
            ),
            (
                500,
                None,
                "",
                Disposition::Retry {
                    cause: "server_error",
                    after: None,
                },
            ),
            (
                400,
                None,
                r#"{"error":"partial write: field type conflict"}"#,
                Disposition::Refused {
                    message: "HTTP 400 Bad Request: partial write: field type conflict".into(),
                },
            ),
            (
                401,
                None,
                r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                Disposition::Misconfigured {
                    message: "HTTP 401 Unauthorized: unauthorized access".into(),
                },
            ),
            (
                404,
                None,
                r#"{"error":"database not found: \"x\""}"#,
                Disposition::Misconfigured {
                    message: "HTTP 404 Not Found: database not found: \"x\"".into(),
                },
            ),
        ];
        for (status, retry, body, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify(status, &headers(retry), body, now),
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_and_past_dates_mean_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(Some("999999")), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(Some("Thu, 01 Jan 1970 00:00:00 GMT")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(Some("soon")), now), None);
        assert_eq!(retry_after(&headers(None), now), None);
    }

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

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let lines = b"generator,generatorID=g fuel=1 1\n".repeat(100);
        let compressed = gzip(&lines).unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, lines);
        assert!(compressed.len() < lines.len() / 5);
    }
}
