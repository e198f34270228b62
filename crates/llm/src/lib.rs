//! Language-model providers behind one trait.
//!
//! [`Provider::complete`] sends one [`Request`] (a system prompt, the
//! conversation, a token cap, optionally "answer in JSON") and returns the text
//! with its token use, latency and — when the model's price is known — cost.
//! Two wire formats cover the field: Anthropic's Messages API and the
//! OpenAI-compatible Chat Completions API (OpenAI, Ollama, vLLM, llama.cpp
//! server, LM Studio, OpenRouter). [`Settings`] reads which one to use from the
//! environment and command-line flags.
//!
//! Requests have a timeout; 429 and 5xx answers are retried with exponential
//! backoff (honouring `retry-after`), other 4xx answers are not.

mod anthropic;
mod error;
mod http;
mod json;
mod openai;
mod pricing;
mod settings;

#[cfg(feature = "fake")]
pub mod fake;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use anthropic::Anthropic;
pub use error::LlmError;
pub use http::RetryPolicy;
pub use json::extract_json;
pub use openai::OpenAi;
pub use pricing::price_per_mtok;
pub use settings::{connect, ProviderKind, Settings};

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One completion request.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    /// Ask for one JSON object as the answer (native JSON mode where the API has
    /// one, an instruction in the system prompt otherwise).
    pub json: bool,
}

/// Tokens a completion consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// A completion.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub text: String,
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// Wall time of the whole call, retries included.
    pub latency_ms: u64,
    /// How many HTTP attempts the call took (1 without retries).
    pub attempts: u32,
    /// In US dollars, when the model's price is known.
    pub cost_usd: Option<f64>,
}

impl Response {
    /// The response of a finished call, with its usage priced. `model` is the
    /// provider's name for it, or the one asked for.
    pub(crate) fn finish(
        text: String,
        usage: Usage,
        model: String,
        started: std::time::Instant,
        attempts: u32,
    ) -> Response {
        Response {
            cost_usd: crate::pricing::cost(&model, usage),
            text,
            usage,
            model,
            latency_ms: started.elapsed().as_millis() as u64,
            attempts,
        }
    }
}

/// A language model that completes conversations.
pub trait Provider: Send + Sync {
    /// `anthropic` or `openai`.
    fn name(&self) -> &'static str;
    /// The model requests go to.
    fn model(&self) -> &str;
    fn complete(&self, request: &Request) -> Result<Response, LlmError>;
}

/// What [`Request::json`] adds to the system prompt for APIs without a JSON mode.
pub(crate) const JSON_INSTRUCTION: &str =
    "Answer with exactly one JSON object and nothing else: no prose, no code fences.";

/// Default time one HTTP request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
