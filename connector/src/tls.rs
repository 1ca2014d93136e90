//! TLS for the sink's HTTPS clients (InfluxDB, Schema Registry): which servers to trust, the
//! client certificate to present, and how a TLS failure is told apart from a network one.
//!
//! Kafka's TLS is librdkafka's own and is configured through its properties (see
//! [`crate::source::KafkaSettings`]).

use std::error::Error as _;
use std::fmt;

/// A PEM client certificate chain with its private key, as reqwest takes it. `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct ClientIdentity {
    pem: Vec<u8>,
}

impl ClientIdentity {
    /// Checks that `certificate_pem` and `key_pem` together make a usable identity.
    pub fn from_pem(certificate_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let mut pem = Vec::with_capacity(certificate_pem.len() + key_pem.len() + 1);
        pem.extend_from_slice(certificate_pem);
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key_pem);
        // reqwest's message names the PEM section at fault, never its content.
        reqwest::Identity::from_pem(&pem).map_err(|error| describe(&error))?;
        Ok(Self { pem })
    }

    fn identity(&self) -> Result<reqwest::Identity, reqwest::Error> {
        reqwest::Identity::from_pem(&self.pem)
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

/// How an HTTPS client checks its server and identifies itself.
#[derive(Debug, Clone, Default)]
pub struct HttpTls {
    /// PEM bundle of CA certificates trusted in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for servers that require one (mutual TLS).
    pub client_identity: Option<ClientIdentity>,
    /// Accept any server certificate. Only ever set by an explicit opt-in, which is logged.
    pub insecure_skip_verify: bool,
}

impl HttpTls {
    /// `builder` configured with these settings.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, reqwest::Error> {
        if let Some(pem) = &self.ca_pem {
            builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        if let Some(identity) = &self.client_identity {
            builder = builder.identity(identity.identity()?);
        }
        if self.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        Ok(builder)
    }
}

/// A request that failed before any HTTP answer, described for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// `timeout`, `connect`, `tls` or `transport`, as in the metrics' `cause` label.
    pub cause: &'static str,
    /// The underlying reason, e.g. `Connection refused (os error 111)` or
    /// `invalid peer certificate: UnknownIssuer`. Never contains the URL.
    pub detail: String,
    /// For a TLS failure, what it asks of the operator.
    pub tls: Option<TlsTrouble>,
}

/// What a TLS failure asks of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsTrouble {
    /// The server wants a client certificate and the sink presented none.
    ClientCertificateRequired,
    /// The server's certificate is not trusted (unknown CA, another host name, expired), or
    /// the handshake failed otherwise.
    ServerNotTrusted,
}

impl TlsTrouble {
    fn of(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
                Self::ClientCertificateRequired
            }
            _ => Self::ServerNotTrusted,
        }
    }

    /// What to check, naming the keys of `section` (`influxdb`, `schema_registry`).
    pub fn advice(self, section: &str) -> String {
        match self {
            Self::ClientCertificateRequired => format!(
                "the server requires a client certificate: set {section}.client_certificate_file and {section}.client_key_file"
            ),
            Self::ServerNotTrusted => format!(
                "the server's certificate must be signed by a CA in the system roots or in {section}.ca_file, for the URL's host name"
            ),
        }
    }
}

impl TransportFailure {
    /// Classifies a reqwest error. A TLS failure (untrusted certificate, wrong host name,
    /// handshake refused) needs the operator and is reported as `tls`; the rest is transient.
    pub fn of(error: &reqwest::Error) -> Self {
        let tls = tls_error(error);
        let cause = if tls.is_some() {
            "tls"
        } else if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else {
            "transport"
        };
        let detail = match tls {
            Some(tls) => tls.to_string(),
            None => describe(error),
        };
        Self {
            cause,
            detail,
            tls: tls.map(TlsTrouble::of),
        }
    }

    /// Whether the failure is one the operator must fix (TLS), rather than a transient one.
    pub fn needs_action(&self) -> bool {
        self.tls.is_some()
    }
}

/// The rustls error behind `error`, if TLS is what failed.
fn tls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source = error.source();
    while let Some(current) = source {
        if let Some(tls) = within_io_errors(current) {
            return Some(tls);
        }
        source = current.source();
    }
    None
}

/// `error` as a rustls error, looking through any number of `io::Error` wrappers:
/// tokio-rustls wraps the handshake failure in one and hyper-rustls in another, and
/// `io::Error::source` skips the error it wraps.
fn within_io_errors<'a>(
    mut error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
        error = inner;
    }
}

/// The innermost reasons of `error`, joined, without reqwest's "error sending request for url
/// (…)" preamble (so no URL, which keeps query strings out of logs).
pub fn describe(error: &reqwest::Error) -> String {
    let mut reasons: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        // Wrappers repeat their inner error's text; keep each reason once.
        if !reasons.iter().any(|seen| seen.contains(&text)) {
            reasons.retain(|seen| !text.contains(seen.as_str()));
            reasons.push(text);
        }
        source = current.source();
    }
    if reasons.is_empty() {
        let text = error.to_string();
        match error.url() {
            Some(url) => text.replace(url.as_str(), "<url>"),
            None => text,
        }
    } else {
        reasons.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_never_shows_the_key() {
        let identity = ClientIdentity {
            pem: b"-----BEGIN PRIVATE KEY-----\nsecret".to_vec(),
        };
        assert_eq!(format!("{identity:?}"), crate::secret::REDACTED);
    }

    #[test]
    fn garbage_identity_is_refused_without_echoing_it() {
        let error = ClientIdentity::from_pem(b"not a certificate", b"hunter2").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn rustls_errors_are_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls.clone(),
        ));
        assert_eq!(within_io_errors(&wrapped), Some(&tls));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(within_io_errors(&plain), None);
    }

    #[test]
    fn advice_names_the_keys_to_check() {
        let required = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(
            TlsTrouble::of(&required)
                .advice("influxdb")
                .contains("influxdb.client_certificate_file")
        );
        assert!(
            TlsTrouble::of(&untrusted)
                .advice("schema_registry")
                .contains("schema_registry.ca_file")
        );
    }

    #[tokio::test]
    async fn refused_connections_are_transient_and_name_no_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let error = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/write?db=x&u=admin"))
            .send()
            .await
            .unwrap_err();
        let failure = TransportFailure::of(&error);
        assert_eq!(failure.cause, "connect");
        assert!(!failure.needs_action());
        assert!(!failure.detail.contains("u=admin"), "{}", failure.detail);
        assert!(!failure.detail.is_empty());
    }
}
