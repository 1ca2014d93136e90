//! The little of a Confluent Schema Registry client the simulator needs: register the value
//! schema under `<topic>-value`, as Confluent's serializers do with `auto.register.schemas`, and
//! check that a schema id is unknown, for records framed with an unregistered id on purpose.
//!
//! Credentials come from `--registry-basic-auth user:password` or from the URL's user info
//! (`https://user:password@host`, as Confluent's clients accept). They are taken out of the URL
//! at once, so every URL this module keeps, logs or puts in an error is free of them.
//!
//! Why not the sink's [`crate::registry`] client: that one only reads schemas and waits out a
//! registry outage for as long as it lasts, as the pipeline must. The simulator writes a schema
//! once, at start-up, and should give up with a clear error after a few attempts.
//!
//! # Retry policy
//! | outcome | what the client does |
//! |---|---|
//! | 2xx | done |
//! | 404 when looking an id up | the id is not registered (an answer, not an error) |
//! | 408, 429, 5xx | retried with exponential backoff, up to [`MAX_ATTEMPTS`] attempts |
//! | connection refused or reset, timeout | retried the same way |
//! | 401, 403, 404, 409, 422, other 4xx | fails at once with the registry's `error_code` and message, and a hint |

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reject::truncate_message;

mod settings;

pub use settings::{BasicAuth, RegistrySettings};

/// Content type of Schema Registry requests and responses.
const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Attempts per request before a transient failure becomes an error.
pub const MAX_ATTEMPTS: u32 = 6;
/// Backoff after the first failed attempt; doubles after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of schema, as the registry's `schemaType` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    /// JSON Schema (`"schemaType": "JSON"`).
    Json,
    /// Avro: the registry's default, so Confluent's clients leave `schemaType` out.
    Avro,
}

/// Why talking to the registry failed. No variant holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `--registry-url` is not a usable http(s) URL.
    #[error("--registry-url is not a valid http(s) URL: {reason}")]
    InvalidUrl {
        /// What is wrong (never the URL itself: it may hold a password).
        reason: String,
    },
    /// `--registry-basic-auth` is not `user:password`.
    #[error("--registry-basic-auth must be user:password")]
    InvalidBasicAuth,
    /// Credentials both in the URL and in `--registry-basic-auth`.
    #[error(
        "credentials given twice: in --registry-url's user info and in --registry-basic-auth; keep one"
    )]
    ConflictingCredentials,
    /// The HTTP client cannot be built (TLS setup, say).
    #[error("cannot build the Schema Registry HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The registry answered with an error that retrying will not fix.
    #[error(
        "Schema Registry refused to {operation} ({url}): HTTP {status}{}: {message}{}",
        error_code.map(|code| format!(", error_code {code}")).unwrap_or_default(),
        hint(*status)
    )]
    Refused {
        /// What was attempted, e.g. `register subject "t-value"`.
        operation: String,
        /// The request URL (without credentials).
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The registry's `error_code`, when the body had one.
        error_code: Option<i64>,
        /// The registry's `message`, or the start of the body.
        message: String,
    },
    /// Transient failures did not clear within [`MAX_ATTEMPTS`] attempts.
    #[error(
        "Schema Registry unavailable: could not {operation} ({url}) in {attempts} attempts; last failure: {last}"
    )]
    Unavailable {
        /// What was attempted.
        operation: String,
        /// The request URL (without credentials).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A 2xx answer the simulator cannot read.
    #[error("Schema Registry answered {operation} ({url}) with an unexpected body: {detail}")]
    BadResponse {
        /// What was attempted.
        operation: String,
        /// The request URL (without credentials).
        url: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Shutdown was requested while waiting for the registry.
    #[error("interrupted while waiting for the Schema Registry")]
    Cancelled,
}

/// What to check, by status, when the registry refuses.
fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => " (check --registry-basic-auth or the URL's user info)",
        404 => " (is --registry-url the registry's base URL?)",
        409 => " (the schema is incompatible with the subject's earlier versions)",
        422 => " (the registry finds the schema invalid)",
        _ => "",
    }
}

/// Transient statuses: worth another attempt.
fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429) || status.is_server_error()
}

/// `{"error_code": 40401, "message": "..."}`, the body of a registry error.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

fn error_details(body: &str) -> (Option<i64>, String) {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            error_code,
            message: Some(message),
        }) => (error_code, truncate_message(message)),
        Ok(ErrorBody { error_code, .. }) => (error_code, truncate_message(body.to_owned())),
        Err(_) => (None, truncate_message(body.trim().to_owned())),
    }
}

