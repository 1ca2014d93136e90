//! The Schema Registry client: fetches the schema a record names, with the schemas it
//! references, and compiles it once.
//!
//! It speaks the read-only subset of Confluent's REST API every compatible registry serves:
//! `GET /schemas/ids/{id}`, `GET /schemas/guids/{guid}` and, for references,
//! `GET /subjects/{subject}/versions/{version}`. What an answer means for the records waiting on
//! it:
//!
//! | answer | records |
//! |---|---|
//! | 200 | decoded with the compiled schema, cached for the life of the process |
//! | 404 (schema or a reference) | dead-lettered as `UnknownSchema`; asked again after `not_found_ttl_ms` |
//! | 200 but unusable (Protobuf, does not compile) | dead-lettered as `UnusableSchema` |
//! | 401/403 | wait; the sink is unready with the reason until the credentials work |
//! | 5xx, 429, timeout, refused connection, other 4xx | wait, retried with backoff; never dead-lettered |
//!
//! While a fetch waits, the pipeline stops reading (and pauses its partitions after a second),
//! so a registry outage delays records but never loses or dead-letters them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::decode::{CachedSchema, FetchedSchema, ParsedSchema, RegistrySchema, SchemaKey};
use crate::metrics::Telemetry;
use crate::secret::Secret;
use crate::tls::{self, HttpTls, TransportFailure};
use crate::write::Backoff;

/// Longest chain of references followed, so a reference cycle cannot loop forever.
const MAX_REFERENCE_DEPTH: usize = 32;

/// How the sink authenticates to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    None,
    /// HTTP Basic, from Confluent's `basic.auth.user.info` form `user:password`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// The validated `[schema_registry]` settings.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Base URL (no credentials, no query).
    pub url: Url,
    /// Credentials.
    pub auth: RegistryAuth,
    /// Trusted CAs and the client certificate.
    pub tls: HttpTls,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// How long a 404 is remembered.
    pub not_found_ttl: Duration,
}

/// Why the registry client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client (TLS roots, CA bundle) cannot be set up.
    #[error("cannot set up the Schema Registry HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// One failed attempt to fetch a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The registry has no such schema (or reference): a definitive answer.
    NotFound(String),
    /// The registry refuses our credentials: the operator must act; retried meanwhile.
    Refused(String),
    /// Anything else: retried.
    Transient(String),
}

/// `GET /schemas/ids/{id}`, `/schemas/guids/{guid}` and `/subjects/{s}/versions/{v}` bodies.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaResponse {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<ReferenceResponse>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct ReferenceResponse {
    name: String,
    subject: String,
    version: i64,
}

/// Fetches schemas from the registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    settings: RegistrySettings,
    telemetry: Arc<Telemetry>,
}

