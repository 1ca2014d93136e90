//! librdkafka's log lines and global errors, reported the way the sink reports everything else:
//! one clear line per change of trouble, never a line per retry, never a secret.
//!
//! librdkafka retries a broker that refuses the connection or the credentials every second or
//! so, and reports each attempt twice (a `FAIL` log line and a global error). Left as it is,
//! a wrong password fills the log with several ERROR lines a second. Here the first error of a
//! kind is logged once, with what to check; repeats go to `debug`, and the `kafka_client_errors`
//! counter counts them all. Credentials and TLS failures make the sink unready until a broker
//! connection is up again (seen in librdkafka's statistics).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tracing::{debug, error, info, warn};

use crate::metrics::Telemetry;
use crate::secret::REDACTED;

/// What kind of trouble a librdkafka error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The brokers refuse the credentials (SASL).
    Authentication,
    /// TLS failed: certificate not trusted, wrong host name, handshake refused.
    Tls,
    /// No broker answers (refused, unresolvable, all down).
    Unreachable,
    /// Anything else.
    Other,
}

impl Trouble {
    /// Classifies a global error from its code and librdkafka's reason text.
    pub fn of(code: Option<RDKafkaErrorCode>, reason: &str) -> Self {
        match code {
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::IllegalSASLState
                | RDKafkaErrorCode::UnsupportedSASLMechanism,
            ) => return Self::Authentication,
            Some(RDKafkaErrorCode::SSL) => return Self::Tls,
            _ => {}
        }
        // "sasl_ssl://host:9093/bootstrap: <what happened>": the broker's name says nothing.
        let what = match reason.split_once(": ") {
            Some((broker, rest)) if broker.contains("://") => rest,
            _ => reason,
        };
        let lower = what.to_ascii_lowercase();
        if lower.contains("sasl") || lower.contains("authentication") {
            Self::Authentication
        } else if lower.contains("ssl") || lower.contains("certificate") || lower.contains("tls") {
            Self::Tls
        } else if matches!(
            code,
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        ) {
            Self::Unreachable
        } else {
            Self::Other
        }
    }

    /// The `kind` label of `kafka_client_errors`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Tls => "tls",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }

    /// How much a trouble says: credentials or TLS explain everything after them (all brokers
    /// are down *because* the handshake fails), so a lesser one does not replace them.
    fn rank(self) -> u8 {
        match self {
            Self::Other => 0,
            Self::Unreachable => 1,
            Self::Authentication | Self::Tls => 2,
        }
    }

    /// Whether the operator must act (and the sink is unready meanwhile).
    fn needs_action(self) -> bool {
        matches!(self, Self::Authentication | Self::Tls)
    }

    fn advice(self) -> &'static str {
        match self {
            Self::Authentication => {
                "Kafka refuses the sink's credentials; check kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password"
            }
            Self::Tls => {
                "TLS with the Kafka brokers failed; check kafka.security_protocol and that kafka.ssl_ca_file holds the CA that signed the brokers' certificates"
            }
            Self::Unreachable => {
                "no Kafka broker answers; librdkafka keeps trying (check kafka.brokers and the network)"
            }
            Self::Other => "Kafka client error; librdkafka keeps retrying",
        }
    }
}

/// How long a librdkafka log line stays "seen": a repeat within it goes to `debug`.
const REPEAT_WINDOW: Duration = Duration::from_secs(300);

/// Reports one librdkafka client's log lines and errors (the consumer's, or a producer's).
#[derive(Debug)]
pub struct KafkaEvents {
    /// Which client: `consumer`, `dead-letter producer`.
    client: &'static str,
    /// Where trouble is counted; readiness follows it only when `gates_readiness`.
    telemetry: Arc<Telemetry>,
    gates_readiness: bool,
    /// Credential values, scrubbed from every text librdkafka hands over.
    secrets: Vec<String>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The trouble reported last, until a connection is up again.
    current: Option<Trouble>,
    /// When each (normalised) log line was last shown.
    shown: HashMap<String, Instant>,
}

impl KafkaEvents {
    /// Events of `client`; `secrets` are the credential values its configuration holds.
    /// Only the consumer's events gate readiness: a producer shares its brokers and
    /// credentials, and its failures show in dead-letter delivery.
    pub fn new(
        client: &'static str,
        telemetry: Arc<Telemetry>,
        gates_readiness: bool,
        secrets: Vec<String>,
    ) -> Self {
        Self {
            client,
            telemetry,
            gates_readiness,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            state: Mutex::default(),
        }
    }

