//! OpenAI-compatible Chat Completions: `POST {base}/v1/chat/completions`.
//! Spoken by OpenAI, Ollama, vLLM, llama.cpp server, LM Studio and OpenRouter.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::error::head;
use crate::http::{self, Post, RetryPolicy};
use crate::{LlmError, Provider, Request, Response, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
const NAME: &str = "openai";

pub struct OpenAi {
    base_url: String,
    model: String,
    /// Local servers (Ollama, llama.cpp) need none.
    api_key: Option<String>,
    client: reqwest::blocking::Client,
    timeout: Duration,
    retry: RetryPolicy,
}

impl OpenAi {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<&str>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, LlmError> {
        Ok(OpenAi {
            base_url: http::normalize_base(base_url),
            model: model.to_owned(),
            api_key: api_key.map(str::to_owned),
            client: http::client(timeout)?,
            timeout,
            retry,
        })
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete(&self, request: &Request) -> Result<Response, LlmError> {
        let started = Instant::now();
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &request.messages {
            messages.push(json!({"role": m.role, "content": m.content}));
        }
        let mut body = json!({
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        });
        if request.json {
            body["response_format"] = json!({"type": "json_object"});
        }
        let url = format!("{}/v1/chat/completions", self.base_url);
        let headers: Vec<(&'static str, String)> = self
            .api_key
            .iter()
            .map(|key| ("authorization", format!("Bearer {key}")))
            .collect();
        let answer = Post {
            provider: NAME,
            client: &self.client,
            url: &url,
            headers: &headers,
            body: &body,
            retry: self.retry,
            timeout: self.timeout,
        }
        .send()?;
        let parsed: Body = http::parse_body(NAME, &answer.body)?;
        let text = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        if text.trim().is_empty() {
            return Err(LlmError::BadJson {
                provider: NAME,
                reason: "no message content in `choices`".into(),
                head: head(&answer.body),
            });
        }
        let usage = parsed
            .usage
            .map(|u| Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
            })
            .unwrap_or_default();
        let model = parsed.model.unwrap_or_else(|| self.model.clone());
        Ok(Response::finish(
            text,
            usage,
            model,
            started,
            answer.attempts,
        ))
    }
}
