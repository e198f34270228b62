//! Peer baselines: the deployment of examples/nginx-lb (HAProxy on lb,
//! round-robin to nginx on web1 and web2, systemd in every node) done by
//! another tool on the same host, alternating with `rehearse run` of the
//! example, so both see the same host load.
//!
//! `molecule`: Molecule with the podman driver running its default test
//! sequence (create, converge, idempotence, verify, destroy) over the role and
//! checks in crates/bench/peer/nginx-lb. The node image is rehearse's own
//! built-in image imported into podman, so both sides start from the same
//! files. What it needs is installed when it is missing, never in CI: podman
//! and runc from apt, Molecule and Ansible in a venv of the benchmark's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use rehearse_spec::DEFAULT_IMAGE;

use crate::stats::{self, Samples};

/// The name the node image gets in podman's store; removed again at the end.
const PODMAN_IMAGE: &str = "localhost/rehearse-peer-debian-12:latest";
/// The podman network of the Molecule scenario (crates/bench/peer/nginx-lb).
const PODMAN_NETWORK: &str = "rehearse-peer";
/// What the venv gets from PyPI: the `ansible` package carries the
/// containers.podman collection the podman driver needs.
const PIP_PACKAGES: [&str; 3] = ["molecule", "molecule-plugins[podman]", "ansible"];

/// The peer tool measured against rehearse.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Tool {
    /// Molecule with the podman driver.
    Molecule,
}

pub fn bench(tool: Tool, scenario: &Path, runs: usize, json: bool) -> anyhow::Result<()> {
    match tool {
        Tool::Molecule => molecule(scenario, runs, json),
    }
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peer")
}

/// `rehearse run SCENARIO` (the CLI, wall time) and `molecule test` of the
/// same deployment, alternately, `runs` times each after one untimed run of
/// each (package cache, page cache and Python's bytecode warm).
fn molecule(scenario: &Path, runs: usize, json: bool) -> anyhow::Result<()> {
    let bin = crate::chaos::rehearse_bin()?;
    let scenario = scenario
        .canonicalize()
        .with_context(|| format!("the scenario {}", scenario.display()))?;
    let work = rehearse_image::state_dir().join("bench").join("peer");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let molecule = Molecule::install(&work)?;
    import_image(&molecule)?;

    let result = (|| -> anyhow::Result<(Samples, Samples)> {
        let mut ours = Samples::new("rehearse run examples/nginx-lb (wall time)");
        let mut peer = Samples::new("molecule test, podman driver, same role");
        eprintln!("warm-up: one run of each, untimed");
        rehearse_run(&bin, &scenario)?;
        molecule.test()?;
        for i in 0..runs {
            eprintln!("run {}/{runs}", i + 1);
            ours.push(rehearse_run(&bin, &scenario)?);
            peer.push(molecule.test()?);
        }
        Ok((ours, peer))
    })();
    molecule.remove_image();
    let (ours, peer) = result?;
    let ratio = peer.median() / ours.median();
    stats::print(&[ours, peer], 0, json);
    if !json {
        println!("rehearse is {ratio:.1}x faster than Molecule (medians)");
    }
    Ok(())
}

fn rehearse_run(bin: &Path, scenario: &Path) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .arg("run")
        .arg(scenario)
        .stdin(Stdio::null())
        .output()
        .context("running rehearse")?;
    let took = t0.elapsed();
    if !out.status.success() {
        bail!(
            "rehearse run {} failed ({}):\n{}{}",
            scenario.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Molecule in a venv of the benchmark's own, driving podman with runc.
struct Molecule {
    venv: PathBuf,
    containers_conf: PathBuf,
    log: PathBuf,
}

impl Molecule {
    fn install(work: &Path) -> anyhow::Result<Molecule> {
        for (tool, package) in [("podman", "podman"), ("runc", "runc")] {
            if !on_path(tool) {
                eprintln!("installing {package} (apt)");
                run(Command::new("apt-get").args(["install", "-y", "-q", package]))?;
            }
        }
        let venv = work.join("venv");
        if !venv.join("bin/molecule").is_file() {
            eprintln!("installing Molecule and Ansible into {}", venv.display());
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
            run(Command::new(venv.join("bin/pip"))
                .args(["install", "-q"])
                .args(PIP_PACKAGES))?;
        }
        // crun refuses to start containers on a host whose cgroups are in
        // hybrid mode (v1 controllers with cgroup2 holding one too); runc runs
        // the same systemd containers on every cgroup layout.
        let containers_conf = work.join("containers.conf");
        std::fs::write(&containers_conf, "[engine]\nruntime = \"runc\"\n")
            .with_context(|| format!("writing {}", containers_conf.display()))?;
        Ok(Molecule {
            venv,
            containers_conf,
            log: work.join("molecule.log"),
        })
    }

    fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.containers_conf);
        cmd
    }

    /// One `molecule test` (its default sequence, destroy at both ends).
    fn test(&self) -> anyhow::Result<Duration> {
        let path = format!(
            "{}:{}",
            self.venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let t0 = Instant::now();
        let status = Command::new(self.venv.join("bin/molecule"))
            .arg("test")
            .current_dir(peer_dir().join("nginx-lb"))
            .env("PATH", path)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("PY_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running molecule")?;
        let took = t0.elapsed();
        if !status.success() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "molecule test failed ({status}); the whole log is {}:\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
        Ok(took)
    }

    /// Removes the imported image and anything a failed run left of the
    /// scenario (its containers and network).
    fn remove_image(&self) {
        for name in ["lb", "web1", "web2"] {
            let _ = self
                .podman()
                .args(["rm", "-f", "--ignore", name])
                .stdout(Stdio::null())
                .status();
        }
        let _ = self
            .podman()
            .args(["network", "rm", "-f", PODMAN_NETWORK])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self
            .podman()
            .args(["rmi", "-f", PODMAN_IMAGE])
            .stdout(Stdio::null())
            .status();
    }
}

/// rehearse's built-in image as a podman image: its rootfs as a tar whose
/// ownership is what a node sees (the image's UID shift undone), with systemd
/// as the command.
fn import_image(molecule: &Molecule) -> anyhow::Result<()> {
    let images = rehearse_image::ImageCache::new(&rehearse_image::state_dir());
    let spec = images.spec_for(DEFAULT_IMAGE)?;
    let image = images.ensure(&spec, &|m| eprintln!("image: {m}"))?;
    eprintln!("importing {} ({}) into podman", image.name, image.id);
    let mut tar = Command::new("python3")
        .arg(peer_dir().join("rootfs-tar.py"))
        .arg(image.rootfs())
        .arg(image.uid_base.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("running python3 for the rootfs tar")?;
    let stdout = tar.stdout.take().context("the tar's output")?;
    let import = molecule
        .podman()
        .args([
            "import",
            "--change",
            "CMD [\"/sbin/init\"]",
            "-",
            PODMAN_IMAGE,
        ])
        .stdin(stdout)
        .stdout(Stdio::null())
        .status()
        .context("running podman import")?;
    let tar = tar.wait()?;
    if !tar.success() || !import.success() {
        bail!("importing the image into podman failed (tar: {tar}, podman import: {import})");
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd);
    }
    Ok(())
}
