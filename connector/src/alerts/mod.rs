//! Fuel alerts: a generator reading below a threshold also writes an alert point.
//!
//! Alerts read the *mapped* point, tags and fields by the names they are written under, so they
//! follow any mapping. A point carrying the id tag (`alerts.id_tag`) and a float fuel field
//! (`alerts.fuel_field`) is a [`FuelReading`]; anything else simply raises no alert (it is not
//! an error: not every topic holds generators). A reading below `critical` raises a critical
//! alert, else one below `warn` a warning; the thresholds are the first matching per-tag
//! override's, or the defaults.
//!
//! The alert point is `<measurement>,generator=<id>,level=warn|critical fuel=<f>,threshold=<f>`
//! at the reading's own timestamp, so replaying a record rewrites the same alert point instead
//! of adding one. It travels in the same batch, and the same InfluxDB write, as the reading.
//!
//! - [`telemetry`]: the per-generator gauges and alert counters served on `/metrics`.

pub mod telemetry;

use std::borrow::Cow;
use std::fmt;

use crate::line_protocol::{self, FieldValue, LineProtocolError, Point};

pub use telemetry::{AlertMetrics, GaugeReading};

/// Tag key of the generator id on alert points.
pub const GENERATOR_TAG: &str = "generator";
/// Tag key of the level on alert points.
pub const LEVEL_TAG: &str = "level";
/// Field key of the fuel level on alert points.
pub const FUEL_FIELD: &str = "fuel";
/// Field key of the threshold crossed on alert points.
pub const THRESHOLD_FIELD: &str = "threshold";

/// How low a generator's fuel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Below `warn` (and not below `critical`).
    Warn,
    /// Below `critical`.
    Critical,
}

impl Level {
    /// Every level, in the order counters are kept.
    pub const ALL: [Level; 2] = [Level::Warn, Level::Critical];

    /// The tag and label value: `warn` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }

    /// Position in [`Level::ALL`], for per-level counts kept in arrays.
    pub fn index(self) -> usize {
        match self {
            Level::Warn => 0,
            Level::Critical => 1,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a pair of thresholds is unusable.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// NaN or an infinity: no fuel level compares sensibly with it.
    #[error("is {value}; a threshold must be a finite number")]
    NotFinite {
        /// Which threshold.
        level: Level,
        /// The value given.
        value: f64,
    },
    /// `critical` is not below `warn`, so a warning could never be raised.
    #[error("critical ({critical}) must be below warn ({warn})")]
    NotOrdered {
        /// The warn threshold.
        warn: f64,
        /// The critical threshold.
        critical: f64,
    },
}

impl ThresholdError {
    /// The threshold the error is about, so configuration messages can name its key.
    pub fn level(&self) -> Level {
        match self {
            ThresholdError::NotFinite { level, .. } => *level,
            ThresholdError::NotOrdered { .. } => Level::Critical,
        }
    }
}

/// The two fuel levels that raise alerts: both finite, `critical < warn`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    warn: f64,
    critical: f64,
}

impl Thresholds {
    /// Checks and pairs the thresholds.
    pub fn new(warn: f64, critical: f64) -> Result<Self, ThresholdError> {
        for (level, value) in [(Level::Warn, warn), (Level::Critical, critical)] {
            if !value.is_finite() {
                return Err(ThresholdError::NotFinite { level, value });
            }
        }
        if critical >= warn {
            return Err(ThresholdError::NotOrdered { warn, critical });
        }
        Ok(Self { warn, critical })
    }

    /// The threshold of `level`.
    pub fn get(&self, level: Level) -> f64 {
        match level {
            Level::Warn => self.warn,
            Level::Critical => self.critical,
        }
    }

    /// The level `fuel` is at: critical below `critical`, else warn below `warn`, else none.
    /// NaN compares false with everything, so it raises nothing.
    pub fn level(&self, fuel: f64) -> Option<Level> {
        if fuel < self.critical {
            Some(Level::Critical)
        } else if fuel < self.warn {
            Some(Level::Warn)
        } else {
            None
        }
    }
}

/// Other thresholds for the points whose tag `tag` has the value `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Tag key, as written.
    pub tag: String,
    /// Tag value to match exactly.
    pub value: String,
    /// The thresholds that apply instead of the defaults.
    pub thresholds: Thresholds,
}

