//! `drover-hub logs` and `drover-hub restart`: commands that the hub relays to one device.
//!
//! `logs` copies the streamed answer to stdout as it arrives; with `-f` it runs until
//! Ctrl-C, which closes the connection: the hub then cancels the stream on the device.
//! A stream the hub ends with an error (the device went offline, stopped answering)
//! exits 1 with the hub's reason; an answer of kind `bad_request` exits 2 (usage), any
//! other error 1 (see [`exit_code`]). Output cut at `--limit-bytes` (the device sends at
//! most that, then ends a follow) is success, with a note on stderr saying so. Notes and
//! errors always start on a line of their own, also after output that ended mid-line.

use std::io::{Read, Write};
use std::time::Duration;

use super::client::escape;
use super::{CliError, Client, ClientError};
use crate::commands::http::{
    CommandErrorBody, DEFAULT_LIMIT_BYTES, ErrorKind, FAILURE_MARK, RestartAnswer,
};

pub use crate::commands::query::limit_bytes as parse_limit_bytes;

/// How long the hub may take to start its answer: it gives the device
/// `commands::http::ANSWER_TIMEOUT` and answers by itself after that.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `drover-hub logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub device: String,
    pub workload: String,
    pub container: Option<String>,
    pub follow: bool,
    pub tail: Option<u32>,
    /// As typed (`10m`); the hub parses it.
    pub since: Option<String>,
    pub limit_bytes: Option<u32>,
}

impl LogsOptions {
    /// The API path with its query.
    pub fn path(&self) -> String {
        let mut q = vec![format!("follow={}", self.follow)];
        if let Some(c) = &self.container {
            q.push(format!("container={}", escape(c)));
        }
        if let Some(n) = self.tail {
            q.push(format!("tail={n}"));
        }
        if let Some(s) = &self.since {
            q.push(format!("since={}", escape(s)));
        }
        if let Some(b) = self.limit_bytes {
            q.push(format!("limit_bytes={b}"));
        }
        format!(
            "/v1/devices/{}/logs/{}?{}",
            escape(&self.device),
            escape(&self.workload),
            q.join("&")
        )
    }
}

/// The exit status of a failed `logs` or `restart`: 2 when the hub found the request
/// itself wrong (as for a usage error), else 1.
pub fn exit_code(e: &CliError) -> u8 {
    match e {
        CliError::Usage(_) => 2,
        _ => 1,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .build()
        .into()
}

/// The error of an answer with a failed status: its `{"error", "kind"}` body.
fn failed(status: ureq::http::StatusCode, body: &mut ureq::Body) -> CliError {
    let mut text = String::new();
    let _ = body.as_reader().take(64 * 1024).read_to_string(&mut text);
    match serde_json::from_str::<CommandErrorBody>(&text) {
        Ok(b) if b.kind == Some(ErrorKind::BadRequest) => CliError::Usage(b.error),
        Ok(b) => ClientError::Api(b.error).into(),
        Err(_) => ClientError::Api(format!("HTTP {status}: {}", text.trim())).into(),
    }
}

/// Streams the log to `out`; notes (output cut at the limit) go to `notes` (stderr).
/// The answer has no overall time limit (`-f` runs for as long as it is read); the hub
/// times out a device that does not answer and ends the stream of one that goes offline.
/// Before an error is returned, `notes` gets a newline if the output ended mid-line.
pub fn logs(
    client: &Client,
    o: &LogsOptions,
    out: &mut impl Write,
    notes: &mut impl Write,
) -> Result<(), CliError> {
    let url = format!("{}{}", client.base(), o.path());
    let unreachable = |e: ureq::Error| ClientError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    };
    let mut resp = client
        .authorize(agent().get(&url))
        .call()
        .map_err(unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(failed(status, resp.body_mut()));
    }
    let mut relay = Relay::default();
    let end = relay.copy(resp.body_mut().as_reader(), out);
    let limit = o.limit_bytes;
    let note = match end {
        // A reader gone away (`| head`) is no error, and needs no note.
        Ok(End::ReaderGone) => return Ok(()),
        Ok(End::Complete) => relay.cut(limit).then(|| limited_note(limit)),
        Err(_) if relay.cut(limit) => Some(stopped_note(limit, relay.lines)),
        Err(why) => {
            let why = why.unwrap_or_else(|| format!("the log stream from {} broke off", o.device));
            relay.end_line(notes);
            let lines = relay.lines;
            return Err(ClientError::Api(format!("{why}; {lines} lines received")).into());
        }
    };
    if let Some(note) = note {
        relay.end_line(notes);
        let _ = writeln!(notes, "drover-hub: {note}");
    }
    Ok(())
}

