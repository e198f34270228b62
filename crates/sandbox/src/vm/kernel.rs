//! The guest kernel: a Debian kernel package, fetched once through apt and kept
//! unpacked under `<state>/vm/kernels/<sha256 of the .deb>`, so a given kernel
//! is stored once and every VM of every cluster boots the same bytes.
//!
//! By default the kernel is Debian's `cloud` flavour (`linux-image-cloud-amd64`):
//! built for virtual machines, about a quarter of the size of the generic one.
//! `REHEARSE_VM_KERNEL` names another package (e.g. `linux-image-amd64`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::host;
use crate::SandboxError;

/// The package asked for when `REHEARSE_VM_KERNEL` is unset.
pub const DEFAULT_KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Content address: the first 16 hex digits of the package's SHA-256.
    pub id: String,
    /// The package it came from, with its version.
    pub package: String,
    /// `uname -r` of the kernel (its folder under `/lib/modules`).
    pub release: String,
    pub dir: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir
            .join("root/boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    /// `lib/modules/<release>` of the package.
    pub fn modules(&self) -> PathBuf {
        self.dir.join("root/lib/modules").join(&self.release)
    }
}

fn kernels_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("vm/kernels")
}

/// The package to use: `REHEARSE_VM_KERNEL` or the cloud kernel.
pub fn wanted_package() -> String {
    std::env::var("REHEARSE_VM_KERNEL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_KERNEL_PACKAGE.to_string())
}

/// The kernel for `package`, downloaded and unpacked on first use. The caller
/// holds the VM cache lock.
pub fn ensure(state_dir: &Path, package: &str) -> Result<Kernel, SandboxError> {
    let root = kernels_dir(state_dir);
    fs::create_dir_all(&root).map_err(|e| SandboxError::io("creating", &root, e))?;
    // A package name resolves to a content address once; the pointer is what
    // makes later boots skip apt entirely.
    let pointer = root.join(format!("{package}.id"));
    if let Ok(id) = fs::read_to_string(&pointer) {
        if let Ok(kernel) = load(&root.join(id.trim())) {
            return Ok(kernel);
        }
    }
    host::require_tools(&["apt-get", "apt-cache", "dpkg-deb"])?;
    let concrete = resolve(package)?;
    let tmp = root.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| SandboxError::io("creating", &tmp, e))?;
    let result = (|| {
        host::run(
            &format!("downloading the guest kernel package {concrete}"),
            Command::new("apt-get")
                .current_dir(&tmp)
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(&concrete),
        )?;
        let deb = fs::read_dir(&tmp)
            .map_err(|e| SandboxError::io("listing", &tmp, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| {
                SandboxError::io(
                    "finding the downloaded kernel in",
                    &tmp,
                    std::io::Error::other(format!("apt-get download {concrete} left no .deb")),
                )
            })?;
        let bytes = fs::read(&deb).map_err(|e| SandboxError::io("reading", &deb, e))?;
        let id = hex::encode(&Sha256::digest(&bytes)[..8]);
        let dir = root.join(&id);
        if load(&dir).is_err() {
            let unpack = tmp.join("unpack");
            fs::create_dir_all(&unpack).map_err(|e| SandboxError::io("creating", &unpack, e))?;
            host::run(
                "unpacking the guest kernel",
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(unpack.join("root")),
            )?;
            let name = deb
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            fs::write(unpack.join("package"), name)
                .map_err(|e| SandboxError::io("writing", &unpack, e))?;
            let _ = fs::remove_dir_all(&dir);
            fs::rename(&unpack, &dir).map_err(|e| SandboxError::io("storing", &dir, e))?;
        }
        fs::write(&pointer, &id).map_err(|e| SandboxError::io("writing", &pointer, e))?;
        load(&dir)
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// A metapackage (`linux-image-cloud-amd64`) names the current versioned one.
fn resolve(package: &str) -> Result<String, SandboxError> {
    let out = host::run(
        &format!("looking up the kernel package {package}"),
        Command::new("apt-cache").args(["depends", package]),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|dep| dep.starts_with("linux-image-") && !dep.starts_with('<'))
        .map(str::to_string)
        .unwrap_or_else(|| package.to_string()))
}

fn load(dir: &Path) -> Result<Kernel, SandboxError> {
    let modules = dir.join("root/lib/modules");
    let release = fs::read_dir(&modules)
        .map_err(|e| SandboxError::io("reading", &modules, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| {
            SandboxError::io(
                "reading",
                &modules,
                std::io::Error::other("no kernel release"),
            )
        })?;
    let kernel = Kernel {
        id: dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        package: fs::read_to_string(dir.join("package")).unwrap_or_default(),
        release,
        dir: dir.to_path_buf(),
    };
    if !kernel.vmlinuz().is_file() {
        return Err(SandboxError::io(
            "reading",
            kernel.vmlinuz(),
            std::io::Error::other("the kernel package holds no vmlinuz"),
        ));
    }
    Ok(kernel)
}

/// Module name → file, for every module of the kernel.
pub fn module_index(kernel: &Kernel) -> std::collections::HashMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut std::collections::HashMap<String, PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko") {
                    out.insert(stem.replace('-', "_"), path.clone());
                }
            }
        }
    }
    let mut index = std::collections::HashMap::new();
    walk(&kernel.modules().join("kernel"), &mut index);
    index
}

/// The modules a module needs, from its `.modinfo` section (`depends=a,b`).
pub fn module_depends(file: &Path) -> Vec<String> {
    let Ok(bytes) = fs::read(file) else {
        return Vec::new();
    };
    let key = b"\0depends=";
    bytes
        .windows(key.len())
        .position(|w| w == key)
        .map(|at| {
            let rest = &bytes[at + key.len()..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the modules built into the kernel image (nothing to load).
pub fn builtin_modules(kernel: &Kernel) -> std::collections::HashSet<String> {
    fs::read_to_string(kernel.modules().join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(|n| n.replace('-', "_"))
        .collect()
}

/// `wanted` and everything they depend on, dependencies first; modules built
/// into the kernel are left out.
pub fn load_order(
    index: &std::collections::HashMap<String, PathBuf>,
    builtin: &std::collections::HashSet<String>,
    wanted: &[&str],
) -> Result<Vec<(String, PathBuf)>, String> {
    fn visit(
        name: &str,
        index: &std::collections::HashMap<String, PathBuf>,
        builtin: &std::collections::HashSet<String>,
        out: &mut Vec<(String, PathBuf)>,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<(), String> {
        if !seen.insert(name.to_string()) || builtin.contains(name) {
            return Ok(());
        }
        let file = index
            .get(name)
            .ok_or_else(|| format!("the kernel has no module {name}"))?;
        for dep in module_depends(file) {
            visit(&dep, index, builtin, out, seen)?;
        }
        out.push((name.to_string(), file.clone()));
        Ok(())
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in wanted {
        visit(name, index, builtin, &mut out, &mut seen)?;
    }
    Ok(out)
}
