//! The pieces every page is made of: escaping, the layout, status badges, and
//! times and durations written for people.

use std::fmt::Write;

use axum::response::Html;

/// Escapes text for HTML element content and attribute values alike.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a query-string component.
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which part of the site a page belongs to, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Runs,
    Clusters,
    Fleet,
}

/// A whole page: the navigation, `body`, the stylesheet and the script.
pub fn page(title: &str, section: Section, body: &str) -> Html<String> {
    let nav = |s: Section, href: &str, label: &str| {
        let class = if s == section { " class=\"here\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    };
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · rehearse</title>\
         <link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
         <script src=\"/assets/dashboard.js\" defer></script></head>\
         <body><header><span class=\"brand\">rehearse</span><nav>{runs}<a href=\"/evals\">Evals</a>{clusters}{fleet}\
         <a href=\"/metrics\">metrics</a></nav></header><main>{body}</main></body></html>\n",
        title = esc(title),
        runs = nav(Section::Runs, "/runs", "Runs"),
        clusters = nav(Section::Clusters, "/clusters", "Clusters"),
        fleet = nav(Section::Fleet, "/fleet", "Fleet"),
    ))
}

/// Who started a recorded cluster, linking to its run when a run did.
pub fn started_by(c: &rehearse_store::ClusterRow) -> String {
    let run = c
        .run_id
        .as_deref()
        .map(|r| format!(" · <a href=\"/runs/{r}\">run</a>", r = esc(r)))
        .unwrap_or_default();
    format!("{}{run}", esc(&c.source))
}

/// A coloured badge for a run outcome or a check/step status.
pub fn badge(status: &str) -> String {
    let tone = match status {
        "passed" | "converged" | "ok" | "changed" => "good",
        "failed" | "error" | "budget_exhausted" | "no_rule_applies" | "unreachable" => "bad",
        "running" => "live",
        _ => "neutral",
    };
    toned(status, tone)
}

/// A badge reading `label` in a tone: good, bad, live or neutral.
pub fn toned(label: &str, tone: &str) -> String {
    format!(
        "<span class=\"badge {tone}\" data-status=\"{s}\">{s}</span>",
        s = esc(label)
    )
}

/// How long a stored run took, or `running` while it has not ended.
pub fn run_duration(ms: Option<i64>) -> String {
    ms.map(|ms| duration(ms.max(0) as u64))
        .unwrap_or_else(|| "running".into())
}

/// `850 ms`, `4.2 s`, `3 min 05 s`, `2 h 10 min`.
pub fn duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A time to live: `29 min 40 s`, `expired`.
pub fn ttl(seconds: i64) -> String {
    if seconds <= 0 {
        "expired".into()
    } else {
        duration(seconds as u64 * 1000)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-05-01 13:04:05 UTC` from milliseconds since the epoch.
pub fn date_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        (t % 3600) / 60,
        t % 60
    )
}

/// The start of a `YYYY-MM-DD` day (UTC) in milliseconds since the epoch.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Rejects 2024-02-31 and the like: the day must come back as written.
    (civil_from_days(days) == (year, month, day)).then_some(days * 86_400_000)
}

/// A block of program output or code, empty ones said so.
pub fn output_block(text: &str) -> String {
    if text.trim().is_empty() {
        "<p class=\"muted\">(no output)</p>".into()
    } else {
        format!("<pre class=\"output\">{}</pre>", esc(text))
    }
}

/// A JSON value as a person reads it: strings bare, objects one
/// `key: value` per line, the rest compact JSON.
pub fn json_text(json: &str) -> String {
    use serde_json::Value;
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => s.trim_end_matches('\n').to_owned(),
            Value::Null => "—".into(),
            Value::Array(items) if items.len() == 1 && items[0].is_string() => scalar(&items[0]),
            v => v.to_string(),
        }
    }
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", scalar(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(v) => scalar(&v),
        Err(_) => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(url_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_230), "4.2 s");
        assert_eq!(duration(185_000), "3 min 05 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
        assert_eq!(ttl(-3), "expired");
        assert_eq!(ttl(1_780), "29 min 40 s");
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date_time(1_714_568_645_000), "2024-05-01 13:04:05 UTC");
        assert_eq!(parse_date("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400_000));
        assert_eq!(
            date_time(parse_date("2000-02-29").unwrap()),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn json_values_are_shown_plainly() {
        assert_eq!(json_text("\"active\""), "active");
        assert_eq!(
            json_text(r#"{"contains":["colour = green"],"exists":true}"#),
            "contains: colour = green\nexists: true"
        );
        assert_eq!(json_text(r#"{"status":[200,301]}"#), "status: [200,301]");
        assert_eq!(
            json_text(r#"{"contains":"colour = blue\n"}"#),
            "contains: colour = blue"
        );
        assert_eq!(json_text("null"), "—");
        assert_eq!(json_text("not json"), "not json");
    }
}
