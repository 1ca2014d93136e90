//! Why a record was rejected: the explanation that travels with it to the dead-letter topic.

use std::fmt;

/// The pipeline stage that rejected a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The bytes are not a payload we can read (framing, JSON syntax).
    Decode,
    /// The payload violates its schema.
    Validate,
    /// The record cannot become a point (missing tag, non-numeric field, bad timestamp, ...).
    Map,
    /// InfluxDB refused the point.
    Write,
}

impl Stage {
    /// Lower-case name used in headers, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Map => "map",
            Stage::Write => "write",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Where it was rejected.
    pub stage: Stage,
    /// A stable, machine-readable reason (the error variant), e.g. `InvalidJson`.
    pub reason: &'static str,
    /// What a human needs to fix the producer or the configuration.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.stage, self.reason, self.message)
    }
}

/// Longest explanation kept, so a megabyte-sized bad value cannot bloat headers and logs.
pub const MAX_MESSAGE_BYTES: usize = 1_024;

/// Cuts `text` to at most [`MAX_MESSAGE_BYTES`] on a character boundary, marking the cut.
pub fn truncate_message(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_messages_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate_message(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_message("short".into()), "short");
    }
}
