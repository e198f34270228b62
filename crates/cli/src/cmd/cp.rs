use std::path::Path;

use serde_json::json;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Source: a host path, or NODE:PATH.
    src: String,
    /// Destination: a host path, or NODE:PATH. An existing folder receives the source inside it.
    dest: String,
}

/// `node1:/etc/x` → Some(("node1", "/etc/x")); host paths (also `./a:b`) → None.
fn node_path(s: &str) -> Option<(&str, &str)> {
    let (node, path) = s.split_once(':')?;
    let valid = !node.is_empty()
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (valid && path.starts_with('/')).then_some((node, path))
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    match (node_path(&args.src), node_path(&args.dest)) {
        (None, Some((node, path))) => {
            engine.copy_to_node(&args.cluster, node, Path::new(&args.src), path)?
        }
        (Some((node, path)), None) => {
            engine.copy_from_node(&args.cluster, node, path, Path::new(&args.dest))?
        }
        (Some(_), Some(_)) => {
            anyhow::bail!("both sides name a node; copy node to node through the host in two steps")
        }
        (None, None) => {
            anyhow::bail!("neither side names a node: write one side as NODE:/absolute/path")
        }
    }
    if json {
        print_json(
            &json!({"cluster": args.cluster, "src": args.src, "dest": args.dest, "copied": true}),
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::node_path;

    #[test]
    fn node_paths_need_a_name_and_an_absolute_path() {
        assert_eq!(node_path("node1:/etc/hosts"), Some(("node1", "/etc/hosts")));
        assert_eq!(node_path("./file:with-colon"), None);
        assert_eq!(node_path("node1:relative"), None);
        assert_eq!(node_path("/tmp/x"), None);
    }
}
