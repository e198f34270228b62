//! One POST with timeout and retries, shared by both wire formats.

use std::time::Duration;

use crate::error::head;
use crate::LlmError;

/// How often and how patiently to retry 429 and 5xx answers.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait between attempts, `retry-after` included.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(1000),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self.backoff.saturating_mul(1 << retry.min(16));
        retry_after.unwrap_or(exponential).min(self.max_wait)
    }
}

/// A body that came back with a 2xx status.
pub(crate) struct Answer {
    pub body: String,
    pub attempts: u32,
}

pub(crate) struct Post<'a> {
    pub provider: &'static str,
    pub client: &'a reqwest::blocking::Client,
    pub url: &'a str,
    pub headers: &'a [(&'static str, String)],
    pub body: &'a serde_json::Value,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

impl Post<'_> {
    pub fn send(&self) -> Result<Answer, LlmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.post(self.url).json(self.body);
            for (name, value) in self.headers {
                request = request.header(*name, value);
            }
            let last = attempt >= self.retry.attempts;
            let response = match request.send() {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    return Err(LlmError::Timeout {
                        provider: self.provider,
                        secs: self.timeout.as_secs(),
                    })
                }
                Err(e) => {
                    // Connection refused or reset: as transient as a 503.
                    if last {
                        return Err(LlmError::Unreachable {
                            provider: self.provider,
                            url: self.url.to_owned(),
                            reason: error_chain(&e),
                        });
                    }
                    let wait = self.retry.wait(attempt - 1, None);
                    tracing::warn!(provider = self.provider, error = %e, ?wait, "retrying");
                    std::thread::sleep(wait);
                    continue;
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|secs| secs.is_finite() && *secs >= 0.0)
                .map(Duration::from_secs_f64);
            let body = match response.text() {
                Ok(body) => body,
                Err(e) if e.is_timeout() => {
                    return Err(LlmError::Timeout {
                        provider: self.provider,
                        secs: self.timeout.as_secs(),
                    })
                }
                Err(e) => {
                    return Err(LlmError::BadJson {
                        provider: self.provider,
                        reason: format!("reading the body: {}", error_chain(&e)),
                        head: String::new(),
                    })
                }
            };
            if status.is_success() {
                return Ok(Answer {
                    body,
                    attempts: attempt,
                });
            }
            let transient = status.as_u16() == 429 || status.is_server_error();
            if !transient {
                return Err(LlmError::Refused {
                    provider: self.provider,
                    status: status.as_u16(),
                    body: head(&body),
                });
            }
            if last {
                return Err(LlmError::Unavailable {
                    provider: self.provider,
                    status: status.as_u16(),
                    attempts: attempt,
                    body: head(&body),
                });
            }
            let wait = self.retry.wait(attempt - 1, retry_after);
            tracing::warn!(
                provider = self.provider,
                status = status.as_u16(),
                ?wait,
                "retrying"
            );
            std::thread::sleep(wait);
        }
    }
}

pub(crate) fn client(timeout: Duration) -> Result<reqwest::blocking::Client, LlmError> {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))
}

/// `base` without a trailing `/` or `/v1`, so both `http://host:11434` and
/// `http://host:11434/v1/` work as base URLs.
pub(crate) fn normalize_base(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    body: &str,
) -> Result<T, LlmError> {
    serde_json::from_str(body).map_err(|e| LlmError::BadJson {
        provider,
        reason: e.to_string(),
        head: head(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_retry_after_wins_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        };
        assert_eq!(p.wait(0, None), Duration::from_millis(100));
        assert_eq!(p.wait(2, None), Duration::from_millis(400));
        assert_eq!(p.wait(5, None), Duration::from_secs(1));
        assert_eq!(
            p.wait(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(normalize_base("http://h:1/v1/"), "http://h:1");
        assert_eq!(
            normalize_base("https://api.anthropic.com"),
            "https://api.anthropic.com"
        );
    }
}
