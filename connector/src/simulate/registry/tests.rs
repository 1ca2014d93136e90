//! The client against a scripted registry on `127.0.0.1:0`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};

use super::*;
use crate::secret::Secret;

/// One request the fake registry received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// Answers requests from a script, in order; 500 once the script runs out.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(u16, String)>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    script.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_owned(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body,
    });
    let (status, body) = script
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((500, "script exhausted".into()));
    (StatusCode::from_u16(status).unwrap(), body)
}

/// A scripted registry; returns its address and the script.
async fn registry(answers: &[(u16, &str)]) -> (SocketAddr, Arc<Script>) {
    let script = Arc::new(Script::default());
    script.answers.lock().unwrap().extend(
        answers
            .iter()
            .map(|(status, body)| (*status, (*body).to_owned())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().fallback(answer).with_state(script.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, script)
}

fn client(url: &str, basic_auth: Option<&str>) -> RegistryClient {
    let auth = basic_auth.map(Secret::new);
    let settings = RegistrySettings::new(url, auth.as_ref()).unwrap();
    RegistryClient {
        first_backoff: Duration::from_millis(1),
        ..RegistryClient::new(settings).unwrap()
    }
}

/// An address nothing listens on: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn registering_json_posts_the_confluent_request_and_returns_the_id() {
    let (address, script) = registry(&[(200, r#"{"id": 7}"#)]).await;
    let client = client(&format!("http://{address}"), Some("user:pa:ss"));
    let id = client
        .register(
            "gen.topic-value",
            "{\"type\": \"object\"}",
            SchemaType::Json,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(id, 7);
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/subjects/gen.topic-value/versions");
    assert_eq!(seen[0].content_type.as_deref(), Some(REGISTRY_CONTENT_TYPE));
    // base64("user:pa:ss"): the password keeps its colon.
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic dXNlcjpwYTpzcw==")
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"schema": "{\"type\": \"object\"}", "schemaType": "JSON"})
    );
}

#[tokio::test]
async fn registering_avro_leaves_the_schema_type_out_as_confluent_does() {
    let (address, script) = registry(&[(200, r#"{"id": 3}"#)]).await;
    let client = client(&format!("http://{address}/prefix/"), None);
    let id = client
        .register(
            "t-value",
            "\"string\"",
            SchemaType::Avro,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(id, 3);
    let seen = script.seen();
    assert_eq!(seen[0].path, "/prefix/subjects/t-value/versions");
    assert_eq!(seen[0].authorization, None);
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"schema": "\"string\""}));
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let (address, script) = registry(&[
        (503, r#"{"error_code": 50003, "message": "forward error"}"#),
        (429, "slow down"),
        (500, ""),
        (200, r#"{"id": 12}"#),
    ])
    .await;
    let id = client(&format!("http://{address}"), None)
        .register("t-value", "{}", SchemaType::Json, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(id, 12);
    assert_eq!(script.seen().len(), 4);
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_carries_the_registry_message() {
    let (address, script) = registry(&[(
        409,
        r#"{"error_code": 409, "message": "Schema being registered is incompatible"}"#,
    )])
    .await;
    let error = client(&format!("http://{address}"), None)
        .register("t-value", "{}", SchemaType::Json, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(script.seen().len(), 1);
    let text = error.to_string();
    assert!(
        matches!(error, RegistryError::Refused { status, error_code: Some(409), .. } if status == StatusCode::CONFLICT),
        "{text}"
    );
    assert!(text.contains("incompatible"), "{text}");
    assert!(text.contains("t-value"), "{text}");
}

#[tokio::test]
async fn persistent_failures_give_up_after_max_attempts() {
    let (address, script) = registry(&[]).await;
    let error = client(&format!("http://{address}"), None)
        .register("t-value", "{}", SchemaType::Json, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(script.seen().len(), MAX_ATTEMPTS as usize);
    assert!(
        matches!(
            error,
            RegistryError::Unavailable {
                attempts: MAX_ATTEMPTS,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("script exhausted"), "{error}");
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_but_never_shown() {
    let address = closed_port().await;
    let client = client(&format!("http://api%20key:s3cr%40t@{address}"), None);
    assert!(client.settings().has_credentials());
    assert_eq!(
        client.settings().url().as_str(),
        format!("http://{address}/")
    );
    let error = client
        .register("t-value", "{}", SchemaType::Json, &CancellationToken::new())
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(matches!(error, RegistryError::Unavailable { .. }), "{text}");
    assert!(text.contains(&address.to_string()), "{text}");
    for secret in ["s3cr", "api%20key", "api key"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test]
async fn url_credentials_are_percent_decoded_into_basic_auth() {
    let (address, script) = registry(&[(200, r#"{"id": 1}"#)]).await;
    client(&format!("http://us%20er:p%40ss@{address}"), None)
        .register("t-value", "{}", SchemaType::Json, &CancellationToken::new())
        .await
        .unwrap();
    // base64("us er:p@ss")
    assert_eq!(
        script.seen()[0].authorization.as_deref(),
        Some("Basic dXMgZXI6cEBzcw==")
    );
}

#[tokio::test]
async fn lookups_tell_known_from_unknown_ids() {
    let (address, script) = registry(&[
        (
            404,
            r#"{"error_code": 40403, "message": "Schema not found"}"#,
        ),
        (200, r#"{"schema": "{}"}"#),
        (401, r#"{"error_code": 401, "message": "Unauthorized"}"#),
    ])
    .await;
    let client = client(&format!("http://{address}"), None);
    let stop = CancellationToken::new();
    assert!(!client.is_registered(1_000_001, &stop).await.unwrap());
    assert!(client.is_registered(1, &stop).await.unwrap());
    let error = client.is_registered(2, &stop).await.unwrap_err();
    assert!(
        error.to_string().contains("--registry-basic-auth"),
        "{error}"
    );
    let paths: Vec<String> = script.seen().into_iter().map(|seen| seen.path).collect();
    assert_eq!(
        paths,
        ["/schemas/ids/1000001", "/schemas/ids/1", "/schemas/ids/2"]
    );
}

#[tokio::test]
async fn shutdown_interrupts_the_retries() {
    let (address, _script) = registry(&[]).await;
    let mut client = client(&format!("http://{address}"), None);
    client.first_backoff = Duration::from_secs(60);
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let error = client
        .register("t-value", "{}", SchemaType::Json, &stop)
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Cancelled), "{error}");
}

#[test]
fn settings_are_validated_without_echoing_the_url() {
    let secret = |text: &str| Secret::new(text);
    let error = RegistrySettings::new("not a url s3cret", None).unwrap_err();
    assert!(!error.to_string().contains("s3cret"), "{error}");
    let error = RegistrySettings::new("ftp://u:s3cret@host", None).unwrap_err();
    assert!(matches!(error, RegistryError::InvalidUrl { .. }));
    assert!(!error.to_string().contains("s3cret"), "{error}");
    let error = RegistrySettings::new("http://host", Some(&secret("no-colon"))).unwrap_err();
    assert!(matches!(error, RegistryError::InvalidBasicAuth));
    let error = RegistrySettings::new("http://host", Some(&secret(":pw"))).unwrap_err();
    assert!(matches!(error, RegistryError::InvalidBasicAuth));
    let error = RegistrySettings::new("http://u:p@host", Some(&secret("u:p"))).unwrap_err();
    assert!(matches!(error, RegistryError::ConflictingCredentials));
    let settings =
        RegistrySettings::new("https://host:8081/sr?x=1#f", Some(&secret("u:p:q"))).unwrap();
    assert_eq!(settings.url().as_str(), "https://host:8081/sr");
    assert_eq!(
        settings.auth,
        Some(BasicAuth {
            user: "u".into(),
            password: Secret::new("p:q")
        })
    );
    assert_eq!(
        settings
            .endpoint(&["subjects", "a/b c", "versions"])
            .as_str(),
        "https://host:8081/sr/subjects/a%2Fb%20c/versions"
    );
    assert!(format!("{settings:?}").contains(crate::secret::REDACTED));
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let delays: Vec<u128> = (1..=7)
        .map(|attempt| backoff(FIRST_BACKOFF, attempt).as_millis())
        .collect();
    assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000]);
}