/// A transport failure with its causes (`connection refused`, say), without the URL that
/// `reqwest` would add: the caller names the URL, and only ever the stripped one.
fn describe_transport(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Delay before attempt `attempt + 1`, from `first`, the delay after the first failure.
fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// A Schema Registry client.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    settings: RegistrySettings,
    /// The delay after the first failure ([`FIRST_BACKOFF`]; tests shorten it).
    first_backoff: Duration,
}

impl RegistryClient {
    /// A client for the validated settings.
    pub fn new(settings: RegistrySettings) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT.min(Duration::from_secs(5)))
            .user_agent(concat!("kafka-influx-sink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::Client)?;
        Ok(Self {
            http,
            settings,
            first_backoff: FIRST_BACKOFF,
        })
    }

    /// The settings this client uses.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`) and returns its
    /// id. Registering a schema the subject already has is not an error: the registry answers
    /// with the existing id, so re-running the simulator reuses it.
    pub async fn register(
        &self,
        subject: &str,
        schema: &str,
        schema_type: SchemaType,
        stop: &CancellationToken,
    ) -> Result<u32, RegistryError> {
        let url = self.settings.endpoint(&["subjects", subject, "versions"]);
        let operation = format!("register a schema under subject {subject:?}");
        let body = match schema_type {
            SchemaType::Json => serde_json::json!({"schema": schema, "schemaType": "JSON"}),
            SchemaType::Avro => serde_json::json!({"schema": schema}),
        }
        .to_string();
        let (status, text) = self
            .call(&operation, &url, stop, || {
                self.http
                    .post(url.clone())
                    .header(CONTENT_TYPE, REGISTRY_CONTENT_TYPE)
                    .body(body.clone())
            })
            .await?;
        if !status.is_success() {
            return Err(refused(operation, url, status, &text));
        }
        #[derive(serde::Deserialize)]
        struct Registered {
            id: u32,
        }
        let id = serde_json::from_str::<Registered>(&text)
            .map_err(|error| RegistryError::BadResponse {
                operation,
                url: url.to_string(),
                detail: format!("{error}; body: {}", truncate_message(text.clone())),
            })?
            .id;
        info!(registry = %self.settings.url, subject, schema_id = id, "schema registered");
        Ok(id)
    }

    /// Whether the registry knows schema `id` (`GET /schemas/ids/{id}`: 200 yes, 404 no).
    pub async fn is_registered(
        &self,
        id: u32,
        stop: &CancellationToken,
    ) -> Result<bool, RegistryError> {
        let id_text = id.to_string();
        let url = self.settings.endpoint(&["schemas", "ids", &id_text]);
        let operation = format!("look up schema id {id}");
        let (status, text) = self
            .call(&operation, &url, stop, || self.http.get(url.clone()))
            .await?;
        match status {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(refused(operation, url, status, &text)),
        }
    }

    /// Sends the request built by `request` until the registry gives a non-transient answer,
    /// returning its status and body.
    async fn call(
        &self,
        operation: &str,
        url: &Url,
        stop: &CancellationToken,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = request().header(ACCEPT, REGISTRY_CONTENT_TYPE);
            if let Some(auth) = &self.settings.auth {
                builder = builder.basic_auth(&auth.user, Some(auth.password.expose()));
            }
            let outcome = tokio::select! {
                () = stop.cancelled() => return Err(RegistryError::Cancelled),
                outcome = async {
                    let response = builder.send().await?;
                    let status = response.status();
                    response.text().await.map(|text| (status, text))
                } => outcome,
            };
            let failure = match outcome {
                Ok((status, text)) if !is_transient(status) => return Ok((status, text)),
                Ok((status, text)) => {
                    let (code, message) = error_details(&text);
                    match code {
                        Some(code) => format!("HTTP {status}, error_code {code}: {message}"),
                        None => format!("HTTP {status}: {message}"),
                    }
                }
                // Building the request fails the same way every time: do not retry.
                Err(error) if error.is_builder() => {
                    return Err(RegistryError::Unavailable {
                        operation: operation.to_owned(),
                        url: url.to_string(),
                        attempts: attempt,
                        last: describe_transport(error),
                    });
                }
                Err(error) => describe_transport(error),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(RegistryError::Unavailable {
                    operation: operation.to_owned(),
                    url: url.to_string(),
                    attempts: attempt,
                    last: failure,
                });
            }
            let wait = backoff(self.first_backoff, attempt);
            warn!(%url, attempt, retry_in_ms = wait.as_millis() as u64, failure, "Schema Registry request failed; retrying");
            tokio::select! {
                () = stop.cancelled() => return Err(RegistryError::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn refused(operation: String, url: Url, status: StatusCode, body: &str) -> RegistryError {
    let (error_code, message) = error_details(body);
    RegistryError::Refused {
        operation,
        url: url.to_string(),
        status,
        error_code,
        message,
    }
}

#[cfg(test)]
mod tests;
