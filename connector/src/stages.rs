//! The per-record stages: decode and validate, map, encode into the batch, add the fuel alert.
//!
//! [`Stages::accept`] is everything the sink does to one record before it is batched, with no
//! I/O: the pipeline calls it for each record it receives, and the benchmarks call it on their
//! own. A record either enters the batch (as a line, a dead letter or a skip) or, when it names
//! a registry schema that is not fetched yet, is handed back untouched.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use rdkafka::Message;
use rdkafka::message::Headers as _;
use tracing::{debug, warn};

use crate::alerts::{AlertRules, MappedPoint};
use crate::batch::Batch;
use crate::dead_letter::{DeadLetter, InvalidRecordPolicy};
use crate::decode::{DecodeFailure, Decoder, SchemaKey, VALUE_SCHEMA_ID_HEADER};
use crate::line_protocol;
use crate::map::{FlatLine, KafkaContext, Mapping};
use crate::metrics::Telemetry;
use crate::reject::Rejection;
use crate::source::RecordHeaders;

/// The record that stopped the sink under `dead_letter.policy = "fail"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record at {topic}[{partition}]@{offset}: {rejection}")]
pub struct InvalidRecord {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// The per-record stages: pure apart from counting skips and schema cache lookups.
pub struct Stages {
    decoder: Decoder,
    mapping: Mapping,
    /// The mapping compiled for records the decoder reads flat; `None` when it cannot map them
    /// (the decoder then reads none flat).
    flat_line: Option<FlatLine>,
    /// Fuel alerts, when enabled.
    alerts: Option<AlertRules>,
    invalid_record_policy: InvalidRecordPolicy,
    telemetry: Arc<Telemetry>,
    /// `kis_schema_cache_lookups_total{result="hit"}` and `{result="miss"}`, cached on first
    /// use (a sink that never sees a registry-framed record shows no such series).
    schema_hits: OnceLock<Counter>,
    schema_misses: OnceLock<Counter>,
}

/// What became of a record offered to the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// It is in the batch (as a point, a dead letter or a skip).
    Taken,
    /// It names a registry schema not fetched yet; nothing of it entered the batch.
    NeedsSchema(SchemaKey),
}

impl Stages {
    /// The stages for `decoder` and the configured mapping, alerts and invalid-record policy.
    pub fn new(
        decoder: Decoder,
        mapping: Mapping,
        alerts: Option<AlertRules>,
        invalid_record_policy: InvalidRecordPolicy,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let flat_line = FlatLine::new(mapping.clone());
        let decoder = match &flat_line {
            Some(line) => decoder.with_flat_keys(line.keys().to_vec()),
            None => decoder,
        };
        Self {
            decoder,
            mapping,
            flat_line,
            alerts,
            invalid_record_policy,
            telemetry,
            schema_hits: OnceLock::new(),
            schema_misses: OnceLock::new(),
        }
    }

    /// The decoder, for the registry schemas it reads records with.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The decoder, to teach it a schema fetched from the registry.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// Whether fuel alerts are enabled.
    pub fn alerts_enabled(&self) -> bool {
        self.alerts.is_some()
    }

