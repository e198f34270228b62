//! `recipe new`: a recipe folder that loads, and proves, as written, for the
//! author to turn into the real thing.

use std::path::{Path, PathBuf};

use crate::{Recipe, RecipeError};

const README: &str = "# {name}

What this recipe builds, in two or three sentences.

## Topology

One node, `node1`. Say which nodes and groups the recipe expects.

## Variables

| name | default | meaning |
| --- | --- | --- |
| `GREETING` | `hello` | the word written to /etc/{name}.conf |

## Use

```sh
rehearse recipe use {name} ./infra/{name} --set GREETING=hi
rehearse run ./infra/{name}
```

## What the proof shows

The checks in `rehearse.yaml`, on a fresh cluster, after the code ran twice.
";

const META: &str = "name: {name}
version: \"0.1.0\"
description: Writes a greeting to /etc/{name}.conf (replace with what the recipe builds).
tags: [example]
platforms: [debian-12]
topology: one node
variables:
  - name: GREETING
    default: hello
    description: the word written to /etc/{name}.conf
";

const SCRIPT: &str = "#!/bin/sh
# Applied as root on each node of the step; must be safe to run twice.
set -eu
conf=/etc/{name}.conf
if [ \"$(cat \"$conf\" 2>/dev/null)\" != \"$GREETING\" ]; then
    printf '%s\\n' \"$GREETING\" > \"$conf\"
fi
";

const SCENARIO: &str = "name: {name}
description: Proves the {name} recipe on a fresh node.
nodes: 1
steps:
  - shell: setup.sh
    env: {GREETING: \"{{GREETING}}\"}
checks:
  - file: /etc/{name}.conf
    contains: [\"{{GREETING}}\"]
";

/// Creates the recipe `name` in `catalogue` and loads it back.
pub fn new_recipe(catalogue: &Path, name: &str) -> Result<Recipe, RecipeError> {
    let dir: PathBuf = catalogue.join(name);
    if dir.exists() {
        return Err(RecipeError::Scaffold {
            message: format!(
                "{} already exists; choose another name or edit that recipe",
                dir.display()
            ),
        });
    }
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(RecipeError::Scaffold {
            message: format!(
                "\"{name}\" is not a recipe name: use lowercase letters, digits and `-`, starting with a letter (e.g. web-lb)"
            ),
        });
    }
    let write = |file: &str, text: &str, mode: u32| -> Result<(), RecipeError> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(file);
        std::fs::write(&path, text.replace("{name}", name)).map_err(|source| RecipeError::Io {
            path: path.clone(),
            source,
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|source| RecipeError::Io { path, source })
    };
    std::fs::create_dir_all(&dir).map_err(|source| RecipeError::Io {
        path: dir.clone(),
        source,
    })?;
    let result = (|| {
        write("README.md", README, 0o644)?;
        write("recipe.yaml", META, 0o644)?;
        write("setup.sh", SCRIPT, 0o755)?;
        write("rehearse.yaml", SCENARIO, 0o644)?;
        Recipe::load(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}
