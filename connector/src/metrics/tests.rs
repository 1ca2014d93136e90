use std::time::Instant;

use rdkafka::Message as _;
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

use super::*;
use crate::reject::Stage;

fn message(topic: &str, partition: i32, offset: i64, timestamp_ms: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"{}".to_vec()),
        None,
        topic.to_owned(),
        Timestamp::CreateTime(timestamp_ms),
        partition,
        offset,
        Some(OwnedHeaders::new()),
    )
}

fn rejection(reason: &'static str) -> Rejection {
    Rejection {
        stage: Stage::Decode,
        reason,
        message: "bad".into(),
    }
}

/// A batch with two points from `t` (partition 0) and one dead letter from `u`.
fn batch() -> Batch {
    let mut batch = Batch::default();
    let now = Instant::now();
    let ten_seconds_ago = (unix_now() * 1000.0) as i64 - 10_000;
    for offset in 0..2 {
        batch.line_buffer().extend_from_slice(b"m f=1 1\n");
        let message = message("t", 0, offset, ten_seconds_ago);
        batch.add_point(&message, message.headers(), now);
    }
    batch.add_dead_letter(
        DeadLetter::from_message(
            &message("u", 3, 7, ten_seconds_ago),
            rejection("InvalidJson"),
        ),
        now,
    );
    batch
}