    /// Decodes, maps and encodes one record into the batch; a rejected record is handled by
    /// the invalid-record policy. Under `fail` the rejection is returned and nothing of the
    /// record enters the batch, so its offset is never stored.
    pub fn accept<M: Message>(
        &self,
        message: &M,
        batch: &mut Batch,
    ) -> Result<Accepted, InvalidRecord> {
        let now = batch.clock();
        let rejection = match self.encode(message, batch, now) {
            Ok(()) => return Ok(Accepted::Taken),
            Err(Unencoded::NeedsSchema(key)) => return Ok(Accepted::NeedsSchema(key)),
            Err(Unencoded::Rejected(rejection)) => rejection,
        };
        match self.invalid_record_policy {
            InvalidRecordPolicy::DeadLetter => {
                debug!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    stage = %rejection.stage,
                    reason = rejection.reason,
                    message = rejection.message,
                    "record rejected; it goes to the dead-letter topic"
                );
                batch.add_dead_letter(DeadLetter::from_message(message, rejection), now);
            }
            InvalidRecordPolicy::Skip => {
                warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    stage = %rejection.stage,
                    reason = rejection.reason,
                    message = rejection.message,
                    "record rejected and skipped (dead_letter.policy = \"skip\"); it is not written anywhere"
                );
                self.telemetry.skipped(message.topic(), &rejection);
                batch.add_skipped(message.topic(), message.partition(), message.offset(), now);
            }
            InvalidRecordPolicy::Fail => {
                return Err(InvalidRecord {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    rejection,
                });
            }
        }
        Ok(Accepted::Taken)
    }

    /// Decodes, maps and encodes one record into the batch, with its alert point if it raises
    /// one. Nothing enters the batch when it is rejected.
    fn encode<M: Message>(
        &self,
        message: &M,
        batch: &mut Batch,
        now: Instant,
    ) -> Result<(), Unencoded> {
        // One lookup: each is a call into librdkafka.
        let message_headers = message.headers();
        let schema_header = message_headers.and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == VALUE_SCHEMA_ID_HEADER)
                .and_then(|header| header.value)
        });
        let headers = RecordHeaders(message_headers);
        let kafka = KafkaContext {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            headers: &headers,
        };
        // The fast path first: a record read flat is written straight to a line. Whatever it is
        // not sure of is decoded, mapped and, if it must be, rejected the generic way.
        let flat = self.decoder.read_flat(message.payload(), schema_header);
        if let (Some((record, schema)), Some(line)) = (&flat, &self.flat_line) {
            if let Some(point) = line.write(record, kafka, batch.line_buffer()) {
                if schema.is_some() {
                    self.count_schema_lookup(true);
                }
                self.line_written(message, message_headers, &point, batch, now);
                return Ok(());
            }
        }
        let generic = self.decode(message.payload(), schema_header)?;
        let point = self
            .mapping
            .map(&generic, kafka)
            .map_err(|error| error.rejection())?;
        line_protocol::encode(&point, batch.line_buffer())
            .map_err(|error| Unencoded::from(error.rejection()))?;
        self.line_written(message, message_headers, &point, batch, now);
        Ok(())
    }

    /// Records in the batch that `message`'s line, `point`, was just written, with its alert
    /// point if it raises one.
    fn line_written<M: Message>(
        &self,
        message: &M,
        headers: Option<&M::Headers>,
        point: &impl MappedPoint,
        batch: &mut Batch,
        now: Instant,
    ) {
        batch.add_point(message, headers, now);
        if let Some(alerts) = &self.alerts {
            add_fuel_reading(alerts, point, message, batch);
        }
    }

    /// Decodes a record value the generic way, counting registry schema cache lookups.
    fn decode(
        &self,
        payload: Option<&[u8]>,
        schema_header: Option<&[u8]>,
    ) -> Result<serde_json::Value, Unencoded> {
        match self.decoder.decode_with_header(payload, schema_header) {
            Ok(decoded) => {
                if decoded.schema.is_some() {
                    self.count_schema_lookup(true);
                }
                Ok(decoded.value)
            }
            Err(DecodeFailure::NeedsSchema(key)) => {
                self.count_schema_lookup(false);
                Err(Unencoded::NeedsSchema(key))
            }
            Err(DecodeFailure::Rejected(error)) => Err(error.rejection().into()),
        }
    }

    /// Counts a registry schema cache hit or miss.
    fn count_schema_lookup(&self, hit: bool) {
        let counter = if hit {
            &self.schema_hits
        } else {
            &self.schema_misses
        };
        counter
            .get_or_init(|| self.telemetry.schema_lookup_counter(hit))
            .inc();
    }
}

/// Adds the reading `point` is (if it is one) to the batch, and its alert point when its fuel is
/// below a threshold. The record's own line must be the last one added.
fn add_fuel_reading<M: Message>(
    rules: &AlertRules,
    point: &impl MappedPoint,
    message: &M,
    batch: &mut Batch,
) {
    let Some(reading) = rules.reading(point) else {
        return;
    };
    batch.add_reading(&reading);
    let Some(alert) = reading.alert() else {
        return;
    };
    match rules.encode(&alert, batch.line_buffer()) {
        Ok(()) => batch.add_alert(alert.level),
        // Unreachable in practice (see `AlertRules::encode`); the reading itself is written.
        Err(error) => warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            %error,
            "cannot encode the fuel alert point of a record; the record's own point is written"
        ),
    }
}

/// Why a record did not become a line.
enum Unencoded {
    /// It is bad: this is why.
    Rejected(Rejection),
    /// Its schema must be fetched first.
    NeedsSchema(SchemaKey),
}

impl From<Rejection> for Unencoded {
    fn from(rejection: Rejection) -> Self {
        Unencoded::Rejected(rejection)
    }
}