/// The note for a log cut at the limit (the newest bytes were sent).
fn limited_note(limit: Option<u32>) -> String {
    match limit {
        Some(b) => {
            format!("output limited to {b} bytes (--limit-bytes); the first line may be partial")
        }
        None => format!(
            "output limited to {DEFAULT_LIMIT_BYTES} bytes (the default; raise it with --limit-bytes); the first line may be partial"
        ),
    }
}

/// The note for a follow that stopped at the limit.
fn stopped_note(limit: Option<u32>, lines: u64) -> String {
    match limit {
        Some(b) => format!("stopped at --limit-bytes {b} ({lines} lines)"),
        None => format!(
            "stopped at the default limit of {DEFAULT_LIMIT_BYTES} bytes ({lines} lines); raise it with --limit-bytes"
        ),
    }
}

/// How a log body ended, when it did not break off.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Complete,
    /// The output could not be written (the reader went away).
    ReaderGone,
}

/// Copies a log body to its output, holding back what may be the hub's failure line
/// ([`FAILURE_MARK`]) until the end of the body says whether it was: a line like it that
/// more output follows, or that ends a complete body, was the container's.
#[derive(Default)]
struct Relay {
    held: Vec<u8>,
    /// Lines written out.
    lines: u64,
    /// Bytes written out.
    bytes: u64,
    /// The last byte written out.
    last: Option<u8>,
}

impl Relay {
    /// Copies `body` to `out` until it ends; `Err` when it broke off, with the hub's
    /// reason if its failure line came.
    fn copy(&mut self, mut body: impl Read, out: &mut impl Write) -> Result<End, Option<String>> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => {
                    let _ = self.finish(out); // a reader gone away now needs no note
                    return Ok(End::Complete);
                }
                Ok(n) => n,
                Err(_) => return Err(self.failure(out)),
            };
            if self.push(&buf[..n], out).is_err() {
                return Ok(End::ReaderGone);
            }
        }
    }

    /// True when the output written reached the limit (given, or the hub's default):
    /// the device sent no more than that, so the log was cut there.
    fn cut(&self, limit: Option<u32>) -> bool {
        self.bytes >= u64::from(limit.unwrap_or(DEFAULT_LIMIT_BYTES))
    }

    /// Starts a new line on `notes` when the output ended mid-line, so that what follows
    /// there is on a line of its own (where both go to one terminal).
    fn end_line(&self, notes: &mut impl Write) {
        if self.last.is_some_and(|b| b != b'\n') {
            let _ = writeln!(notes);
        }
    }

    fn push(&mut self, data: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        self.held.extend_from_slice(data);
        let n = surely_output(&self.held);
        let rest = self.held.split_off(n);
        let done = std::mem::replace(&mut self.held, rest);
        self.write(&done, out)
    }

    /// The body ended completely: everything held was output.
    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.write(&held, out)
    }

    /// The body broke off: the hub's reason, if its failure line came.
    fn failure(&mut self, out: &mut impl Write) -> Option<String> {
        let held = std::mem::take(&mut self.held);
        let line = held
            .strip_prefix(FAILURE_MARK.as_bytes())
            .and_then(|l| l.strip_suffix(b"\n"));
        match line {
            Some(why) => Some(String::from_utf8_lossy(why).into_owned()),
            None => {
                let _ = self.write(&held, out);
                None
            }
        }
    }

    fn write(&mut self, bytes: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        self.bytes += bytes.len() as u64;
        self.last = bytes.last().copied();
        out.write_all(bytes)?;
        out.flush()
    }
}

/// How many leading bytes of `held` are output whatever comes next: all but a last line
/// that starts with [`FAILURE_MARK`] (or the start of it).
fn surely_output(held: &[u8]) -> usize {
    let mark = FAILURE_MARK.as_bytes();
    let mut from = 0;
    loop {
        let Some(i) = held[from..]
            .windows(mark.len())
            .position(|w| w == mark)
            .map(|i| from + i)
        else {
            let tail = &held[from..];
            let partial = (1..mark.len().min(tail.len() + 1))
                .rev()
                .find(|&k| tail.ends_with(&mark[..k]))
                .unwrap_or(0);
            return held.len() - partial;
        };
        let after = i + mark.len();
        match held[after..].iter().position(|&b| b == b'\n') {
            // A whole such line with more after it: the container's; look on from its end.
            Some(j) if after + j + 1 < held.len() => from = after + j,
            _ => return i,
        }
    }
}