#[test]
fn a_durable_batch_counts_points_dead_letters_and_latency_by_topic() {
    let telemetry = Telemetry::new();
    telemetry.consumed_counter("t").inc_by(2);
    telemetry.consumed_counter("u").inc_by(1);
    telemetry.partitions_assigned(&[("t".into(), 0), ("u".into(), 3)], 2);
    let batch = batch();
    telemetry.batch_dispatched(&batch);
    telemetry.batch_finished(&batch);
    telemetry.batch_durable(&batch, &[]);
    let text = telemetry.render();
    for expected in [
        "kis_records_consumed_total{topic=\"t\"} 2",
        "kis_points_written_total{topic=\"t\"} 2",
        "kis_records_dead_lettered_total{topic=\"u\",stage=\"decode\",reason=\"InvalidJson\"} 1",
        "kis_batches_written_total 1",
        "kis_batch_records_count 1",
        "kis_batch_bytes_sum 16.0",
        "kis_end_to_end_latency_seconds_count 2",
        "kis_in_flight_bytes 0",
        "kis_assigned_partitions 2",
        "kis_build_info{version=",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Both points were ten seconds old when acknowledged.
    assert!(
        !text.contains("kis_end_to_end_latency_seconds_bucket{le=\"5.0\"} 2"),
        "{text}"
    );
    let status = telemetry.status();
    assert_eq!(status["points_written"], 2);
    let partitions = status["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    assert!(partitions[0]["last_durable_write"].as_f64().is_some());
    let error = partitions[1]["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("offset 7 dead-lettered"), "{status}");
}

#[test]
fn refused_lines_are_not_counted_as_written() {
    let telemetry = Telemetry::new();
    let batch = batch();
    let refused = batch
        .dead_letter_for_line(1, rejection("InfluxDbRejected"))
        .unwrap();
    telemetry.batch_durable(&batch, &[refused]);
    let text = telemetry.render();
    assert!(
        text.contains("kis_points_written_total{topic=\"t\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kis_records_dead_lettered_total{topic=\"t\",stage=\"decode\",reason=\"InfluxDbRejected\"} 1"),
        "{text}"
    );
}

#[test]
fn partition_series_follow_the_assignment() {
    let telemetry = Telemetry::new();
    telemetry.partitions_assigned(&[("t".into(), 0), ("t".into(), 1)], 2);
    telemetry.stored(&[NextOffset {
        topic: "t".into(),
        partition: 1,
        offset: 42,
    }]);
    telemetry.committed(&[("t".into(), 1, 40), ("t".into(), 0, 5)]);
    let text = telemetry.render();
    assert!(
        text.contains("kis_stored_offset{topic=\"t\",partition=\"1\"} 42"),
        "{text}"
    );
    assert!(
        text.contains("kis_committed_offset{topic=\"t\",partition=\"1\"} 40"),
        "{text}"
    );
    telemetry.partitions_revoked(&[("t".into(), 1)]);
    let text = telemetry.render();
    assert!(!text.contains("partition=\"1\""), "{text}");
    assert!(
        text.contains("kis_committed_offset{topic=\"t\",partition=\"0\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("kis_rebalances_total{event=\"revoke\"} 1"),
        "{text}"
    );
    // A store for a partition revoked meanwhile does not bring its series back.
    telemetry.stored(&[NextOffset {
        topic: "t".into(),
        partition: 1,
        offset: 50,
    }]);
    assert!(!telemetry.render().contains("partition=\"1\""));
    telemetry.set_paused(true);
    assert!(telemetry.render().contains("kis_paused_partitions 1"));
    assert_eq!(telemetry.status()["partitions"][0]["paused"], true);
    telemetry.set_paused(false);
    assert!(telemetry.render().contains("kis_paused_partitions 0"));
}

#[test]
fn write_responses_and_retries_by_class_and_cause() {
    let telemetry = Telemetry::new();
    telemetry.partitions_assigned(&[("t".into(), 0)], 1);
    let batch = batch();
    telemetry.batch_dispatched(&batch);
    // The write path counts the batch as in flight for its partitions.
    telemetry
        .partitions_in_flight()
        .started(batch.next_offsets());
    telemetry.write_attempted(Duration::from_millis(3), WriteResponse::Status(204));
    telemetry.write_attempted(Duration::from_millis(3), WriteResponse::Status(503));
    telemetry.write_attempted(Duration::from_secs(10), WriteResponse::Failed("timeout"));
    telemetry.write_retried("unavailable", "HTTP 503: down for maintenance");
    let text = telemetry.render();
    for expected in [
        "kis_influxdb_responses_total{class=\"2xx\",code=\"204\"} 1",
        "kis_influxdb_responses_total{class=\"5xx\",code=\"503\"} 1",
        "kis_influxdb_responses_total{class=\"error\",code=\"timeout\"} 1",
        "kis_write_retries_total{cause=\"unavailable\"} 1",
        "kis_write_duration_seconds_count 3",
        "kis_in_flight_bytes 16",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // The partition waiting on the failing InfluxDB shows the failure in /status.
    let status = telemetry.status();
    assert_eq!(
        status["partitions"][0]["last_error"]["message"],
        "HTTP 503: down for maintenance"
    );
    assert_eq!(
        status["influxdb_last_error"]["message"],
        "HTTP 503: down for maintenance"
    );
    telemetry.write_recovered();
    assert!(telemetry.status()["influxdb_last_error"].is_null());
}

#[test]
fn readiness_needs_a_join_and_an_accepting_influxdb_and_registry() {
    let telemetry = Telemetry::new();
    assert!(telemetry.readiness().unwrap_err().contains("not joined"));
    assert!(telemetry.render().contains("kis_ready 0"));
    telemetry.set_joined();
    assert!(telemetry.readiness().is_ok());
    assert!(telemetry.render().contains("kis_ready 1"));
    telemetry.set_influx_refusal(Some("HTTP 401 Unauthorized".into()));
    assert!(telemetry.readiness().unwrap_err().contains("401"));
    assert_eq!(telemetry.status()["ready"], false);
    telemetry.set_influx_refusal(None);
    assert!(telemetry.readiness().is_ok());
    telemetry.set_registry_refusal(Some("HTTP 403 Forbidden".into()));
    assert!(
        telemetry
            .readiness()
            .unwrap_err()
            .contains("Schema Registry")
    );
    telemetry.set_registry_refusal(None);
    assert!(telemetry.readiness().is_ok());
}

#[test]
fn prometheus_text_names_counters_by_their_samples() {
    let telemetry = Telemetry::new();
    telemetry.consumed_counter("t").inc_by(3);
    let text = telemetry.render_prometheus_text();
    assert!(
        text.contains("# TYPE kis_records_consumed_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP kis_records_consumed_total Records read"),
        "{text}"
    );
    assert!(
        text.contains("kis_records_consumed_total{topic=\"t\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kis_write_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    assert!(telemetry.render().ends_with("# EOF\n"));
}
