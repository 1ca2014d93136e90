//! Log output: human-readable on a terminal, one JSON object per line elsewhere (containers).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Libraries that log every failed attempt of something the sink retries, and that the sink
/// reports itself once per state change (with the same message). Silenced unless the
/// configured filter names them.
const QUIETED: &[&str] = &["rustls_platform_verifier"];

/// The configured filter plus the quieted libraries it does not mention.
fn directives(configured: &str) -> String {
    let mut directives = configured.to_owned();
    for target in QUIETED {
        if !configured.contains(target) {
            directives.push_str(&format!(",{target}=off"));
        }
    }
    directives
}

/// Installs the global subscriber. The filter is validated at configuration load.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_new(directives(&settings.filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_noise_is_quieted_unless_asked_for() {
        assert_eq!(directives("info"), "info,rustls_platform_verifier=off");
        assert_eq!(
            directives("debug,rustls_platform_verifier=debug"),
            "debug,rustls_platform_verifier=debug"
        );
        assert!(EnvFilter::try_new(directives("info,rdkafka=debug")).is_ok());
    }
}
