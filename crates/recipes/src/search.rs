//! Ranking recipes for a query: BM25F over four fields (name, tags,
//! description, README), so a word in a recipe's name or tags counts more
//! than the same word deep in its README, and rare words count more than
//! common ones.

use std::collections::HashMap;

use serde::Serialize;

use crate::{Catalogue, Recipe};

/// Field weights: name, tags, description, README.
const WEIGHTS: [f64; 4] = [4.0, 3.0, 2.0, 1.0];
/// Length normalisation per field: names and tags are short and similar.
const B: [f64; 4] = [0.3, 0.3, 0.6, 0.75];
const K1: f64 = 1.2;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "into", "is",
    "it", "its", "my", "of", "on", "or", "that", "the", "their", "this", "to", "up", "we", "with",
    "want", "need", "set", "setup", "all", "every", "each", "our", "can", "so",
];

/// Lowercase words of `text`, without stop words, lightly stemmed.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| stem(&w.to_ascii_lowercase()))
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// Plural and verb endings off, so "replicas" finds "replica" and
/// "balancing" finds "balancer".
fn stem(word: &str) -> String {
    let mut w = word;
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        w = &w[..w.len() - 1];
    }
    for suffix in ["ing", "er", "ed"] {
        if w.len() > suffix.len() + 3 && w.ends_with(suffix) {
            return w[..w.len() - suffix.len()].to_string();
        }
    }
    w.to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub name: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
    pub score: f64,
    /// The query words the recipe matched.
    pub matched: Vec<String>,
}

fn fields(r: &Recipe) -> [Vec<String>; 4] {
    [
        tokens(&r.meta.name),
        tokens(&r.meta.tags.join(" ")),
        tokens(&r.meta.description),
        tokens(&r.readme),
    ]
}

/// The recipes matching `query`, best first; recipes matching no word are left out.
pub fn search(catalogue: &Catalogue, query: &str, limit: usize) -> Vec<Hit> {
    let mut terms = tokens(query);
    terms.sort();
    terms.dedup();
    if terms.is_empty() || catalogue.recipes.is_empty() {
        return Vec::new();
    }
    let docs: Vec<[Vec<String>; 4]> = catalogue.recipes.iter().map(fields).collect();
    let n = docs.len() as f64;
    let mut avg = [0.0f64; 4];
    for d in &docs {
        for (f, words) in d.iter().enumerate() {
            avg[f] += words.len() as f64 / n;
        }
    }
    let mut hits: Vec<Hit> = Vec::new();
    for (recipe, doc) in catalogue.recipes.iter().zip(&docs) {
        let counts: Vec<HashMap<&str, usize>> = doc
            .iter()
            .map(|words| {
                let mut m = HashMap::new();
                for w in words {
                    *m.entry(w.as_str()).or_insert(0) += 1;
                }
                m
            })
            .collect();
        let mut score = 0.0;
        let mut matched = Vec::new();
        for term in &terms {
            let df = docs
                .iter()
                .filter(|d| d.iter().any(|f| f.contains(term)))
                .count() as f64;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            let mut tf = 0.0;
            for f in 0..4 {
                let c = *counts[f].get(term.as_str()).unwrap_or(&0) as f64;
                if c > 0.0 {
                    let norm = 1.0 - B[f] + B[f] * doc[f].len() as f64 / avg[f].max(1.0);
                    tf += WEIGHTS[f] * c / norm;
                }
            }
            if tf > 0.0 {
                score += idf * tf / (K1 + tf);
                matched.push(term.clone());
            }
        }
        if score > 0.0 {
            hits.push(Hit {
                name: recipe.meta.name.clone(),
                version: recipe.meta.version.clone(),
                description: recipe.meta.description.clone(),
                tags: recipe.meta.tags.clone(),
                score: (score * 1000.0).round() / 1000.0,
                matched,
            });
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.name.cmp(&b.name)));
    hits.truncate(limit);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_drop_stop_words_and_endings() {
        assert_eq!(
            tokens("Load-balancing the Web servers, PostgreSQL replicas"),
            ["load", "balanc", "web", "serv", "postgresql", "replica"]
        );
        assert_eq!(tokens("balancer"), tokens("balancing"));
    }
}