/// Asks the device to restart every container of the workload; prints its answer.
pub fn restart(client: &Client, device: &str, workload: &str) -> Result<(), CliError> {
    let url = format!(
        "{}/v1/devices/{}/restart/{}",
        client.base(),
        escape(device),
        escape(workload)
    );
    let unreachable = |e: ureq::Error| ClientError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    };
    let mut resp = client
        .authorize(agent().post(&url))
        .send_empty()
        .map_err(unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(failed(status, resp.body_mut()));
    }
    let answer: RestartAnswer =
        resp.body_mut()
            .read_json()
            .map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                message: e.to_string(),
            })?;
    println!("{}", answer.message);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_carries_only_what_was_given() {
        let o = LogsOptions {
            device: "pi-1".into(),
            workload: "web".into(),
            follow: true,
            tail: Some(3),
            since: Some("10m".into()),
            ..Default::default()
        };
        assert_eq!(
            o.path(),
            "/v1/devices/pi-1/logs/web?follow=true&tail=3&since=10m"
        );
    }

    /// Feeds `parts` through a relay; the output and the failure (when the body broke
    /// off after them).
    fn relay(parts: &[&str], broke: bool) -> (String, Option<String>) {
        let mut r = Relay::default();
        let mut out = Vec::new();
        for p in parts {
            r.push(p.as_bytes(), &mut out).unwrap();
        }
        let why = if broke {
            r.failure(&mut out)
        } else {
            r.finish(&mut out).unwrap();
            None
        };
        (String::from_utf8(out).unwrap(), why)
    }

    #[test]
    fn the_hubs_failure_line_becomes_the_error_even_split_across_reads() {
        let (out, why) = relay(
            &["a\nb\n\n--- drover", "-hub: device x went off", "line\n"],
            true,
        );
        assert_eq!(out, "a\nb\n");
        assert_eq!(why.as_deref(), Some("device x went offline"));
        let (out, why) = relay(&["a\n", FAILURE_MARK, "gone\n"], true);
        assert_eq!((out.as_str(), why.as_deref()), ("a\n", Some("gone")));
        // Broken off without the hub's line: the output is all there, no reason.
        let (out, why) = relay(&["a\nb"], true);
        assert_eq!((out.as_str(), why), ("a\nb", None));
    }

    #[test]
    fn a_container_line_that_looks_like_it_is_output() {
        let fake = format!("x{FAILURE_MARK}not really\nmore\n");
        let (out, why) = relay(&[&fake], false);
        assert_eq!((out, why), (fake.clone(), None));
        // At the very end of a complete body too.
        let fake = format!("x{FAILURE_MARK}the end\n");
        let (out, _) = relay(&[&fake[..5], &fake[5..]], false);
        assert_eq!(out, fake);
    }

    #[test]
    fn lines_written_are_counted_and_a_bad_request_is_a_usage_error() {
        let mut r = Relay::default();
        let mut out = Vec::new();
        r.push(b"1\n2\n3", &mut out).unwrap();
        r.push(format!("\n{FAILURE_MARK}why\n").as_bytes(), &mut out)
            .unwrap();
        assert_eq!(r.failure(&mut out).as_deref(), Some("why"));
        assert_eq!(r.lines, 3);
        assert_eq!(exit_code(&CliError::Usage("x".into())), 2);
        assert_eq!(exit_code(&ClientError::Api("x".into()).into()), 1);
    }

    /// A body that breaks off after `data`.
    struct BrokenAfter<'a>(&'a [u8]);

    impl Read for BrokenAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_follow_that_reached_the_limit_is_cut_and_its_note_starts_a_line() {
        let body = format!("1\n2\n3\n4\nli{FAILURE_MARK}follow ended after 10 bytes\n");
        let mut r = Relay::default();
        let mut out = Vec::new();
        let why = r.copy(BrokenAfter(body.as_bytes()), &mut out).unwrap_err();
        assert_eq!(why.as_deref(), Some("follow ended after 10 bytes"));
        assert_eq!(out, b"1\n2\n3\n4\nli");
        assert!(r.cut(Some(10)) && !r.cut(Some(11)) && !r.cut(None));
        let mut notes = Vec::new();
        r.end_line(&mut notes);
        assert_eq!(notes, b"\n");
        assert_eq!(
            stopped_note(Some(10), r.lines),
            "stopped at --limit-bytes 10 (4 lines)"
        );
        // Output that ended with a newline needs none.
        let mut r = Relay::default();
        r.copy(&b"a\n"[..], &mut Vec::new()).unwrap();
        let mut notes = Vec::new();
        r.end_line(&mut notes);
        assert!(notes.is_empty());
        assert!(r.cut(Some(2)));
        assert!(limited_note(Some(2)).contains("limited to 2 bytes (--limit-bytes)"));
        assert!(limited_note(None).contains(&DEFAULT_LIMIT_BYTES.to_string()));
    }
}
