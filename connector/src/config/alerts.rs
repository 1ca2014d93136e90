//! `[alerts]` → [`AlertRules`], or none when disabled. The section is checked even when
//! disabled, so turning alerts on later cannot reveal a mistake made long before.

use super::raw::{RawAlertOverride, RawAlerts};
use super::{ConfigError, invalid};
use crate::alerts::{AlertRules, Level, Override, ThresholdError, Thresholds};
use crate::map::Measurement;

/// Builds the alert rules. `readings` is the readings' fixed measurement or template, if any:
/// alert points must not land in it.
pub(super) fn build(
    raw: &RawAlerts,
    readings: Option<&str>,
) -> Result<Option<AlertRules>, ConfigError> {
    let id_tag = name(&raw.id_tag, "alerts.id_tag", "the tag naming the generator")?;
    let fuel_field = name(
        &raw.fuel_field,
        "alerts.fuel_field",
        "the field holding the fuel level",
    )?;
    let thresholds = Thresholds::new(raw.warn, raw.critical)
        .map_err(|error| invalid(threshold_key("alerts", error), error.to_string()))?;
    let measurement = measurement(&raw.measurement, readings)?;
    if raw.max_generators == 0 {
        return Err(invalid("alerts.max_generators", "must be at least 1"));
    }
    let overrides = raw
        .overrides
        .iter()
        .enumerate()
        .map(|(index, rule)| build_override(raw, index, rule, thresholds))
        .collect::<Result<Vec<_>, _>>()?;
    if !raw.enabled {
        return Ok(None);
    }
    Ok(Some(AlertRules {
        id_tag,
        fuel_field,
        thresholds,
        overrides,
        measurement,
        max_generators: raw.max_generators,
    }))
}

/// A tag or field key to match: written names are never empty and never span lines.
fn name(text: &str, key: &str, what: &str) -> Result<String, ConfigError> {
    if text.is_empty() || text.contains(['\n', '\r']) {
        return Err(invalid(
            key,
            format!("must be {what}, as the mapping writes it: non-empty, on one line"),
        ));
    }
    Ok(text.to_owned())
}

fn measurement(text: &str, readings: Option<&str>) -> Result<String, ConfigError> {
    let key = "alerts.measurement";
    match Measurement::parse(text).map_err(|error| invalid(key, error))? {
        Measurement::Fixed(name) if Some(name.as_str()) == readings => Err(invalid(
            key,
            format!(
                "`{name}` is also mapping.measurement; alert points need a measurement of their \
                 own, or their `fuel` and `threshold` fields would mix with the readings"
            ),
        )),
        Measurement::Fixed(name) => Ok(name),
        Measurement::Template(_) | Measurement::Field(_) => Err(invalid(
            key,
            "must be a fixed name: alert points of every topic go to one measurement",
        )),
    }
}

fn build_override(
    raw: &RawAlerts,
    index: usize,
    rule: &RawAlertOverride,
    defaults: Thresholds,
) -> Result<Override, ConfigError> {
    let prefix = format!("alerts.overrides[{index}]");
    let tag = name(&rule.tag, &format!("{prefix}.tag"), "a tag key")?;
    if rule.value.is_empty() {
        // InfluxDB refuses empty tag values, so no point could ever match.
        return Err(invalid(
            format!("{prefix}.value"),
            "must not be empty: no point carries an empty tag value",
        ));
    }
    if rule.warn.is_none() && rule.critical.is_none() {
        return Err(invalid(
            prefix,
            "sets neither warn nor critical: set one or both (the other stays the default)",
        ));
    }
    let warn = rule.warn.unwrap_or(defaults.get(Level::Warn));
    let critical = rule.critical.unwrap_or(defaults.get(Level::Critical));
    let thresholds = Thresholds::new(warn, critical).map_err(|error| {
        // Name the key the override sets: with critical inherited, warn is the one to change.
        let (key, inherited) = match (error, rule.warn, rule.critical) {
            (ThresholdError::NotOrdered { .. }, Some(_), None) => (
                format!("{prefix}.warn"),
                " (critical is alerts.critical: this override does not set it)",
            ),
            (ThresholdError::NotOrdered { .. }, None, Some(_)) => (
                format!("{prefix}.critical"),
                " (warn is alerts.warn: this override does not set it)",
            ),
            _ => (threshold_key(&prefix, error), ""),
        };
        invalid(key, format!("{error}{inherited}"))
    })?;
    if let Some(earlier) = raw.overrides[..index]
        .iter()
        .position(|other| other.tag == rule.tag && other.value == rule.value)
    {
        return Err(invalid(
            prefix,
            format!(
                "matches {}={} like alerts.overrides[{earlier}], which comes first and wins: \
                 this one would never apply",
                rule.tag, rule.value
            ),
        ));
    }
    Ok(Override {
        tag,
        value: rule.value.clone(),
        thresholds,
    })
}

/// `<prefix>.warn` or `<prefix>.critical`, whichever the error is about.
fn threshold_key(prefix: &str, error: ThresholdError) -> String {
    format!("{prefix}.{}", error.level())
}
