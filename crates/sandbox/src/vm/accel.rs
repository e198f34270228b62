//! Which accelerator VMs use. `/dev/kvm` existing, or even opening, proves
//! little: under some nested hypervisors a real guest kernel hangs on it. So
//! the answer comes from booting the guest kernel once with KVM (to the
//! initramfs, which prints a marker and powers off) and is cached under the
//! state directory, keyed by the host kernel, the QEMU build and the guest
//! kernel; `REHEARSE_VM_ACCEL=kvm|tcg` overrides it.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host;
use crate::SandboxError;

use super::kernel::Kernel;

/// How long the probe guest may take: with working KVM it is done in well
/// under a second.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's instruction translator: works everywhere, many times slower.
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// The accelerator and why it was chosen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub accelerator: Accelerator,
    pub detail: String,
    /// What the answer depends on; a change means probing again.
    pub key: String,
}

/// The accelerator for VMs on this host, probed once per host kernel, QEMU and
/// guest kernel.
pub fn detect(state_dir: &Path, kernel: &Kernel, initrd: &Path) -> Result<Probe, SandboxError> {
    if let Ok(forced) = std::env::var("REHEARSE_VM_ACCEL") {
        let accelerator = match forced.as_str() {
            "kvm" => Accelerator::Kvm,
            "tcg" => Accelerator::Tcg,
            other => {
                return Err(SandboxError::BadPath(format!(
                    "REHEARSE_VM_ACCEL is \"{other}\"; set it to kvm or tcg, or unset it to have the host probed"
                )))
            }
        };
        return Ok(Probe {
            accelerator,
            detail: "set by REHEARSE_VM_ACCEL".into(),
            key: String::new(),
        });
    }
    let key = format!(
        "host {} / {} / guest {}",
        host_release(),
        qemu_version(),
        kernel.id
    );
    let cache = state_dir.join("vm/accel.json");
    if let Some(cached) = fs::read_to_string(&cache)
        .ok()
        .and_then(|t| serde_json::from_str::<Probe>(&t).ok())
        .filter(|p| p.key == key)
    {
        return Ok(cached);
    }
    let (accelerator, detail) = match probe_kvm(kernel, initrd) {
        Ok(ms) => (
            Accelerator::Kvm,
            format!("/dev/kvm booted the guest kernel in {ms} ms"),
        ),
        Err(why) => (Accelerator::Tcg, format!("KVM unusable: {why}")),
    };
    let probe = Probe {
        accelerator,
        detail,
        key,
    };
    if let Some(dir) = cache.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&probe).expect("probe serialises");
    fs::write(&cache, text).map_err(|e| SandboxError::io("writing", &cache, e))?;
    Ok(probe)
}

/// The cached answer, if any, without probing.
pub fn cached(state_dir: &Path) -> Option<Probe> {
    fs::read_to_string(state_dir.join("vm/accel.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn probe_kvm(kernel: &Kernel, initrd: &Path) -> Result<u64, String> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let started = Instant::now();
    let mut child = Command::new(super::qemu::QEMU)
        .args([
            "-M",
            "microvm,accel=kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-smp",
            "1",
        ])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 reboot=t panic=-1 quiet rehearse.probe=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", super::qemu::QEMU))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a guest kernel did not boot within {} s under KVM (a nested hypervisor that cannot run it?)",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if out.contains("REHEARSE-PROBE-OK") {
        Ok(started.elapsed().as_millis() as u64)
    } else {
        Err(format!(
            "the KVM guest ended ({status}) without booting: {}",
            err.lines().last().unwrap_or("no message")
        ))
    }
}

fn host_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn qemu_version() -> String {
    host::run(
        "asking QEMU its version",
        Command::new(super::qemu::QEMU).arg("--version"),
    )
    .ok()
    .and_then(|s| s.lines().next().map(str::to_string))
    .unwrap_or_else(|| "qemu (unknown)".into())
}
