//! The conversation with the model: what it is asked (code, a rewrite, a
//! distilled script), how each answer is taken apart, and the corrective
//! re-asks after an unusable one. Every prompt and answer is redacted.

use rehearse_llm::{LlmError, Message, Request};
use rehearse_spec::task::Language;

use crate::session::{self, CommandRecord};
use crate::{prompts, ConvergeError, Converger, Failure, LlmCall};

/// Tokens the model may write per answer.
const MAX_ANSWER_TOKENS: u32 = 4096;
/// Corrective re-asks after an unusable answer, per question.
pub const MAX_REASKS: u32 = 2;

impl Converger<'_> {
    /// What the model is told about secrets: their names, never their values.
    pub(crate) fn secrets_note(&self) -> String {
        if self.task.secrets.is_empty() {
            return String::new();
        }
        let names = self
            .task
            .secrets
            .iter()
            .map(|s| format!("${}", s.name))
            .collect::<Vec<_>>()
            .join(", ");
        prompts::fill(prompts::SECRETS, &[("names", &names)])
    }

    pub(crate) fn fence(&self) -> &'static str {
        match self.task.language {
            Language::Bash => "bash",
            Language::Ansible => "yaml",
        }
    }

    pub(crate) fn ask(
        &mut self,
        purpose: &'static str,
        messages: Vec<Message>,
        json: bool,
        reask: Option<String>,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let model = self.model.expect("asked only with a model");
        let system = prompts::fill(
            prompts::SYSTEM,
            &[
                ("language", self.task.language.as_str()),
                ("secrets", &self.secrets_note()),
            ],
        );
        // The model never sees a value: whatever went into the prompt (logs,
        // outputs, starting code) is redacted on the way out.
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|mut m| {
                self.redactor.scrub(&mut m.content);
                m
            })
            .collect();
        let request = Request {
            system: Some(system),
            messages: messages.clone(),
            max_tokens: MAX_ANSWER_TOKENS,
            json,
        };
        let mut response = model
            .complete(&request)
            .map_err(|source| ConvergeError::Llm { purpose, source })?;
        self.redactor.scrub(&mut response.text);
        self.usage.add(response.usage);
        if let Some(cost) = response.cost_usd {
            *self.cost.get_or_insert(0.0) += cost;
        }
        calls.push(LlmCall {
            purpose,
            request: messages,
            response: response.text.clone(),
            usage: response.usage,
            latency_ms: response.latency_ms,
            cost_usd: response.cost_usd,
            reask,
        });
        Ok(response.text)
    }

    /// Asks, and takes what `parse` makes of the answer. An unusable answer
    /// gets up to [`MAX_REASKS`] corrective re-asks that say what was wrong
    /// with it and what is expected; each is a call of its own in the report.
    /// Returns the usable answer's text beside the parsed value.
    pub(crate) fn ask_until<T>(
        &mut self,
        purpose: &'static str,
        mut messages: Vec<Message>,
        json: bool,
        expected: &str,
        calls: &mut Vec<LlmCall>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(T, String), ConvergeError> {
        let mut reask = None;
        for attempt in 0..=MAX_REASKS {
            let text = self.ask(purpose, messages.clone(), json, reask.take(), calls)?;
            let why = match parse(&text) {
                Ok(value) => return Ok((value, text)),
                Err(why) => why,
            };
            if attempt == MAX_REASKS {
                return Err(ConvergeError::Llm {
                    purpose,
                    source: LlmError::Garbage {
                        reason: format!("{why} (still, after {MAX_REASKS} corrective re-asks)"),
                        head: text.chars().take(200).collect(),
                    },
                });
            }
            self.reasks += 1;
            self.say(&format!(
                "the model's answer is unusable ({why}): asking again ({} of {MAX_REASKS})",
                attempt + 1
            ));
            messages.push(Message::assistant(text));
            messages.push(Message::user(prompts::fill(
                prompts::REASK,
                &[("why", &why), ("expected", expected)],
            )));
            reask = Some(why);
        }
        unreachable!("the last attempt returns")
    }

    /// Asks for code and takes it from the answer's fenced block.
    pub(crate) fn ask_code(
        &mut self,
        purpose: &'static str,
        prompt: String,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let expected = format!(
            "the complete code in one fenced code block (```{}), and nothing after it",
            self.fence()
        );
        self.ask_until(
            purpose,
            vec![Message::user(prompt)],
            false,
            &expected,
            calls,
            |text| code_block(text).ok_or_else(|| "it has no fenced code block".to_owned()),
        )
        .map(|(code, _)| code)
    }

    pub(crate) fn generate(&mut self, calls: &mut Vec<LlmCall>) -> Result<String, ConvergeError> {
        let topology = self
            .task
            .topology
            .nodes
            .iter()
            .map(|n| {
                if n.groups.is_empty() {
                    format!("- {}", n.name)
                } else {
                    format!("- {} (groups: {})", n.name, n.groups.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let checks = self.checks_yaml();
        let starting = match &self.task.code {
            Some(code) => format!("Start from this code:\n```{}\n{code}\n```\n", self.fence()),
            None => String::new(),
        };
        let prompt = prompts::fill(
            prompts::GENERATE,
            &[
                ("language", self.task.language.as_str()),
                ("goal", &self.task.goal),
                ("topology", &topology),
                ("checks", &checks),
                ("starting_code", &starting),
                ("recipes", &prompts::recipes_for(&self.task.goal)),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("write the code", prompt, calls)
    }

    pub(crate) fn retry(
        &mut self,
        code: &str,
        failure: &Failure,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let prompt = prompts::fill(
            prompts::RETRY,
            &[
                ("goal", &self.task.goal),
                ("checks", &self.checks_yaml()),
                ("code", code),
                ("failure", &self.visible(&failure.describe())),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("correct the code", prompt, calls)
    }

    pub(crate) fn distill(
        &mut self,
        code: &str,
        commands: &[CommandRecord],
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let listing = commands
            .iter()
            .filter(|c| c.refused.is_none())
            .map(|c| {
                format!(
                    "- {} (exit {}{}): {}",
                    c.node,
                    c.exit_code.map_or("none".into(), |e| e.to_string()),
                    if session::mattered(c) {
                        ""
                    } else {
                        ", diagnostic"
                    },
                    c.command
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let prompt = prompts::fill(
            prompts::DISTILL,
            &[
                ("language", self.task.language.as_str()),
                ("goal", &self.task.goal),
                ("code", code),
                ("commands", &listing),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("distill one script", prompt, calls)
    }
}

/// The body of the first fenced code block of a model's answer.
pub fn code_block(text: &str) -> Option<String> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let close = body.find("```").unwrap_or(body.len());
    let code = body[..close].trim_end().to_owned() + "\n";
    (!code.trim().is_empty()).then_some(code)
}
