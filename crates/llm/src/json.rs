//! Getting a JSON object out of a model's text.

/// The first JSON object in `text`: the whole text when it is one, else the
/// inside of a code fence, else the outermost `{ ... }` that parses.
/// Models asked for JSON still wrap it in prose or fences often enough that
/// refusing those would waste a round trip.
pub fn extract_json(text: &str) -> Option<serde_json::Value> {
    let trimmed = text.trim();
    if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(trimmed) {
        return Some(value);
    }
    if let Some(inner) = fenced(trimmed) {
        if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(inner.trim()) {
            return Some(value);
        }
    }
    let start = trimmed.find('{')?;
    let mut stream =
        serde_json::Deserializer::from_str(&trimmed[start..]).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(value @ serde_json::Value::Object(_))) => Some(value),
        _ => None,
    }
}

/// The body of the first ``` fence, without its info string.
pub(crate) fn fenced(text: &str) -> Option<&str> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let close = body.find("```")?;
    Some(&body[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_objects_in_prose_and_fences() {
        let want = serde_json::json!({"done": true});
        assert_eq!(extract_json("{\"done\": true}"), Some(want.clone()));
        assert_eq!(
            extract_json("Sure:\n```json\n{\"done\": true}\n```\n"),
            Some(want.clone())
        );
        assert_eq!(
            extract_json("Here it is {\"done\": true} hope it helps"),
            Some(want)
        );
        assert_eq!(extract_json("I cannot help with that."), None);
        assert_eq!(extract_json("[1, 2]"), None);
    }
}
