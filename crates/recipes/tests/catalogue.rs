//! The shipped catalogue, search ranking on realistic queries, bad metadata,
//! scaffolding, `use` with variables filled, pinning and drift — no cluster
//! needed except where a proof is part of the behaviour.

use std::path::Path;

use rehearse_recipes::pin::{self, Drift, LockFile};
use rehearse_recipes::{scaffold, search, Catalogue, Recipe, RecipeError};
use rehearse_spec::scenario::Scenario;

fn shipped() -> Catalogue {
    Catalogue::load(&Catalogue::default_dir()).expect("the shipped catalogue loads")
}

/// A copy of some shipped recipes in a scratch catalogue, to change freely.
fn scratch(names: &[&str]) -> (tempfile::TempDir, Catalogue) {
    let tmp = tempfile::tempdir().unwrap();
    let src = shipped();
    for name in names {
        let r = src.get(name).unwrap();
        let values = r
            .meta
            .variables
            .iter()
            .map(|v| (format!("__keep_{}", v.name), String::new()))
            .collect();
        // Copy without filling anything: the names above match no placeholder.
        rehearse_recipes::render_into(&r.dir, &tmp.path().join(name), &values).unwrap();
    }
    let cat = Catalogue::load(tmp.path()).unwrap();
    (tmp, cat)
}

#[test]
fn the_catalogue_ships_the_ten_recipes_each_complete() {
    let cat = shipped();
    let names: Vec<&str> = cat.recipes.iter().map(Recipe::name).collect();
    for want in [
        "web-lb",
        "internal-dns",
        "central-logs",
        "nfs-share",
        "postgres-replica",
        "redis-sentinel",
        "ssh-hardening",
        "nftables-firewall",
        "internal-ca",
        "time-sync",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in &cat.recipes {
        assert!(
            r.readme.contains("## Variables") || r.meta.variables.is_empty(),
            "{}",
            r.name()
        );
        assert!(
            r.readme.contains("## What the proof shows"),
            "{}: README says what the proof shows",
            r.name()
        );
        assert!(r.hash.starts_with("sha256:") && r.hash.len() == 71);
        for v in &r.meta.variables {
            assert!(
                r.readme.contains(&format!("`{}`", v.name)),
                "{}: README documents {}",
                r.name(),
                v.name
            );
        }
        // The scenario, with defaults filled, is a valid scenario.
        let tmp = tempfile::tempdir().unwrap();
        let values = rehearse_recipes::prove::values(r, &[]).unwrap();
        rehearse_recipes::render_into(&r.dir, tmp.path(), &values).unwrap();
        let scenario = Scenario::from_path(&tmp.path().join(&r.meta.prove.scenario))
            .unwrap_or_else(|e| panic!("{}: {e}", r.name()));
        assert!(!scenario.checks.is_empty(), "{}", r.name());
        let text = std::fs::read_to_string(tmp.path().join(&r.meta.prove.scenario)).unwrap();
        assert!(
            !text.contains("{{"),
            "{}: a placeholder is left unfilled",
            r.name()
        );
    }
}

fn top(cat: &Catalogue, query: &str) -> String {
    search::search(cat, query, 3)
        .first()
        .map(|h| h.name.clone())
        .unwrap_or_default()
}

#[test]
fn search_ranks_the_right_recipe_first_for_realistic_queries() {
    let cat = shipped();
    for (query, want) in [
        ("load balancer in front of two nginx web servers", "web-lb"),
        ("haproxy", "web-lb"),
        (
            "internal DNS so every node resolves service names",
            "internal-dns",
        ),
        ("dnsmasq", "internal-dns"),
        (
            "ship syslog from all machines to a central log server",
            "central-logs",
        ),
        ("shared storage mounted on clients", "nfs-share"),
        ("NFS export", "nfs-share"),
        (
            "postgres streaming replication with a hot standby",
            "postgres-replica",
        ),
        ("redis failover with sentinel", "redis-sentinel"),
        ("redis replica", "redis-sentinel"),
        ("disable ssh password login, keys only", "ssh-hardening"),
        ("host firewall that survives reboot", "nftables-firewall"),
        (
            "TLS certificates from our own CA trusted by clients",
            "internal-ca",
        ),
        ("https with a private certificate authority", "internal-ca"),
        ("keep clocks in sync with NTP", "time-sync"),
        ("chrony", "time-sync"),
    ] {
        assert_eq!(
            top(&cat, query),
            want,
            "query: {query:?} -> {:?}",
            search::search(&cat, query, 3)
        );
    }
    // A query about nothing in the catalogue finds nothing, not noise.
    assert!(search::search(&cat, "kubernetes operator", 5).is_empty());
    assert!(search::search(&cat, "the and of", 5).is_empty());
}

#[test]
fn a_word_in_the_name_or_tags_outranks_the_same_word_in_a_readme() {
    // "nginx" is in web-lb's tags and in internal-ca's tags and README;
    // "replica" is in postgres-replica's name and only in redis-sentinel's tags.
    let cat = shipped();
    let hits = search::search(&cat, "replica", 5);
    assert_eq!(hits[0].name, "postgres-replica", "{hits:?}");
    assert!(hits.iter().any(|h| h.name == "redis-sentinel"));
}

#[test]
fn bad_metadata_is_refused_with_file_line_and_fix() {
    let (tmp, _) = scratch(&["ssh-hardening"]);
    let meta = tmp.path().join("ssh-hardening/recipe.yaml");
    let good = std::fs::read_to_string(&meta).unwrap();
    let cases = [
        (
            good.replace("version: \"1.1.0\"", "version: \"1.0\""),
            ":2: version \"1.0\" is not MAJOR.MINOR.PATCH",
        ),
        (
            good.replace("name: ssh-hardening", "name: ssh-hard"),
            ":1: name \"ssh-hard\" differs from the recipe's folder",
        ),
        (
            good.replace(
                "platforms: [debian-12, debian-13, ubuntu-24.04]",
                "platforms: []",
            ),
            ":5: platforms is empty",
        ),
        (
            good.replace(
                "platforms: [debian-12, debian-13, ubuntu-24.04]",
                "images: []",
            ),
            ":5: images is empty",
        ),
        (
            good.replace(
                "platforms: [debian-12, debian-13, ubuntu-24.04]",
                "platforms: [debian-12, debian-12]",
            ),
            ":5: platform \"debian-12\" is listed twice",
        ),
        (good.replace("tags:", "tagz:"), "unknown field `tagz`"),
        (
            good.replace("name: MAX_AUTH_TRIES", "name: max_auth_tries"),
            "is not UPPER_SNAKE_CASE",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&meta, &text).unwrap();
        let e = Catalogue::load(tmp.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("recipe.yaml") && e.contains(want),
            "{e}\nwanted: {want}"
        );
        assert!(e.contains("hint:"), "{e}");
    }
    // A placeholder the metadata does not declare.
    std::fs::write(&meta, &good).unwrap();
    let script = tmp.path().join("ssh-hardening/harden.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{text}\n# {{{{UNDECLARED}}}}\n")).unwrap();
    let e = Catalogue::load(tmp.path()).err().unwrap();
    assert!(
        matches!(e, RecipeError::UndeclaredVariable { ref name, .. } if name == "UNDECLARED"),
        "{e}"
    );
    assert!(e.to_string().contains("harden.sh:"), "{e}");
}

