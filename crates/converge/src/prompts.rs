//! The prompts, kept as files under `prompts/` and filled in by name.

pub const SYSTEM: &str = include_str!("../prompts/system.md");
pub const GENERATE: &str = include_str!("../prompts/generate.md");
pub const RETRY: &str = include_str!("../prompts/retry.md");
pub const TROUBLESHOOT: &str = include_str!("../prompts/troubleshoot.md");
pub const DISTILL: &str = include_str!("../prompts/distill.md");
pub const SECRETS: &str = include_str!("../prompts/secrets.md");
pub const FEEDBACK_COMMAND: &str = include_str!("../prompts/feedback_command.md");
pub const REASK: &str = include_str!("../prompts/reask.md");

pub const RECIPES: &str = include_str!("../prompts/recipes.md");

/// The best matching recipes of the catalogue for `goal`, as prompt text
/// (their metadata and code), or nothing when none matches well or there is
/// no catalogue.
pub fn recipes_for(goal: &str) -> String {
    let Ok(catalogue) =
        rehearse_recipes::Catalogue::load(&rehearse_recipes::Catalogue::default_dir())
    else {
        return String::new();
    };
    use rehearse_recipes::search::{search, tokens};
    // A recipe counts only when the goal names what it is (a word of its
    // name or tags), not when it merely shares words with its README.
    let hits: Vec<_> = search(&catalogue, goal, 5)
        .into_iter()
        .filter(|h| {
            let key = tokens(&format!("{} {}", h.name, h.tags.join(" ")));
            h.matched.iter().any(|m| key.contains(m))
        })
        .take(2)
        .collect();
    let Some(best) = hits.first().map(|h| h.score) else {
        return String::new();
    };
    let mut text = String::new();
    // Only recipes close to the best: a weak second match is noise.
    for hit in hits.iter().filter(|h| h.score >= best * 0.6) {
        let Ok(recipe) = catalogue.get(&hit.name) else {
            continue;
        };
        text.push_str(&format!(
            "### Recipe {} {}: {}\nTopology: {}\n",
            recipe.meta.name, recipe.meta.version, recipe.meta.description, recipe.meta.topology
        ));
        for file in &recipe.files {
            let is_code = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("sh" | "yml" | "j2")
            ) && !file.ends_with("rehearse.yaml");
            if let (true, Ok(code)) = (is_code, std::fs::read_to_string(recipe.dir.join(file))) {
                text.push_str(&format!("{}:\n```\n{code}```\n", file.display()));
            }
        }
    }
    if text.is_empty() {
        return text;
    }
    fill(RECIPES, &[("recipes", &text)])
}

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

    #[test]
    fn the_best_matching_recipes_go_into_the_prompt() {
        let text = super::recipes_for("HAProxy load balancer in front of two nginx web servers");
        assert!(text.contains("### Recipe web-lb"), "{text}");
        assert!(
            text.contains("lb.sh:") && text.contains("balance $BALANCE"),
            "{text}"
        );
        assert!(!text.contains("Recipe redis-sentinel"), "{text}");
        assert!(super::recipes_for("make the command hello print hi").is_empty());
    }
}
