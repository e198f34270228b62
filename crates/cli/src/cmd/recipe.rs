//! `rehearse recipe`: search, show, scaffold, prove, use and verify recipes of
//! the catalogue.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;

use rehearse_api::recipes::{RecipeProveRequest, RecipeSearchRequest, RecipeShowRequest};
use rehearse_api::{Command, Proof};
use rehearse_recipes::pin::{self, PinReport};
use rehearse_recipes::{scaffold, Catalogue};
use rehearse_scenario::Event;

use super::answer;
use crate::output::{print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    /// The catalogue folder (default: REHEARSE_RECIPES, else the recipes shipped with rehearse).
    #[arg(long, global = true)]
    catalogue: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Find recipes by words, ranked by name, tags, description and README.
    Search {
        #[arg(required = true)]
        words: Vec<String>,
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
    /// A recipe's metadata, README and last proof.
    Show { name: String },
    /// Create a new recipe folder in the catalogue from a template that proves as written.
    New { name: String },
    /// Run recipes' scenarios on fresh clusters and record the results.
    Prove {
        /// Recipe names; none with --all.
        names: Vec<String>,
        /// Prove every recipe of the catalogue.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// How many proofs run at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Override a variable: NAME=VALUE (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        set: Vec<(String, String)>,
        /// Prove on these images (comma-separated) instead of the platforms
        /// the recipe's recipe.yaml lists.
        #[arg(long, value_delimiter = ',')]
        platform: Vec<String>,
        /// Place the proofs on a fleet (the PostgreSQL its hosts' `serve
        /// --fleet` share), one job per recipe and platform, with each
        /// recipe's folder: hosts need not hold the same catalogue.
        #[arg(long, value_name = "URL")]
        fleet: Option<String>,
        /// Who the fleet queues the proofs for. Default: REHEARSE_SUBMITTER, else user@host.
        #[arg(long, requires = "fleet")]
        submitter: Option<String>,
    },
    /// Copy a recipe into a project with its variables filled, and pin it in recipes.lock.
    Use {
        name: String,
        dest: PathBuf,
        /// The project folder holding recipes.lock.
        #[arg(long, default_value = ".")]
        project: PathBuf,
        /// Set a variable: NAME=VALUE (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        set: Vec<(String, String)>,
    },
    /// Report drift of a project's pinned recipes and re-prove each copy on a fresh cluster.
    Verify {
        #[arg(default_value = ".")]
        project: PathBuf,
        /// Only compare versions and hashes; start no cluster.
        #[arg(long)]
        no_prove: bool,
    },
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("\"{s}\" is not NAME=VALUE"))
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let dir = args.catalogue.unwrap_or_else(Catalogue::default_dir);
    let catalogue = Catalogue::load(&dir)?;
    match args.verb {
        Verb::Search { words, limit } => {
            let request = RecipeSearchRequest {
                query: words.join(" "),
                limit: Some(limit),
                catalogue: Some(dir.display().to_string()),
            };
            let found = answer!(
                super::mcp::api()?.execute(Command::RecipeSearch(request), None)?,
                RecipeSearch
            );
            if json {
                print_json(&found);
            } else if found.hits.is_empty() {
                println!("no recipe matches; `rehearse recipe search` takes words such as: load balancer, dns, postgres");
            } else {
                for h in &found.hits {
                    println!(
                        "{:<18} {:<7} {:>6.2}  {}",
                        h.name, h.version, h.score, h.description
                    );
                }
            }
            Ok(0)
        }
        Verb::Show { name } => {
            let request = RecipeShowRequest {
                name,
                catalogue: Some(dir.display().to_string()),
            };
            let shown = answer!(
                super::mcp::api()?.execute(Command::RecipeShow(request), None)?,
                RecipeShow
            );
            if json {
                print_json(&shown);
            } else {
                let m = &shown.recipe;
                println!("{} {} — {}", m.name, m.version, m.description);
                println!("folder:   {}", shown.dir.display());
                println!("hash:     {}", shown.hash);
                println!("tags:     {}", m.tags.join(", "));
                println!("platforms: {}", m.platforms.join(", "));
                println!("topology: {}", m.topology);
                for v in &m.variables {
                    println!("var:      {}={}  ({})", v.name, v.default, v.description);
                }
                for l in &m.limits {
                    println!("limit:    {l}");
                }
                match &shown.last_proof {
                    Some(p) => println!(
                        "proof:    {} on {} (version {}, run {}{})",
                        p.outcome,
                        p.date,
                        p.version,
                        p.run_id,
                        if p.hash == shown.hash {
                            ""
                        } else {
                            ", older content"
                        }
                    ),
                    None => println!("proof:    never proven here"),
                }
                println!("\n{}", shown.readme);
            }
            Ok(0)
        }
        Verb::New { name } => {
            let recipe = scaffold::new_recipe(&catalogue.dir, &name)?;
            if json {
                print_json(&serde_json::json!({ "created": recipe.dir, "files": recipe.files }));
            } else {
                println!("created {}", recipe.dir.display());
                println!("prove it with: rehearse recipe prove {name}");
            }
            Ok(0)
        }
        Verb::Prove {
            names,
            all,
            jobs,
            set,
            platform,
            fleet,
            submitter,
        } => {
            if fleet.is_none() {
                for p in &platform {
                    engine_images_know(p)?;
                }
            }
            let recipes: Vec<_> = if all {
                catalogue.recipes.iter().collect()
            } else if names.is_empty() {
                anyhow::bail!("name the recipes to prove, or pass --all");
            } else {
                names
                    .iter()
                    .map(|n| catalogue.get(n))
                    .collect::<Result<_, _>>()?
            };
            if let Some(url) = &fleet {
                return super::fleet::prove_recipes(
                    super::fleet::RecipesOnFleet {
                        url,
                        recipes: &recipes,
                        set: &set,
                        platforms: &platform,
                        submitter: submitter.unwrap_or_else(super::fleet::default_submitter),
                    },
                    json,
                );
            }
            let api = super::mcp::api()?;
            let spinner = Spinner::new(json);
            let next = AtomicUsize::new(0);
            let results: Mutex<Vec<(String, anyhow::Result<Proof>)>> = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..jobs.clamp(1, recipes.len().max(1)) {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(recipe) = recipes.get(i) else { break };
                        let name = recipe.name();
                        let request = RecipeProveRequest {
                            name: name.to_string(),
                            set: set.iter().cloned().collect(),
                            platforms: platform.clone(),
                            catalogue: Some(dir.display().to_string()),
                        };
                        let r = api
                            .execute(Command::RecipeProve(request), Some(spinner.sink()))
                            .map(|outcome| *answer!(outcome, RecipeProve))
                            .with_context(|| format!("proving {name}"));
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((name.to_string(), r));
                    });
                }
            });
            spinner.finish();
            let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
            results.sort_by(|a, b| a.0.cmp(&b.0));
            let all_passed = results
                .iter()
                .all(|(_, r)| r.as_ref().is_ok_and(|p| p.passed()));
            if json {
                let docs: Vec<_> = results
                    .iter()
                    .map(|(name, r)| match r {
                        Ok(p) => serde_json::json!({"recipe": name, "proof": p.record, "platforms": p.platforms, "report": p.report}),
                        Err(e) => serde_json::json!({"recipe": name, "error": format!("{e:#}")}),
                    })
                    .collect();
                print_json(&serde_json::json!({ "proofs": docs, "passed": all_passed }));
            } else {
                for (name, r) in &results {
                    match r {
                        Ok(p) => {
                            let mark = if p.passed() { "✔" } else { "✘" };
                            println!(
                                "{mark} {name} {} {} (run {})",
                                p.record.version, p.record.outcome, p.record.run_id
                            );
                            for pp in &p.platforms {
                                let mark = if pp.outcome == "passed" { "✔" } else { "✘" };
                                println!(
                                    "    {mark} {:<14} {:<7} {:>7} ms  run {}",
                                    pp.platform, pp.outcome, pp.total_ms, pp.run_id
                                );
                                for f in &pp.failures {
                                    println!("        {f}");
                                }
                            }
                        }
                        Err(e) => println!("✘ {name}: {e:#}"),
                    }
                }
            }
            Ok(if all_passed { 0 } else { 1 })
        }
        Verb::Use {
            name,
            dest,
            project,
            set,
        } => {
            let recipe = catalogue.get(&name)?;
            let pin = pin::use_recipe(recipe, &project, &dest, &set)?;
            if json {
                print_json(&pin);
            } else {
                println!(
                    "copied {} {} to {} and pinned it in {}",
                    pin.name,
                    pin.version,
                    dest.display(),
                    project.join(pin::LOCK_FILE).display()
                );
                for (k, v) in &pin.vars {
                    println!("  {k}={v}");
                }
                println!("run it with: rehearse run {}", dest.display());
            }
            Ok(0)
        }
        Verb::Verify { project, no_prove } => {
            let engine = if no_prove {
                None
            } else {
                Some(super::engine()?)
            };
            let spinner = Spinner::new(json);
            let events = |e: Event<'_>| {
                if let Event::Phase(p) = e {
                    spinner.set(p.to_string())
                }
            };
            let each = |r: &PinReport| {
                let mark = if r.ok() { "✔" } else { "✘" };
                spinner.line(format!("{mark} {} {}", r.name, r.pinned_version));
            };
            let store = engine.as_ref().and_then(|_| super::recording_store());
            let reports =
                pin::verify(engine.as_ref(), store, &catalogue, &project, &events, &each)?;
            spinner.finish();
            let ok = reports.iter().all(PinReport::ok);
            if json {
                print_json(&serde_json::json!({ "recipes": reports, "ok": ok }));
            } else {
                for r in &reports {
                    let proven = match &r.proof {
                        Some(p) => format!(", proof {} (run {})", p.outcome, p.run_id),
                        None => String::new(),
                    };
                    println!(
                        "{} {} {} at {}{proven}",
                        if r.ok() { "✔" } else { "✘" },
                        r.name,
                        r.pinned_version,
                        r.path.display()
                    );
                    for d in &r.drift {
                        println!("    drift: {d}");
                    }
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
    }
}

/// An unknown image name is refused before anything starts, listing the known ones.
fn engine_images_know(image: &str) -> anyhow::Result<()> {
    super::engine()?.images().spec_for(image)?;
    Ok(())
}
