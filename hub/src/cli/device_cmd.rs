//! `drover-hub logs` and `drover-hub restart`: commands that the hub relays to one device.
//!
//! `logs` copies the streamed answer to stdout as it arrives; with `-f` it runs until
//! Ctrl-C, which closes the connection: the hub then cancels the stream on the device.

use std::io::{Read, Write};
use std::time::Duration;

use super::client::escape;
use super::{CliError, Client, ClientError};
use crate::commands::http::RestartAnswer;
use crate::views::ErrorBody;

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

/// Streams the log to `out`. The answer has no overall time limit (`-f` runs for as long
/// as it is read); the hub times out a device that does not answer.
pub fn logs(api: &str, o: &LogsOptions, out: &mut impl Write) -> Result<(), CliError> {
    let url = format!("{}{}", api.trim_end_matches('/'), o.path());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .build()
        .into();
    let unreachable = |e: ureq::Error| ClientError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    };
    let mut resp = agent.get(&url).call().map_err(unreachable)?;
    let status = resp.status();
    let mut body = resp.body_mut().as_reader();
    if !status.is_success() {
        let mut text = String::new();
        let _ = body.take(64 * 1024).read_to_string(&mut text);
        let msg = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", text.trim()));
        return Err(ClientError::Api(msg).into());
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) => {
                return Err(ClientError::Api(format!(
                    "the log stream from {} broke off: {e}",
                    o.device
                ))
                .into());
            }
        };
        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            return Ok(()); // the reader went away (`| head`)
        }
    }
}

/// Asks the device to restart every container of the workload; prints its answer.
pub fn restart(client: &Client, device: &str, workload: &str) -> Result<(), CliError> {
    let path = format!(
        "/v1/devices/{}/restart/{}",
        escape(device),
        escape(workload)
    );
    let answer: RestartAnswer = client.post(&path, &())?;
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
}