impl RegistryClient {
    /// A client for `settings`.
    pub fn new(
        settings: RegistrySettings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("kafka-influx-sink/", env!("CARGO_PKG_VERSION")));
        builder = settings.tls.apply(builder).map_err(RegistryError::Client)?;
        let http = builder.build().map_err(RegistryError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                settings,
                telemetry,
            }),
        })
    }

    /// The registry's base URL (credentials are never part of it).
    pub fn endpoint(&self) -> &Url {
        &self.inner.settings.url
    }

    /// Fetches and compiles the schema `key` names, retrying failures that are not an answer
    /// about the schema itself until there is one, or `None` once `stop` fires.
    pub async fn resolve(
        &self,
        key: SchemaKey,
        reader: Option<ParsedSchema>,
        stop: &CancellationToken,
    ) -> Option<CachedSchema> {
        let inner = &self.inner;
        let mut attempt: u32 = 0;
        let mut last_failure: Option<Failure> = None;
        let waiting_since = Instant::now();
        loop {
            let fetched = tokio::select! {
                () = stop.cancelled() => return None,
                fetched = self.fetch(key) => fetched,
            };
            let failure = match fetched {
                Ok(fetched) => {
                    inner.telemetry.registry_request("ok");
                    self.recovered(&last_failure, key, waiting_since);
                    return Some(match RegistrySchema::compile(&fetched, reader) {
                        Ok(schema) => CachedSchema::Ready(schema),
                        Err(message) => {
                            warn!(%key, reason = message, "the Schema Registry's schema cannot be used; records naming it are dead-lettered");
                            CachedSchema::Unusable(message)
                        }
                    });
                }
                Err(Failure::NotFound(message)) => {
                    inner.telemetry.registry_request("not_found");
                    self.recovered(&last_failure, key, waiting_since);
                    warn!(%key, message, "the Schema Registry does not know this schema; records naming it are dead-lettered as UnknownSchema");
                    return Some(CachedSchema::NotFound {
                        ask_again_at: Instant::now() + inner.settings.not_found_ttl,
                    });
                }
                Err(failure) => failure,
            };
            attempt = attempt.saturating_add(1);
            match &failure {
                Failure::Refused(message) => {
                    inner.telemetry.registry_request("refused");
                    inner.telemetry.set_registry_refusal(Some(message.clone()));
                }
                Failure::Transient(_) | Failure::NotFound(_) => {
                    inner.telemetry.registry_request("error");
                }
            }
            // One line per change of trouble, not one per retry.
            if last_failure.as_ref() != Some(&failure) {
                let (Failure::Refused(message)
                | Failure::Transient(message)
                | Failure::NotFound(message)) = &failure;
                warn!(
                    %key,
                    registry = %inner.settings.url,
                    error = message,
                    "cannot fetch the schema from the Schema Registry; records naming it wait (nothing is dead-lettered) and reading is paused until it answers"
                );
                last_failure = Some(failure);
            }
            let delay = inner.settings.backoff.delay(attempt);
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn recovered(&self, last_failure: &Option<Failure>, key: SchemaKey, since: Instant) {
        if let Some(failure) = last_failure {
            if matches!(failure, Failure::Refused(_)) {
                self.inner.telemetry.set_registry_refusal(None);
            }
            info!(%key, waited_ms = since.elapsed().as_millis() as u64, "the Schema Registry answers again");
        }
    }

    /// One attempt: the schema and, depth first, every schema it references.
    async fn fetch(&self, key: SchemaKey) -> Result<FetchedSchema, Failure> {
        let path = match key {
            SchemaKey::Id(id) => vec!["schemas".to_owned(), "ids".to_owned(), id.to_string()],
            SchemaKey::Guid(guid) => {
                vec!["schemas".to_owned(), "guids".to_owned(), guid.to_string()]
            }
        };
        let root = self.get(&path).await?;
        let mut references = Vec::new();
        let mut seen = Vec::new();
        let mut pending: Vec<(ReferenceResponse, usize)> = root
            .references
            .iter()
            .rev()
            .map(|r| (r.clone(), 1))
            .collect();
        while let Some((reference, depth)) = pending.pop() {
            if depth > MAX_REFERENCE_DEPTH {
                return Err(Failure::NotFound(format!(
                    "references nest deeper than {MAX_REFERENCE_DEPTH} levels (a cycle?)"
                )));
            }
            let id = (reference.subject.clone(), reference.version);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let version = if reference.version < 0 {
                "latest".to_owned()
            } else {
                reference.version.to_string()
            };
            let response = self
                .get(&[
                    "subjects".to_owned(),
                    reference.subject.clone(),
                    "versions".to_owned(),
                    version,
                ])
                .await?;
            pending.extend(
                response
                    .references
                    .iter()
                    .rev()
                    .map(|nested| (nested.clone(), depth + 1)),
            );
            references.push((reference.name, response.schema));
        }
        // Named types must be known before the schemas that use them.
        references.reverse();
        Ok(FetchedSchema {
            schema_type: root.schema_type,
            schema: root.schema,
            references,
        })
    }

    async fn get(&self, segments: &[String]) -> Result<SchemaResponse, Failure> {
        let inner = &self.inner;
        let mut url = inner.settings.url.clone();
        {
            let Ok(mut path) = url.path_segments_mut() else {
                return Err(Failure::Transient(
                    "the registry URL cannot take a path".into(),
                ));
            };
            path.pop_if_empty();
            for segment in segments {
                path.push(segment);
            }
        }
        let mut request = inner.http.get(url.clone()).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        request = match &inner.settings.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            RegistryAuth::Bearer(token) => request.bearer_auth(token.expose()),
        };
        let response = request.send().await.map_err(|error| {
            let failure = TransportFailure::of(&error);
            let message = format!("GET {}: {}", url.path(), failure.detail);
            match failure.tls {
                Some(trouble) => Failure::Refused(format!(
                    "{message} (TLS: {})",
                    trouble.advice("schema_registry")
                )),
                None => Failure::Transient(message),
            }
        })?;
        let status = response.status();
        if status.is_success() {
            let body = response.bytes().await.map_err(|error| {
                Failure::Transient(format!("GET {}: {}", url.path(), tls::describe(&error)))
            })?;
            return serde_json::from_slice::<SchemaResponse>(&body).map_err(|error| {
                Failure::Transient(format!(
                    "GET {}: unexpected response body: {error}",
                    url.path()
                ))
            });
        }
        let body = response.text().await.unwrap_or_default();
        let detail = format!(
            "GET {} answered HTTP {}: {}",
            url.path(),
            status,
            body.chars().take(300).collect::<String>()
        );
        Err(match status {
            StatusCode::NOT_FOUND => Failure::NotFound(detail),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Refused(detail),
            _ => Failure::Transient(detail),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    use super::*;

    const AVRO_WITH_REFERENCE: &str = r#"{"type": "record", "name": "G", "fields": [
        {"name": "id", "type": "string"}, {"name": "at", "type": "geo.Location"}]}"#;
    const LOCATION: &str = r#"{"type": "record", "name": "Location", "namespace": "geo",
        "fields": [{"name": "lat", "type": "double"}]}"#;

    #[derive(Clone, Default)]
    struct Stand {
        requests: Arc<AtomicUsize>,
        /// Requests answered 503 before the registry "comes back".
        unavailable_for: Arc<AtomicUsize>,
    }

    async fn by_id(
        State(stand): State<Stand>,
        Path(id): Path<u32>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        stand.requests.fetch_add(1, Ordering::SeqCst);
        if stand
            .unavailable_for
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
        }
        // "sink:pw" in base64.
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic c2luazpwdw==")
        {
            return (StatusCode::UNAUTHORIZED, r#"{"error_code": 401}"#.into());
        }
        let body = match id {
            1 => serde_json::json!({"schema": "{\"type\": \"object\"}", "schemaType": "JSON"}),
            2 => serde_json::json!({"schema": AVRO_WITH_REFERENCE, "references": [
                {"name": "geo.Location", "subject": "location-value", "version": 1}]}),
            3 => serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    r#"{"error_code": 40403, "message": "Schema not found"}"#.into(),
                );
            }
        };
        (StatusCode::OK, body.to_string())
    }

    async fn subject_version(
        Path((subject, version)): Path<(String, String)>,
    ) -> (StatusCode, String) {
        if subject == "location-value" && version == "1" {
            (
                StatusCode::OK,
                serde_json::json!({"schema": LOCATION}).to_string(),
            )
        } else {
            (StatusCode::NOT_FOUND, "{}".into())
        }
    }

    async fn start(stand: Stand) -> Url {
        let app = Router::new()
            .route("/schemas/ids/{id}", get(by_id))
            .route(
                "/subjects/{subject}/versions/{version}",
                get(subject_version),
            )
            .with_state(stand);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{address}/")).unwrap()
    }

    fn client(url: Url, password: &str, telemetry: Arc<Telemetry>) -> RegistryClient {
        RegistryClient::new(
            RegistrySettings {
                url,
                auth: RegistryAuth::Basic {
                    username: "sink".into(),
                    password: Secret::new(password),
                },
                tls: HttpTls::default(),
                timeout: Duration::from_secs(5),
                backoff: Backoff {
                    initial: Duration::from_millis(5),
                    max: Duration::from_millis(20),
                },
                not_found_ttl: Duration::from_secs(60),
            },
            telemetry,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fetches_json_and_avro_with_references() {
        let stand = Stand::default();
        let client = client(start(stand.clone()).await, "pw", Arc::new(Telemetry::new()));
        let stop = CancellationToken::new();
        let json = client.resolve(SchemaKey::Id(1), None, &stop).await;
        assert!(
            matches!(json, Some(CachedSchema::Ready(RegistrySchema::Json(..)))),
            "{json:?}"
        );
        let avro = client.resolve(SchemaKey::Id(2), None, &stop).await;
        assert!(
            matches!(avro, Some(CachedSchema::Ready(RegistrySchema::Avro(_)))),
            "{avro:?}"
        );
        let protobuf = client.resolve(SchemaKey::Id(3), None, &stop).await;
        assert!(
            matches!(&protobuf, Some(CachedSchema::Unusable(message)) if message.contains("PROTOBUF")),
            "{protobuf:?}"
        );
        let unknown = client.resolve(SchemaKey::Id(99), None, &stop).await;
        assert!(
            matches!(unknown, Some(CachedSchema::NotFound { .. })),
            "{unknown:?}"
        );
        assert_eq!(stand.requests.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_unavailable_registry_is_retried_until_it_answers() {
        let stand = Stand::default();
        stand.unavailable_for.store(3, Ordering::SeqCst);
        let telemetry = Arc::new(Telemetry::new());
        let client = client(start(stand.clone()).await, "pw", telemetry.clone());
        let resolved = client
            .resolve(SchemaKey::Id(1), None, &CancellationToken::new())
            .await;
        assert!(matches!(resolved, Some(CachedSchema::Ready(_))));
        assert_eq!(stand.requests.load(Ordering::SeqCst), 4);
        let metrics = telemetry.render();
        assert!(
            metrics.contains("kis_schema_registry_requests_total{outcome=\"error\"} 3"),
            "{metrics}"
        );
        assert!(
            metrics.contains("kis_schema_registry_requests_total{outcome=\"ok\"} 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn refused_credentials_make_the_sink_unready_and_keep_waiting() {
        let telemetry = Arc::new(Telemetry::new());
        telemetry.set_joined();
        let client = client(start(Stand::default()).await, "wrong", telemetry.clone());
        let stop = CancellationToken::new();
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { client.resolve(SchemaKey::Id(1), None, &stop).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let why = telemetry.readiness().unwrap_err();
        assert!(
            why.contains("Schema Registry") && why.contains("401"),
            "{why}"
        );
        assert!(!why.contains("wrong"), "{why}");
        stop.cancel();
        assert!(waiting.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_waited_for_not_dead_lettered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let client = client(url, "pw", Arc::new(Telemetry::new()));
        let outcome = tokio::time::timeout(
            Duration::from_millis(300),
            client.resolve(SchemaKey::Id(1), None, &CancellationToken::new()),
        )
        .await;
        assert!(outcome.is_err(), "still waiting, not answered: {outcome:?}");
    }
}
