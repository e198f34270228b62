//! What can go wrong talking to a model.

/// A failed completion. Each message says what happened and, where there is one,
/// what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// No API key for a provider that needs one.
    #[error("no API key for {provider}: set {vars}")]
    NoKey {
        provider: &'static str,
        vars: &'static str,
    },
    /// A setting that cannot be used (unknown provider name, bad URL).
    #[error("{0}")]
    Config(String),
    /// The provider refused the request (4xx other than 429); retrying would not help.
    #[error("{provider} refused the request with HTTP {status}: {body}")]
    Refused {
        provider: &'static str,
        status: u16,
        body: String,
    },
    /// 429 or 5xx on every attempt.
    #[error("{provider} kept failing with HTTP {status} after {attempts} attempts: {body}")]
    Unavailable {
        provider: &'static str,
        status: u16,
        attempts: u32,
        body: String,
    },
    /// The request did not complete within the timeout.
    #[error("{provider} did not answer within {secs} s (set REHEARSE_LLM_TIMEOUT to wait longer)")]
    Timeout { provider: &'static str, secs: u64 },
    /// The server could not be reached at all.
    #[error("cannot reach {provider} at {url}: {reason}")]
    Unreachable {
        provider: &'static str,
        url: String,
        reason: String,
    },
    /// The answer was not the provider's JSON (a proxy's HTML page, a truncated body).
    #[error("{provider} answered with something that is not its JSON format ({reason}); first bytes: {head:?}")]
    BadJson {
        provider: &'static str,
        reason: String,
        head: String,
    },
    /// The model's text was not what the caller asked for (no JSON object, a
    /// missing field, an empty answer).
    #[error("the model's answer is unusable: {reason}; first bytes: {head:?}")]
    Garbage { reason: String, head: String },
}

/// The first characters of a body, for error messages.
pub(crate) fn head(text: &str) -> String {
    text.chars().take(200).collect()
}
