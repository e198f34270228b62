//! Anthropic Messages API: `POST {base}/v1/messages`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::error::head;
use crate::http::{self, Post, RetryPolicy};
use crate::{LlmError, Provider, Request, Response, Usage, JSON_INSTRUCTION};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-20250514";
const NAME: &str = "anthropic";

pub struct Anthropic {
    base_url: String,
    model: String,
    api_key: String,
    client: reqwest::blocking::Client,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Anthropic {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: &str,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, LlmError> {
        Ok(Anthropic {
            base_url: http::normalize_base(base_url),
            model: model.to_owned(),
            api_key: api_key.to_owned(),
            client: http::client(timeout)?,
            timeout,
            retry,
        })
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete(&self, request: &Request) -> Result<Response, LlmError> {
        let started = Instant::now();
        let mut system = request.system.clone().unwrap_or_default();
        if request.json {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(JSON_INSTRUCTION);
        }
        let mut body = json!({
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": request.messages,
        });
        if !system.is_empty() {
            body["system"] = json!(system);
        }
        let url = format!("{}/v1/messages", self.base_url);
        let headers = [
            ("x-api-key", self.api_key.clone()),
            ("anthropic-version", "2023-06-01".to_owned()),
        ];
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
        let text: String = parsed
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect();
        if text.trim().is_empty() {
            return Err(LlmError::BadJson {
                provider: NAME,
                reason: "no text block in `content`".into(),
                head: head(&answer.body),
            });
        }
        let usage = parsed
            .usage
            .map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
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