#[test]
fn a_misspelt_name_suggests_the_recipe() {
    let e = shipped().get("web-lbb").err().unwrap().to_string();
    assert!(e.contains("did you mean web-lb"), "{e}");
}

#[test]
fn scaffold_creates_a_recipe_that_loads_and_refuses_clashes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = scaffold::new_recipe(tmp.path(), "my-cache").unwrap();
    assert_eq!(r.meta.name, "my-cache");
    assert_eq!(r.meta.variables[0].name, "GREETING");
    for f in ["README.md", "recipe.yaml", "setup.sh", "rehearse.yaml"] {
        assert!(r.dir.join(f).is_file(), "{f}");
    }
    // It is found by search and its scenario is valid once filled.
    let cat = Catalogue::load(tmp.path()).unwrap();
    assert_eq!(top(&cat, "greeting"), "my-cache");
    let out = tempfile::tempdir().unwrap();
    rehearse_recipes::render_into(
        &r.dir,
        out.path(),
        &rehearse_recipes::prove::values(&r, &[]).unwrap(),
    )
    .unwrap();
    Scenario::from_path(&out.path().join("rehearse.yaml")).unwrap();
    let e = scaffold::new_recipe(tmp.path(), "my-cache")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
    let e = scaffold::new_recipe(tmp.path(), "My Cache")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a recipe name"), "{e}");
    assert!(!tmp.path().join("My Cache").exists());
}