    /// `text` with every configured secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// A global error from librdkafka.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        let reason = self.scrub(reason);
        let trouble = Trouble::of(error.rdkafka_error_code(), &reason);
        self.telemetry.kafka_client_error(trouble.label());
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let news = match state.current {
            None => true,
            Some(current) => current != trouble && trouble.rank() >= current.rank(),
        };
        if !news {
            debug!(client = self.client, error = %error, reason, "Kafka client error (repeat)");
            return;
        }
        state.current = Some(trouble);
        drop(state);
        let advice = trouble.advice();
        if trouble.needs_action() {
            if self.gates_readiness {
                self.telemetry
                    .set_kafka_refusal(Some(format!("{advice}: {reason}")));
            }
            error!(
                client = self.client,
                reason, "{advice}; nothing is read or committed until this is fixed"
            );
        } else {
            warn!(client = self.client, reason, "{advice}");
        }
    }

    /// A log line from librdkafka.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = self.scrub(message);
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        // A broker failure arrives as a FAIL line and as a global error; `error` reports it.
        // Debug lines (librdkafka's `debug` contexts, thousands a second) are never remembered.
        if matches!(level, RDKafkaLogLevel::Debug)
            || (serious && matches!(facility, "FAIL" | "ERROR"))
            || self.seen(&message)
        {
            debug!(target: "librdkafka", client = self.client, facility, "{message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", client = self.client, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", client = self.client, facility, "{message}")
            }
            _ => info!(target: "librdkafka", client = self.client, facility, "{message}"),
        }
    }

    /// librdkafka statistics: a broker in state `UP` means connecting and authenticating work.
    pub fn statistics(&self, statistics: &Statistics) {
        let up = statistics
            .brokers
            .values()
            .any(|broker| broker.state == "UP" && broker.nodeid >= 0);
        if up {
            self.connected();
        }
    }

    /// A broker connection works: the trouble reported last is over.
    pub fn connected(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(trouble) = state.current.take() {
            drop(state);
            if trouble.needs_action() && self.gates_readiness {
                self.telemetry.set_kafka_refusal(None);
            }
            info!(
                client = self.client,
                "Kafka connection works again ({} is over)",
                trouble.label()
            );
        }
    }

    /// Whether this log line (numbers aside) was shown within the repeat window; marks it shown.
    fn seen(&self, message: &str) -> bool {
        let key: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let now = Instant::now();
        state
            .shown
            .retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
        if state.shown.contains_key(&key) {
            return true;
        }
        state.shown.insert(key, now);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> (KafkaEvents, Arc<Telemetry>) {
        let telemetry = Arc::new(Telemetry::new());
        (
            KafkaEvents::new("consumer", telemetry.clone(), true, vec!["hunter2".into()]),
            telemetry,
        )
    }

    #[test]
    fn authentication_failures_make_the_sink_unready_once() {
        let (events, telemetry) = events();
        let error = KafkaError::Global(RDKafkaErrorCode::Authentication);
        for _ in 0..5 {
            events.error(
                &error,
                "sasl_plaintext://127.0.0.1:9092/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256",
            );
        }
        let readiness = telemetry.readiness().unwrap_err();
        assert!(
            readiness.contains("Kafka refuses the sink's credentials"),
            "{readiness}"
        );
        assert!(telemetry.render().contains("kind=\"authentication\"} 5"));
        events.connected();
        assert!(!telemetry.readiness().unwrap_err().contains("Kafka refuses"));
    }

    #[test]
    fn symptoms_do_not_replace_their_cause() {
        let (events, telemetry) = events();
        events.error(
            &KafkaError::Global(RDKafkaErrorCode::SSL),
            "ssl://b:9093/bootstrap: SSL handshake failed",
        );
        events.error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(events.state.lock().unwrap().current, Some(Trouble::Tls));
        assert!(telemetry.readiness().unwrap_err().contains("TLS"));
    }

    #[test]
    fn secrets_are_scrubbed_from_librdkafka_text() {
        let (events, _) = events();
        assert_eq!(
            events.scrub("sasl.password=hunter2 and again hunter2"),
            format!("sasl.password={REDACTED} and again {REDACTED}")
        );
    }

    #[test]
    fn troubles_are_classified_by_code_then_text() {
        assert_eq!(Trouble::of(Some(RDKafkaErrorCode::SSL), "x"), Trouble::Tls);
        assert_eq!(
            Trouble::of(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "SSL handshake failed: certificate verify failed"
            ),
            Trouble::Tls
        );
        assert_eq!(
            Trouble::of(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            Trouble::Unreachable
        );
        assert_eq!(
            Trouble::of(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "sasl_ssl://127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
            ),
            Trouble::Unreachable
        );
        assert_eq!(
            Trouble::of(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
            ),
            Trouble::Tls
        );
    }

    #[test]
    fn repeated_log_lines_are_seen() {
        let (events, _) = events();
        assert!(!events.seen("Connect to 127.0.0.1:9092 failed after 3ms"));
        assert!(events.seen("Connect to 127.0.0.1:9092 failed after 17ms"));
        assert!(!events.seen("something else"));
    }
}
