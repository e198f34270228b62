//! The prompts, kept as files under `prompts/` and filled in by name.

pub const SYSTEM: &str = include_str!("../prompts/system.md");
pub const GENERATE: &str = include_str!("../prompts/generate.md");
pub const RETRY: &str = include_str!("../prompts/retry.md");
pub const TROUBLESHOOT: &str = include_str!("../prompts/troubleshoot.md");
pub const DISTILL: &str = include_str!("../prompts/distill.md");
pub const SECRETS: &str = include_str!("../prompts/secrets.md");
pub const FEEDBACK_COMMAND: &str = include_str!("../prompts/feedback_command.md");

/// `template` with every `{{name}}` replaced by its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_placeholder_of_the_system_prompt_is_filled() {
        let text = super::fill(super::SYSTEM, &[("language", "bash"), ("secrets", "")]);
        assert!(!text.contains("{{"), "{text}");
        let text = super::fill(super::SECRETS, &[("names", "$DB_PASSWORD")]);
        assert!(!text.contains("{{"), "{text}");
    }
}