#[test]
fn use_fills_variables_and_pins_name_version_and_hash() {
    let cat = shipped();
    let recipe = cat.get("web-lb").unwrap();
    let project = tempfile::tempdir().unwrap();
    let dest = project.path().join("infra/lb");
    let set = [("LB_PORT".to_string(), "8080".to_string())];
    let pin = pin::use_recipe(recipe, project.path(), &dest, &set).unwrap();
    assert_eq!(
        (pin.name.as_str(), pin.version.as_str()),
        ("web-lb", recipe.version())
    );
    assert_eq!(pin.hash, recipe.hash);
    assert_eq!(pin.path, Path::new("infra/lb"));
    assert_eq!(pin.vars["LB_PORT"], "8080");
    assert_eq!(pin.vars["BALANCE"], "roundrobin", "defaults fill the rest");
    let scenario = std::fs::read_to_string(dest.join("rehearse.yaml")).unwrap();
    assert!(scenario.contains("LB_PORT: \"8080\"") && scenario.contains("http://lb:8080/"));
    assert!(!scenario.contains("{{"));
    // Scripts keep their executable bit.
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        std::fs::metadata(dest.join("lb.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0
    );
    // The copy runs as a scenario.
    Scenario::from_path(&dest).unwrap();
    let lock = LockFile::read(project.path()).unwrap();
    assert_eq!(lock.recipes, vec![pin]);

    // Unknown variables and non-empty destinations are refused, leaving nothing.
    let e = pin::use_recipe(
        recipe,
        project.path(),
        &project.path().join("x"),
        &[("PORT".into(), "1".into())],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("no variable PORT") && e.contains("LB_PORT"),
        "{e}"
    );
    assert!(!project.path().join("x").exists());
    let e = pin::use_recipe(recipe, project.path(), &dest, &[])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
    assert_eq!(LockFile::read(project.path()).unwrap().recipes.len(), 1);
}

#[test]
fn verify_reports_version_content_and_copy_drift() {
    let (tmp, cat) = scratch(&["ssh-hardening", "time-sync"]);
    let project = tempfile::tempdir().unwrap();
    let none = |_: rehearse_scenario::Event<'_>| {};
    for name in ["ssh-hardening", "time-sync"] {
        pin::use_recipe(
            cat.get(name).unwrap(),
            project.path(),
            &project.path().join(name),
            &[],
        )
        .unwrap();
    }
    let reports = pin::verify(None, None, &cat, project.path(), &none, &|_| {}).unwrap();
    assert!(reports.iter().all(|r| r.ok()), "{reports:?}");

    // The catalogue changes ssh-hardening without a new version, and time-sync with one.
    let script = tmp.path().join("ssh-hardening/harden.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace("MaxAuthTries", "MaxSessions 4\nMaxAuthTries"),
    )
    .unwrap();
    let meta = tmp.path().join("time-sync/recipe.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("version: \"1.0.0\"", "version: \"1.1.0\""),
    )
    .unwrap();
    // And the project edits its copy of time-sync.
    let copy = project.path().join("time-sync/chrony.sh");
    let text = std::fs::read_to_string(&copy).unwrap();
    std::fs::write(&copy, format!("{text}\n# local change\n")).unwrap();

    let cat = Catalogue::load(tmp.path()).unwrap();
    let reports = pin::verify(None, None, &cat, project.path(), &none, &|_| {}).unwrap();
    let ssh = reports.iter().find(|r| r.name == "ssh-hardening").unwrap();
    assert!(
        matches!(ssh.drift.as_slice(), [Drift::ContentChanged { .. }]),
        "{:?}",
        ssh.drift
    );
    let time = reports.iter().find(|r| r.name == "time-sync").unwrap();
    assert!(
        matches!(time.drift.as_slice(), [Drift::VersionChanged { pinned, catalogue }, Drift::CopyEdited { .. }] if pinned == "1.0.0" && catalogue == "1.1.0"),
        "{:?}",
        time.drift
    );
    assert!(time.drift[0]
        .to_string()
        .contains("pinned 1.0.0, catalogue 1.1.0"));

    // A recipe gone from the catalogue, and a copy gone from the project.
    std::fs::remove_dir_all(tmp.path().join("time-sync")).unwrap();
    std::fs::remove_dir_all(project.path().join("ssh-hardening")).unwrap();
    let cat = Catalogue::load(tmp.path()).unwrap();
    let reports = pin::verify(None, None, &cat, project.path(), &none, &|_| {}).unwrap();
    assert!(reports[0]
        .drift
        .iter()
        .any(|d| matches!(d, Drift::CopyMissing { .. })));
    assert!(reports[1].drift.contains(&Drift::RemovedFromCatalogue));

    // A project without pins is told so.
    let empty = tempfile::tempdir().unwrap();
    let e = pin::verify(None, None, &cat, empty.path(), &none, &|_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no pinned recipes"), "{e}");
}