/// The compiled `[alerts]` section (only present when alerts are enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    /// Tag key naming the generator on mapped points.
    pub id_tag: String,
    /// Field key holding the fuel level on mapped points (a float field).
    pub fuel_field: String,
    /// Thresholds when no override matches.
    pub thresholds: Thresholds,
    /// Per-tag thresholds; the first match wins.
    pub overrides: Vec<Override>,
    /// Measurement of alert points (checked representable by the configuration).
    pub measurement: String,
    /// Most generators with gauge series at once.
    pub max_generators: usize,
}

/// A mapped point that is a generator's fuel reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuelReading<'p> {
    /// The generator id (the id tag's value).
    pub generator: &'p str,
    /// The fuel level: finite.
    pub fuel: f64,
    /// The thresholds that apply to this generator.
    pub thresholds: Thresholds,
    /// The reading's timestamp, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
}

/// A reading below a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alert<'p> {
    /// The generator id.
    pub generator: &'p str,
    /// The fuel level read.
    pub fuel: f64,
    /// How low it is.
    pub level: Level,
    /// The threshold it is below.
    pub threshold: f64,
    /// The reading's timestamp, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
}

impl<'p> FuelReading<'p> {
    /// The alert this reading raises, if its fuel is below a threshold.
    pub fn alert(&self) -> Option<Alert<'p>> {
        let level = self.thresholds.level(self.fuel)?;
        Some(Alert {
            generator: self.generator,
            fuel: self.fuel,
            level,
            threshold: self.thresholds.get(level),
            timestamp_ns: self.timestamp_ns,
        })
    }
}

impl AlertRules {
    /// The fuel reading `point` is, if it has the id tag and a finite float fuel field.
    pub fn reading<'p>(&self, point: &'p impl MappedPoint) -> Option<FuelReading<'p>> {
        let generator = point.tag(&self.id_tag)?;
        let fuel = point.float_field(&self.fuel_field)?;
        // The line protocol refuses non-finite floats before alerts look at the point; checked
        // again so that no NaN can reach an alert point or a gauge whatever the caller.
        if !fuel.is_finite() {
            return None;
        }
        Some(FuelReading {
            generator,
            fuel,
            thresholds: self.thresholds_for(point),
            timestamp_ns: point.timestamp_ns(),
        })
    }

    /// The first override whose tag the point carries with the override's value, else the
    /// defaults.
    fn thresholds_for(&self, point: &impl MappedPoint) -> Thresholds {
        self.overrides
            .iter()
            .find(|rule| point.tag(&rule.tag) == Some(rule.value.as_str()))
            .map_or(self.thresholds, |rule| rule.thresholds)
    }

    /// Appends `alert` as one line to `out` (nothing on error).
    ///
    /// It cannot fail for an alert derived from a point that was itself encoded: the generator id
    /// already passed as that point's tag value, and the measurement was checked at start-up.
    pub fn encode(&self, alert: &Alert<'_>, out: &mut Vec<u8>) -> Result<(), LineProtocolError> {
        let point = Point {
            measurement: Cow::Borrowed(&self.measurement),
            // Sorted by key, the order InfluxDB keeps series keys in.
            tags: vec![
                (GENERATOR_TAG, Cow::Borrowed(alert.generator)),
                (LEVEL_TAG, Cow::Borrowed(alert.level.as_str())),
            ],
            fields: vec![
                (FUEL_FIELD, FieldValue::Float(alert.fuel)),
                (THRESHOLD_FIELD, FieldValue::Float(alert.threshold)),
            ],
            timestamp_ns: alert.timestamp_ns,
        };
        line_protocol::encode(&point, out)
    }
}

/// What alerts read of a mapped point: a [`Point`], or a line a flat record was written to
/// straight ([`crate::map::FlatPoint`]).
pub trait MappedPoint {
    /// Tag keys and values, as written.
    fn tags(&self) -> &[(&str, Cow<'_, str>)];

    /// The value of the tag with key `key`.
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags()
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_ref())
    }

    /// The value of the field with key `key`, when it is written as a float.
    fn float_field(&self, key: &str) -> Option<f64>;

    /// The point's timestamp, nanoseconds since the Unix epoch.
    fn timestamp_ns(&self) -> i64;
}

impl MappedPoint for Point<'_> {
    fn tags(&self) -> &[(&str, Cow<'_, str>)] {
        &self.tags
    }

    fn float_field(&self, key: &str) -> Option<f64> {
        self.fields
            .iter()
            .find_map(|(name, value)| value.as_float().filter(|_| *name == key))
    }

    fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }
}

#[cfg(test)]
mod tests;
