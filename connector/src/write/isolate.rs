//! Isolating the lines InfluxDB rejects, so every other line of the batch is written.
//!
//! When a request is refused (400/422) the algorithm trusts line numbers the response gives and
//! rewrites the lines between them; without line numbers (InfluxDB 1.x) it splits the request in
//! halves until each refused line stands alone. A 413 splits the same way. Lines that were not
//! rejected are always rewritten until a 2xx covers them: InfluxDB overwrites identical points,
//! so a rewrite of a line that a partial write already stored is harmless, and no line is
//! assumed durable without an acknowledgement.

use std::ops::Range;

use super::WriteError;

/// The outcome of one request, as isolation sees it (transient failures are retried below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Written,
    /// 400/422, with the rejected lines (0-based within the request) when the body names them.
    Rejected {
        /// InfluxDB's message.
        message: String,
        /// Named lines and their messages.
        lines: Vec<(usize, String)>,
    },
    /// 413.
    TooLarge {
        /// InfluxDB's message.
        message: String,
    },
}

/// A line InfluxDB refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// Index of the line in the batch.
    pub index: usize,
    /// InfluxDB's explanation.
    pub message: String,
    /// Refused because it alone exceeds the request size limit.
    pub too_large: bool,
}

/// Sends one request body, retrying transient failures itself.
pub(crate) trait Sender {
    /// Sends `body` (newline-terminated line protocol).
    async fn send(&self, body: &[u8]) -> Result<Verdict, WriteError>;
}

