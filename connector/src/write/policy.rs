//! The InfluxDB response policy: one HTTP response becomes a [`Disposition`].
//!
//! | response | disposition | what the sink does |
//! |---|---|---|
//! | 2xx | `Written` | the lines are durable |
//! | 400, 422 | `Rejected` | some or all lines refused (syntax, field-type conflict, outside retention): the rejected lines are isolated and dead-lettered, the rest rewritten |
//! | 413 | `TooLarge` | the request is split in halves and retried; a single line that is still too large is dead-lettered |
//! | 429, 503 | `Retry` | wait for `Retry-After` (seconds or HTTP date), else back off |
//! | other 5xx | `Retry` | exponential backoff with jitter, no limit |
//! | no answer: timeout, connection refused/reset | `Unreachable` | exponential backoff with jitter, no limit |
//! | no answer: TLS (untrusted certificate, wrong host name) | `Unreachable` | as `Misconfigured`: unready, retried until fixed, nothing committed |
//! | 401, 403, 404, other 4xx | `Misconfigured` | not a record problem (token, database, bucket): unready, retried until fixed, nothing committed |

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::reject::truncate_message;
use crate::tls::TransportFailure;

/// What to do after one write attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The points are durable.
    Written,
    /// Transient failure; retry, after `after` when the server said so.
    Retry {
        /// Metric label and log text: `throttled`, `unavailable`, `server_error`.
        cause: &'static str,
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
    /// InfluxDB refused some or all lines of the request.
    Rejected {
        /// InfluxDB's error message.
        message: String,
        /// Rejected lines (0-based within the request) with their own messages, when the body
        /// says which; empty when it does not (InfluxDB 1.x), and the lines must be isolated.
        lines: Vec<(usize, String)>,
    },
    /// The request body is larger than InfluxDB accepts.
    TooLarge {
        /// InfluxDB's error message.
        message: String,
    },
    /// The sink's configuration or InfluxDB's setup is wrong; no record is at fault.
    Misconfigured {
        /// What InfluxDB said.
        message: String,
    },
    /// No HTTP answer at all; a TLS failure needs the operator, the rest is transient.
    Unreachable(TransportFailure),
}

/// Longest `Retry-After` honoured; a server asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Classifies one HTTP response (see the module table).
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> Disposition {
    let message = || format!("HTTP {status}: {}", error_message(body));
    match status.as_u16() {
        200..=299 => Disposition::Written,
        429 | 503 => Disposition::Retry {
            cause: if status == StatusCode::TOO_MANY_REQUESTS {
                "throttled"
            } else {
                "unavailable"
            },
            after: retry_after(headers, now),
        },
        500..=599 => Disposition::Retry {
            cause: "server_error",
            after: None,
        },
        400 | 422 => Disposition::Rejected {
            message: message(),
            lines: rejected_lines(body),
        },
        413 => Disposition::TooLarge { message: message() },
        _ => Disposition::Misconfigured { message: message() },
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The human message of an InfluxDB error body (`{"error": …}` in 1.x and 3.x,
/// `{"message": …}` in 2.x), falling back to the raw body.
pub fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|json| {
        json.get("error")
            .or_else(|| json.get("message"))
            .and_then(|message| message.as_str())
    });
    let text = message.unwrap_or(body).trim();
    truncate_message(if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_owned()
    })
}

/// The rejected lines a 400/422 body names, 0-based, with their messages. Understands
/// InfluxDB 3's `{"data": [{"line_number": N, "error_message": …}]}` and the
/// `error parsing line N (1-based): …` text of 2.x and Cloud. Anything else yields nothing, and
/// the caller isolates the rejected lines by splitting the request.
pub fn rejected_lines(body: &str) -> Vec<(usize, String)> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return lines_from_text(body);
    };
    if let Some(entries) = json.get("data").and_then(|data| data.as_array()) {
        let lines: Vec<(usize, String)> = entries
            .iter()
            .filter_map(|entry| {
                let number = entry.get("line_number")?.as_u64()?;
                let message = entry
                    .get("error_message")
                    .and_then(|message| message.as_str())
                    .unwrap_or("rejected by InfluxDB");
                Some((
                    usize::try_from(number).ok()?.checked_sub(1)?,
                    truncate_message(message.to_owned()),
                ))
            })
            .collect();
        // All or nothing: a half-understood body must not decide which records are bad.
        return if lines.len() == entries.len() {
            lines
        } else {
            Vec::new()
        };
    }
    json.get("message")
        .and_then(|message| message.as_str())
        .map(lines_from_text)
        .unwrap_or_default()
}

