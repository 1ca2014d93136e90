//! What the configuration tests share: the smallest valid file and a parser with a chosen
//! base directory and environment.

use super::*;

/// The smallest valid configuration: Kafka and an InfluxDB 1.x target; the rest defaults.
pub(super) const MINIMAL: &str = r#"
[kafka]
brokers = ["localhost:9092"]
group_id = "sink"
topics = ["emergency_generator"]

[influxdb]
api = "v1"
url = "http://localhost:8086"
database = "generators"
"#;

/// Parses `text` as `test.toml` in `base_dir`, with `env` as the only environment.
pub(super) fn parse_in(
    text: &str,
    base_dir: &Path,
    env: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()));
    Config::parse(text, Path::new("test.toml"), base_dir, env)
}
