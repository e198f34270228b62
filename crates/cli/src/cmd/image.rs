use std::path::PathBuf;

use anyhow::Context;

use rehearse_api::history::{ImageEntry, ImageRequest, Nothing};
use rehearse_api::Command;
use rehearse_image::ImageSpec;

use super::answer;
use super::mcp::api;

use crate::output::{print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Build an image (a built-in name, or a spec file) unless it is cached.
    Build {
        /// Built-in image name: debian-11, debian-12, debian-13, ubuntu-22.04,
        /// ubuntu-24.04 (default debian-12); NAME-full (e.g. debian-12-full) keeps
        /// docs, man pages and locales.
        #[arg(conflicts_with = "file")]
        name: Option<String>,
        /// An image spec file (YAML: name, distro, suite, packages, post_install).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Import any systemd OCI image as a node image: an OCI layout folder, an
    /// OCI archive, a docker archive (`docker save`, `podman save`) or a
    /// registry reference (pulled with skopeo).
    Import {
        /// The image: a path, or a reference such as quay.io/org/image:tag
        /// (explicit skopeo transports oci:, oci-archive:, docker-archive:,
        /// docker:// are accepted as well).
        source: String,
        /// The name nodes ask for it by (`image:` in a topology, `--platform`).
        #[arg(long)]
        name: String,
    },
    /// List cached images.
    Ls,
    /// Remove a cached image.
    Rm {
        /// Image name or id.
        image: String,
    },
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let cache = engine.images();
    match args.command {
        Sub::Build { name, file } => {
            let spec = match (file, name) {
                (Some(path), _) => ImageSpec::from_path(&path)?,
                (None, Some(name)) => cache.spec_for(&name)?,
                (None, None) => cache.spec_for(rehearse_spec::DEFAULT_IMAGE)?,
            };
            let spinner = Spinner::new(json);
            let image = cache
                .ensure(&spec, &|msg| spinner.set(msg.to_string()))
                .context("building the image")?;
            spinner.finish();
            if json {
                print_json(&ImageEntry::from(&image));
            } else {
                println!(
                    "image {} ({}) ready at {}",
                    image.name,
                    image.id,
                    image.rootfs().display()
                );
            }
        }
        Sub::Import { source, name } => {
            let spinner = Spinner::new(json);
            let imported = cache.import(&source, &name, &|msg| spinner.set(msg.to_string()));
            spinner.finish();
            let image = imported.with_context(|| format!("importing {source} as {name}"))?;
            if json {
                print_json(&ImageEntry::from(&image));
            } else {
                println!(
                    "image {} ({}, {} {}) imported from {} in {:.1}s: use it with `image: {}` or `--platform {}`",
                    image.name,
                    image.id,
                    image.spec.distro,
                    image.spec.suite,
                    source,
                    image.build_secs,
                    image.name,
                    image.name
                );
            }
        }
        Sub::Ls => {
            let list = answer!(api()?.execute(Command::Images(Nothing {}), None)?, Images);
            if json {
                print_json(&list);
            } else if list.images.is_empty() {
                println!("no images (the first `rehearse up` builds debian-12)");
            } else {
                println!(
                    "{:<16} {:<8} {:<9} {:<10} {:<18} {:>8}  BUILT",
                    "NAME", "DISTRO", "RELEASE", "SUITE", "ID", "SIZE"
                );
                for i in &list.images {
                    let saved = i
                        .origin
                        .as_deref()
                        .map(|o| format!("  saved from {o}"))
                        .or_else(|| {
                            i.imported
                                .as_deref()
                                .map(|s| format!("  imported from {s}"))
                        })
                        .unwrap_or_default();
                    let release = match (&i.release, &i.imported) {
                        (Some(r), _) => r.as_str(),
                        (None, Some(_)) => i.suite.as_str(),
                        (None, None) => "-",
                    };
                    println!(
                        "{:<16} {:<8} {:<9} {:<10} {:<18} {:>6}MB  {}s ago{saved}",
                        i.name,
                        i.distro,
                        release,
                        i.suite,
                        i.id,
                        i.size_bytes / 1_000_000,
                        rehearse_sandbox::host::now_secs().saturating_sub(i.built_at)
                    );
                }
            }
        }
        Sub::Rm { image } => {
            let removed = answer!(
                api()?.execute(Command::ImageRemove(ImageRequest { image }), None)?,
                ImageRemove
            );
            if json {
                print_json(&removed);
            } else {
                println!("removed image {} ({})", removed.name, removed.removed);
            }
        }
    }
    Ok(0)
}
