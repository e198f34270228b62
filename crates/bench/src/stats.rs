//! Min/median/max of timed samples, and ratios against a baseline row.

use std::time::Duration;

pub struct Samples {
    pub name: String,
    pub values: Vec<Duration>,
}

impl Samples {
    pub fn new(name: &str) -> Self {
        Samples {
            name: name.to_string(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
    }

    fn sorted_ms(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .values
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    pub fn min(&self) -> f64 {
        self.sorted_ms().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted_ms().last().copied().unwrap_or(f64::NAN)
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted_ms();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

/// Prints the rows with each median as a ratio of the baseline row's median.
pub fn print(rows: &[Samples], baseline: usize, json: bool) {
    let base = rows[baseline].median();
    if json {
        let doc: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "runs": r.values.len(),
                    "min_ms": r.min(), "median_ms": r.median(), "max_ms": r.max(),
                    "ratio_to_baseline": r.median() / base,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "baseline": rows[baseline].name, "rows": doc })
            )
            .unwrap()
        );
        return;
    }
    println!(
        "{:<52} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "what", "runs", "min ms", "median", "max ms", "× base"
    );
    for r in rows {
        println!(
            "{:<52} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>9.2}",
            r.name,
            r.values.len(),
            r.min(),
            r.median(),
            r.max(),
            r.median() / base
        );
    }
}
