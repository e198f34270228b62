//! List prices, for a cost estimate in reports. Unknown models get no estimate
//! rather than a wrong one.

/// US dollars per million (input, output) tokens for models whose name starts
/// with the prefix; the longest matching prefix wins.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4.1-mini", 0.4, 1.6),
    ("gpt-4.1-nano", 0.1, 0.4),
    ("gpt-4.1", 2.0, 8.0),
];

/// (input, output) US dollars per million tokens, when known.
pub fn price_per_mtok(model: &str) -> Option<(f64, f64)> {
    // OpenRouter names models `vendor/model`.
    let model = model.rsplit('/').next().unwrap_or(model);
    PRICES
        .iter()
        .filter(|(prefix, _, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, input, output)| (input, output))
}

pub(crate) fn cost(model: &str, usage: crate::Usage) -> Option<f64> {
    let (input, output) = price_per_mtok(model)?;
    Some((usage.input_tokens as f64 * input + usage.output_tokens as f64 * output) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_is_none() {
        assert_eq!(price_per_mtok("gpt-4o-mini-2024-07-18"), Some((0.15, 0.6)));
        assert_eq!(price_per_mtok("gpt-4o-2024-08-06"), Some((2.5, 10.0)));
        assert_eq!(price_per_mtok("openai/gpt-4o"), Some((2.5, 10.0)));
        assert_eq!(price_per_mtok("llama3.1:8b"), None);
        let usage = crate::Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
        };
        assert_eq!(cost("claude-sonnet-4-20250514", usage), Some(4.5));
    }
}