/// Writes the lines of `lines` (line `i` ends at byte `line_ends[i]`), returning the lines
/// InfluxDB refused. Every other line has been acknowledged when this returns `Ok`.
pub(crate) async fn write_isolating<S: Sender>(
    sender: &S,
    lines: &[u8],
    line_ends: &[usize],
) -> Result<Vec<RejectedLine>, WriteError> {
    let mut rejected = Vec::new();
    let mut pending: Vec<Range<usize>> = Vec::new();
    if !line_ends.is_empty() {
        pending.push(0..line_ends.len());
    }
    while let Some(range) = pending.pop() {
        let start = if range.start == 0 {
            0
        } else {
            line_ends[range.start - 1]
        };
        let body = &lines[start..line_ends[range.end - 1]];
        match sender.send(body).await? {
            Verdict::Written => {}
            Verdict::TooLarge { message } if range.len() == 1 => rejected.push(RejectedLine {
                index: range.start,
                message,
                too_large: true,
            }),
            Verdict::Rejected { message, .. } if range.len() == 1 => rejected.push(RejectedLine {
                index: range.start,
                message,
                too_large: false,
            }),
            Verdict::Rejected { lines: named, .. }
                if !named.is_empty() && named.iter().all(|(line, _)| *line < range.len()) =>
            {
                let mut named = named;
                named.sort_by_key(|(line, _)| *line);
                named.dedup_by_key(|(line, _)| *line);
                let mut gap_start = range.start;
                for (line, message) in named {
                    let index = range.start + line;
                    rejected.push(RejectedLine {
                        index,
                        message,
                        too_large: false,
                    });
                    if gap_start < index {
                        pending.push(gap_start..index);
                    }
                    gap_start = index + 1;
                }
                if gap_start < range.end {
                    pending.push(gap_start..range.end);
                }
            }
            Verdict::Rejected { .. } | Verdict::TooLarge { .. } => {
                let middle = range.start + range.len() / 2;
                // Right half pushed first so the left half is written first.
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
        }
    }
    rejected.sort_by_key(|line| line.index);
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    /// A fake InfluxDB: refuses any request containing a bad line (like 1.x, without line
    /// numbers, or like 3.x, naming them), and any request over `max_lines` lines with 413.
    struct FakeInflux {
        bad: BTreeSet<String>,
        name_lines: bool,
        max_lines: usize,
        written: RefCell<Vec<String>>,
        requests: RefCell<usize>,
    }

    impl FakeInflux {
        fn new(bad: &[&str], name_lines: bool, max_lines: usize) -> Self {
            Self {
                bad: bad.iter().map(|line| line.to_string()).collect(),
                name_lines,
                max_lines,
                written: RefCell::new(Vec::new()),
                requests: RefCell::new(0),
            }
        }
    }

    impl Sender for FakeInflux {
        async fn send(&self, body: &[u8]) -> Result<Verdict, WriteError> {
            *self.requests.borrow_mut() += 1;
            let text = std::str::from_utf8(body).unwrap();
            let request: Vec<&str> = text.lines().collect();
            if request.len() > self.max_lines {
                return Ok(Verdict::TooLarge {
                    message: "too large".into(),
                });
            }
            let bad: Vec<(usize, String)> = request
                .iter()
                .enumerate()
                .filter(|(_, line)| self.bad.contains(**line))
                .map(|(index, line)| (index, format!("bad line {line}")))
                .collect();
            // Partial write: the good lines of the request are stored either way.
            self.written.borrow_mut().extend(
                request
                    .iter()
                    .filter(|line| !self.bad.contains(**line))
                    .map(|line| line.to_string()),
            );
            if bad.is_empty() {
                Ok(Verdict::Written)
            } else {
                Ok(Verdict::Rejected {
                    message: format!("{} bad", bad.len()),
                    lines: if self.name_lines { bad } else { Vec::new() },
                })
            }
        }
    }

    fn batch(count: usize) -> (Vec<u8>, Vec<usize>, Vec<String>) {
        let mut lines = Vec::new();
        let mut ends = Vec::new();
        let mut texts = Vec::new();
        for index in 0..count {
            let text = format!("m v={index} {index}");
            lines.extend_from_slice(text.as_bytes());
            lines.push(b'\n');
            ends.push(lines.len());
            texts.push(text);
        }
        (lines, ends, texts)
    }

    fn run<S: Sender>(sender: &S, lines: &[u8], ends: &[usize]) -> Vec<RejectedLine> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(write_isolating(sender, lines, ends))
            .unwrap()
    }

    #[test]
    fn isolates_bad_lines_by_splitting_and_writes_every_other_line() {
        let (lines, ends, texts) = batch(100);
        for name_lines in [false, true] {
            let influx = FakeInflux::new(
                &[&texts[0], &texts[37], &texts[38], &texts[99]],
                name_lines,
                1000,
            );
            let rejected = run(&influx, &lines, &ends);
            let indexes: Vec<usize> = rejected.iter().map(|line| line.index).collect();
            assert_eq!(indexes, vec![0, 37, 38, 99], "name_lines={name_lines}");
            assert!(
                rejected
                    .iter()
                    .all(|line| !line.too_large && !line.message.is_empty())
            );
            let written: BTreeSet<String> = influx.written.borrow().iter().cloned().collect();
            let expected: BTreeSet<String> = texts
                .iter()
                .enumerate()
                .filter(|(i, _)| ![0, 37, 38, 99].contains(i))
                .map(|(_, t)| t.clone())
                .collect();
            assert_eq!(written, expected);
            if name_lines {
                // One request for the batch, then the two gaps between the named lines.
                assert_eq!(*influx.requests.borrow(), 3);
            }
        }
    }

    #[test]
    fn named_line_messages_are_kept() {
        let (lines, ends, texts) = batch(5);
        let influx = FakeInflux::new(&[&texts[2]], true, 1000);
        assert_eq!(
            run(&influx, &lines, &ends),
            vec![RejectedLine {
                index: 2,
                message: format!("bad line {}", texts[2]),
                too_large: false
            }]
        );
    }

    #[test]
    fn too_large_requests_are_split_until_they_fit() {
        let (lines, ends, texts) = batch(50);
        let influx = FakeInflux::new(&[], false, 7);
        assert!(run(&influx, &lines, &ends).is_empty());
        assert_eq!(influx.written.borrow().len(), 50);
        assert_eq!(*influx.written.borrow(), texts);
        // A single line over the limit is rejected as too large.
        let influx = FakeInflux::new(&[], false, 0);
        let rejected = run(&influx, &lines[..ends[0]], &ends[..1]);
        assert_eq!(
            rejected,
            vec![RejectedLine {
                index: 0,
                message: "too large".into(),
                too_large: true
            }]
        );
    }

    #[test]
    fn all_good_is_one_request_and_empty_is_none() {
        let (lines, ends, _) = batch(10);
        let influx = FakeInflux::new(&[], false, 1000);
        assert!(run(&influx, &lines, &ends).is_empty());
        assert_eq!(*influx.requests.borrow(), 1);
        assert!(run(&influx, &[], &[]).is_empty());
        assert_eq!(*influx.requests.borrow(), 1);
    }

    #[test]
    fn a_wrong_line_number_falls_back_to_splitting() {
        struct Liar;
        impl Sender for Liar {
            async fn send(&self, body: &[u8]) -> Result<Verdict, WriteError> {
                let count = body.iter().filter(|byte| **byte == b'\n').count();
                if count == 1 && body.starts_with(b"m v=3 ") {
                    return Ok(Verdict::Rejected {
                        message: "bad".into(),
                        lines: vec![],
                    });
                }
                if body.windows(6).any(|w| w == b"m v=3 ") {
                    // Names a line beyond the request: must not be trusted.
                    return Ok(Verdict::Rejected {
                        message: "bad".into(),
                        lines: vec![(count + 5, "?".into())],
                    });
                }
                Ok(Verdict::Written)
            }
        }
        let (lines, ends, _) = batch(8);
        let indexes: Vec<usize> = run(&Liar, &lines, &ends)
            .iter()
            .map(|line| line.index)
            .collect();
        assert_eq!(indexes, vec![3]);
    }
}
