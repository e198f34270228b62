//! Which provider, model, endpoint and key: from the environment, then flags.

use std::time::Duration;

use crate::http::RetryPolicy;
use crate::{anthropic, openai, Anthropic, LlmError, OpenAi, Provider, DEFAULT_TIMEOUT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    Anthropic,
    OpenAi,
}

impl std::str::FromStr for ProviderKind {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<Self, LlmError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anthropic" | "claude" => Ok(ProviderKind::Anthropic),
            "openai" | "openai-compatible" | "ollama" | "vllm" | "openrouter" => {
                Ok(ProviderKind::OpenAi)
            }
            other => Err(LlmError::Config(format!(
                "unknown LLM provider {other:?}: use anthropic or openai (any OpenAI-compatible server)"
            ))),
        }
    }
}

/// Everything that decides which model is asked. Fields left `None` fall back to
/// the provider's defaults.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `REHEARSE_LLM_PROVIDER`. When unset it is guessed: an Anthropic key means
    /// Anthropic, an OpenAI key or a base URL means OpenAI-compatible.
    pub provider: Option<String>,
    /// `REHEARSE_LLM_BASE_URL`.
    pub base_url: Option<String>,
    /// `REHEARSE_LLM_MODEL`.
    pub model: Option<String>,
    /// `REHEARSE_LLM_API_KEY`, used by whichever provider is chosen.
    pub api_key: Option<String>,
    /// `ANTHROPIC_API_KEY`.
    pub anthropic_key: Option<String>,
    /// `OPENAI_API_KEY`.
    pub openai_key: Option<String>,
    /// `REHEARSE_LLM_TIMEOUT`, in seconds.
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
}

impl Settings {
    pub fn from_env() -> Self {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Settings::from_env`] over any variable lookup (tests use a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        Settings {
            provider: get("REHEARSE_LLM_PROVIDER"),
            base_url: get("REHEARSE_LLM_BASE_URL"),
            model: get("REHEARSE_LLM_MODEL"),
            api_key: get("REHEARSE_LLM_API_KEY"),
            anthropic_key: get("ANTHROPIC_API_KEY"),
            openai_key: get("OPENAI_API_KEY"),
            timeout: get("REHEARSE_LLM_TIMEOUT")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64),
            retry: RetryPolicy::default(),
        }
    }

    /// The provider these settings select; `None` when nothing selects one (no
    /// provider named, no key, no base URL): no LLM is configured.
    pub fn kind(&self) -> Result<Option<ProviderKind>, LlmError> {
        if let Some(name) = &self.provider {
            return name.parse().map(Some);
        }
        Ok(if self.anthropic_key.is_some() {
            Some(ProviderKind::Anthropic)
        } else if self.openai_key.is_some() || self.base_url.is_some() {
            Some(ProviderKind::OpenAi)
        } else {
            None
        })
    }
}

/// The provider the settings describe, or `None` when no LLM is configured.
pub fn connect(settings: &Settings) -> Result<Option<Box<dyn Provider>>, LlmError> {
    let Some(kind) = settings.kind()? else {
        return Ok(None);
    };
    let timeout = settings.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let provider: Box<dyn Provider> = match kind {
        ProviderKind::Anthropic => {
            let key = settings
                .api_key
                .as_deref()
                .or(settings.anthropic_key.as_deref())
                .ok_or(LlmError::NoKey {
                    provider: "anthropic",
                    vars: "ANTHROPIC_API_KEY or REHEARSE_LLM_API_KEY",
                })?;
            Box::new(Anthropic::new(
                settings
                    .base_url
                    .as_deref()
                    .unwrap_or(anthropic::DEFAULT_BASE_URL),
                settings
                    .model
                    .as_deref()
                    .unwrap_or(anthropic::DEFAULT_MODEL),
                key,
                timeout,
                settings.retry,
            )?)
        }
        ProviderKind::OpenAi => {
            let key = settings
                .api_key
                .as_deref()
                .or(settings.openai_key.as_deref());
            // OpenAI itself needs a key; a local server named by base URL may not.
            if key.is_none() && settings.base_url.is_none() {
                return Err(LlmError::NoKey {
                    provider: "openai",
                    vars: "OPENAI_API_KEY or REHEARSE_LLM_API_KEY (or REHEARSE_LLM_BASE_URL for a local server)",
                });
            }
            Box::new(OpenAi::new(
                settings
                    .base_url
                    .as_deref()
                    .unwrap_or(openai::DEFAULT_BASE_URL),
                settings.model.as_deref().unwrap_or(openai::DEFAULT_MODEL),
                key,
                timeout,
                settings.retry,
            )?)
        }
    };
    Ok(Some(provider))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_configured_means_no_llm() {
        assert!(connect(&settings(&[])).unwrap().is_none());
    }

    #[test]
    fn provider_is_guessed_from_keys_and_base_url() {
        let s = settings(&[("ANTHROPIC_API_KEY", "k")]);
        assert_eq!(s.kind().unwrap(), Some(ProviderKind::Anthropic));
        let s = settings(&[("REHEARSE_LLM_BASE_URL", "http://127.0.0.1:11434")]);
        let p = connect(&s).unwrap().unwrap();
        assert_eq!(p.name(), "openai");
        assert_eq!(p.model(), openai::DEFAULT_MODEL);
    }

    #[test]
    fn missing_key_and_unknown_provider_are_clear() {
        let e = connect(&settings(&[("REHEARSE_LLM_PROVIDER", "anthropic")]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("ANTHROPIC_API_KEY"), "{e}");
        let e = connect(&settings(&[("REHEARSE_LLM_PROVIDER", "gemeni")]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("anthropic or openai"), "{e}");
    }
}
