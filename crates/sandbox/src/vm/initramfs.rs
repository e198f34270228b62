//! Initramfs: a shared part per kernel (busybox, the virtio modules, `/init`)
//! and a small per-node part appended to it (the node's seed files and the MAC
//! address of each interface name). The seed files travel this way because the
//! host never mounts a node's disk: `/init` copies them onto the root before
//! handing over.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::seed::SeedFile;
use crate::SandboxError;

use super::cpio::{Entry, Writer};
use super::guest;
use super::kernel::{self, Kernel};

/// Busybox must be the static build: the initramfs has no libraries.
const BUSYBOX: &str = "/bin/busybox";

/// Bumped whenever `/init` or the module set changes, so cached archives of an
/// older layout are not reused.
const LAYOUT: u32 = 1;

/// The shared part for `kernel`, built once and kept beside the kernel.
pub fn ensure_base(kernel: &Kernel) -> Result<PathBuf, SandboxError> {
    let path = kernel.dir.join(format!("initramfs-v{LAYOUT}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    let busybox = fs::read(BUSYBOX).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SandboxError::MissingTool {
                tool: "busybox".into(),
                package: "busybox-static".into(),
            }
        } else {
            SandboxError::io("reading", BUSYBOX, e)
        }
    })?;
    if busybox.windows(11).take(8192).any(|w| w == b"/lib64/ld-l") {
        return Err(SandboxError::MissingTool {
            tool: "busybox (static build)".into(),
            package: "busybox-static".into(),
        });
    }
    let index = kernel::module_index(kernel);
    let builtin = kernel::builtin_modules(kernel);
    let modules = kernel::load_order(&index, &builtin, guest::BOOT_MODULES).map_err(|reason| {
        SandboxError::io(
            "reading the modules of",
            kernel.modules(),
            std::io::Error::other(reason),
        )
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut w = Writer::new(BufWriter::new(fs::File::create(&tmp)?));
        for dir in ["/bin", "/lib", "/lib/modules", "/rehearse"] {
            w.add(&Entry::Dir {
                path: dir,
                mode: 0o755,
            })?;
        }
        w.add(&file("/init", guest::INITRAMFS_INIT.as_bytes(), 0o755))?;
        w.add(&file("/bin/busybox", &busybox, 0o755))?;
        let mut order = String::new();
        for (name, source) in &modules {
            let data = fs::read(source)?;
            w.add(&file(&format!("/lib/modules/{name}.ko"), &data, 0o644))?;
            order += &format!("{name}\n");
        }
        w.add(&file("/lib/modules/load-order", order.as_bytes(), 0o644))?;
        w.finish()?;
        Ok(())
    };
    write().map_err(|e| SandboxError::io("writing", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| SandboxError::io("storing", &path, e))?;
    Ok(path)
}

fn file<'a>(path: &'a str, data: &'a [u8], mode: u32) -> Entry<'a> {
    Entry::File {
        path,
        mode,
        uid: 0,
        gid: 0,
        data,
    }
}

/// Writes the node's initrd: the shared part followed by the node's own files
/// under `/rehearse/root` and its interface names in `/rehearse/nics`.
pub fn write_node_initrd(
    base: &Path,
    seeds: &[SeedFile],
    nics: &[(String, String)],
    dest: &Path,
) -> Result<(), SandboxError> {
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(fs::File::create(dest)?);
        std::io::copy(&mut fs::File::open(base)?, &mut out)?;
        let mut w = Writer::new(out);
        let nic_lines: String = nics
            .iter()
            .map(|(mac, name)| format!("{mac} {name}\n"))
            .collect();
        w.add(&file("/rehearse/nics", nic_lines.as_bytes(), 0o644))?;
        w.add(&Entry::Dir {
            path: "/rehearse/root",
            mode: 0o755,
        })?;
        let mut dirs: Vec<String> = Vec::new();
        for seed in seeds {
            // Parents first, each once, with the mode a fresh folder there has.
            let mut parent = String::new();
            let components: Vec<&str> = seed.path.trim_start_matches('/').split('/').collect();
            for c in &components[..components.len().saturating_sub(1)] {
                parent = format!("{parent}/{c}");
                if !dirs.contains(&parent) {
                    dirs.push(parent.clone());
                    let private = c.starts_with('.') || parent == "/root";
                    w.add(&Entry::Dir {
                        path: &format!("/rehearse/root{parent}"),
                        mode: if private { 0o700 } else { 0o755 },
                    })?;
                }
            }
            let path = format!("/rehearse/root{}", seed.path);
            if seed.is_symlink() {
                w.add(&Entry::Symlink {
                    path: &path,
                    target: &String::from_utf8_lossy(&seed.contents),
                })?;
            } else {
                w.add(&Entry::File {
                    path: &path,
                    mode: seed.mode,
                    uid: seed.uid,
                    gid: seed.gid,
                    data: &seed.contents,
                })?;
            }
        }
        w.finish()?;
        Ok(())
    };
    write().map_err(|e| SandboxError::io("writing", dest, e))
}