/// `error parsing line N (1-based): reason`, one per line of text.
fn lines_from_text(text: &str) -> Vec<(usize, String)> {
    const PREFIX: &str = "error parsing line ";
    const SUFFIX: &str = " (1-based):";
    text.lines()
        .filter_map(|line| {
            let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
            let (number, reason) = rest.split_once(SUFFIX)?;
            let index = number.trim().parse::<usize>().ok()?.checked_sub(1)?;
            Some((index, truncate_message(reason.trim().to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn response_policy_table() {
        let cases: Vec<(u16, Option<&str>, &str, Disposition)> = vec![
            (204, None, "", Disposition::Written),
            (200, None, "", Disposition::Written),
            (429, Some("7"), "", Disposition::Retry { cause: "throttled", after: Some(Duration::from_secs(7)) }),
            (503, None, "", Disposition::Retry { cause: "unavailable", after: None }),
            (
                503,
                Some("Tue, 14 Nov 2023 22:13:30 GMT"),
                "",
                Disposition::Retry { cause: "unavailable", after: Some(Duration::from_secs(10)) },
            ),
            (500, None, "", Disposition::Retry { cause: "server_error", after: None }),
            (502, None, "", Disposition::Retry { cause: "server_error", after: None }),
            (
                400,
                None,
                r#"{"error":"partial write: field type conflict: input field \"fuel\" on measurement \"generator\" is type integer, already exists as type float dropped=1"}"#,
                Disposition::Rejected {
                    message: "HTTP 400 Bad Request: partial write: field type conflict: input field \"fuel\" on measurement \"generator\" is type integer, already exists as type float dropped=1".into(),
                    lines: vec![],
                },
            ),
            (
                422,
                None,
                r#"{"code":"unprocessable entity","message":"points beyond retention policy"}"#,
                Disposition::Rejected {
                    message: "HTTP 422 Unprocessable Entity: points beyond retention policy".into(),
                    lines: vec![],
                },
            ),
            (413, None, "request too large", Disposition::TooLarge { message: "HTTP 413 Payload Too Large: request too large".into() }),
            (
                401,
                None,
                r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                Disposition::Misconfigured { message: "HTTP 401 Unauthorized: unauthorized access".into() },
            ),
            (403, None, "", Disposition::Misconfigured { message: "HTTP 403 Forbidden: (empty body)".into() }),
            (
                404,
                None,
                r#"{"error":"database not found: \"x\""}"#,
                Disposition::Misconfigured { message: "HTTP 404 Not Found: database not found: \"x\"".into() },
            ),
        ];
        for (status, retry, body, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify(status, &headers(retry), body, now()),
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_and_past_dates_mean_now() {
        assert_eq!(
            retry_after(&headers(Some("999999")), now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&headers(Some("Thu, 01 Jan 1970 00:00:00 GMT")), now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(Some("soon")), now()), None);
        assert_eq!(retry_after(&headers(None), now()), None);
    }

    #[test]
    fn rejected_lines_from_influxdb3_json() {
        let body = r#"{"error":"partial write of line protocol occurred","data":[
            {"original_line":"bad","line_number":2,"error_message":"No fields were provided"},
            {"original_line":"worse","line_number":5,"error_message":"invalid column type for column 'fuel'"}]}"#;
        assert_eq!(
            rejected_lines(body),
            vec![
                (1, "No fields were provided".into()),
                (4, "invalid column type for column 'fuel'".into())
            ]
        );
        // Entries without line numbers: trust none of them.
        assert!(rejected_lines(r#"{"data":[{"line_number":1},{"original_line":"x"}]}"#).is_empty());
        assert!(rejected_lines(r#"{"data":[{"line_number":0}]}"#).is_empty());
    }

    #[test]
    fn rejected_lines_from_v2_text() {
        let body = r#"{"code":"invalid","line":2,"message":"failed to parse line protocol:\n  errors encountered on line(s):\n  error parsing line 2 (1-based): Invalid measurement was provided\n  error parsing line 4 (1-based): Unable to parse timestamp value '123461000000000000000000000000'"}"#;
        assert_eq!(
            rejected_lines(body),
            vec![
                (1, "Invalid measurement was provided".into()),
                (
                    3,
                    "Unable to parse timestamp value '123461000000000000000000000000'".into()
                )
            ]
        );
    }

    #[test]
    fn no_line_numbers_means_isolate() {
        assert!(
            rejected_lines(r#"{"error":"partial write: field type conflict dropped=1"}"#)
                .is_empty()
        );
        assert!(rejected_lines("unable to parse 'x': missing fields").is_empty());
        assert!(rejected_lines("").is_empty());
    }
}
