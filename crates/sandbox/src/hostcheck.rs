//! The host check behind `rehearse doctor`: every host requirement, what is
//! missing and how to fix it. (Not the converge loop's rules doctor, which
//! fixes code.)

use serde::Serialize;

use crate::host;
use crate::packages::{self, Need};

#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when not ok.
    pub fix: Option<String>,
    /// Whether clusters can start without it.
    pub required: bool,
}

fn which(tool: &str) -> Option<String> {
    host::which(tool).map(|p| p.display().to_string())
}

pub fn run_checks() -> Vec<HostCheck> {
    let mut checks = Vec::new();
    let root = host::is_root();
    checks.push(HostCheck {
        name: "root".into(),
        ok: root,
        detail: if root { "running as root".into() } else { "not root".into() },
        fix: (!root).then(|| "run rehearse as root (sudo): it mounts overlays and creates bridges, cgroups and namespaces".into()),
        required: true,
    });
    let packages = packages::check(|need| need != Need::Test);
    let vm_packages_ok = packages
        .iter()
        .filter(|p| p.package.need == Need::Vm)
        .all(|p| p.ok());
    checks.extend(packages.into_iter().map(HostCheck::from));
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let overlay = filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"));
    checks.push(HostCheck {
        name: "overlayfs".into(),
        ok: overlay,
        detail: if overlay {
            "overlay filesystem available".into()
        } else {
            "overlay missing from /proc/filesystems".into()
        },
        fix: (!overlay).then(|| {
            "load the overlay module (modprobe overlay) or use a kernel with CONFIG_OVERLAY_FS"
                .into()
        }),
        required: true,
    });
    let cgroups = crate::cgroup::Cgroups::discover();
    checks.push(HostCheck {
        name: "cgroup2".into(),
        ok: cgroups.is_ok(),
        detail: match &cgroups {
            Ok(c) => format!("{c:?}"),
            Err(e) => e.to_string(),
        },
        fix: cgroups.is_err().then(|| "boot with the unified or hybrid cgroup hierarchy (systemd.unified_cgroup_hierarchy)".into()),
        required: true,
    });
    let userns: u64 = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    checks.push(HostCheck {
        name: "user namespaces".into(),
        ok: userns > 0,
        detail: format!("max_user_namespaces = {userns}"),
        fix: (userns == 0).then(|| "sysctl -w user.max_user_namespaces=15000".into()),
        required: true,
    });
    let nft_ok = which("nft").is_some()
        && host::run(
            "listing nftables tables",
            std::process::Command::new("nft").args(["list", "tables"]),
        )
        .is_ok();
    checks.push(HostCheck {
        name: "nftables".into(),
        ok: nft_ok,
        detail: if nft_ok {
            "nft can read the ruleset".into()
        } else {
            "nft cannot talk to the kernel".into()
        },
        fix: (!nft_ok)
            .then(|| "apt-get install nftables, and make sure the kernel has nf_tables".into()),
        required: true,
    });
    checks.extend(impairment_checks());
    checks.extend(vm_checks(root, vm_packages_ok));
    checks.extend(capacity_checks(&rehearse_image::state_dir()));
    checks
}

/// How many more nodes fit now, and each limit in nodes. Not required: a
/// host that is full now is fine once clusters are gone; a warning names the
/// limit that stops a 4-node cluster and its fix.
pub fn capacity_checks(state_dir: &std::path::Path) -> Vec<HostCheck> {
    let capacity = crate::capacity::measure(state_dir);
    let tightest = capacity.tightest();
    let mut checks = vec![HostCheck {
        name: "capacity".into(),
        ok: capacity.fits >= 4,
        detail: format!(
            "{} more nodes fit now, limited by {} ({})",
            capacity.fits, tightest.name, tightest.detail
        ),
        fix: (capacity.fits < 4).then(|| tightest.fix.clone()),
        required: false,
    }];
    checks.extend(capacity.limits.iter().map(|l| HostCheck {
        name: format!("capacity: {}", l.name),
        ok: l.fits >= 4,
        detail: format!("{} nodes: {}", l.fits, l.detail),
        fix: Some(l.fix.clone()),
        required: false,
    }));
    checks
}

/// Which link impairments this kernel supports for faults (`partition`,
/// and `link` loss, rate and delay), and how rehearse does each here. Not
/// required: clusters start without them, only those faults are refused.
fn impairment_checks() -> Vec<HostCheck> {
    crate::fault::impairment_support()
        .into_iter()
        .map(|i| HostCheck {
            name: format!("impairment {}", i.name),
            ok: i.supported,
            fix: (!i.supported).then(|| i.how.clone()),
            detail: i.how,
            required: false,
        })
        .collect()
}

/// What VM nodes (`backend: vm`) need, and which accelerator they get. Not
/// required: clusters of containers start without any of it.
fn vm_checks(root: bool, tools_ok: bool) -> Vec<HostCheck> {
    let mut checks = Vec::new();
    let state_dir = rehearse_image::state_dir();
    // Probing boots the guest kernel once (fetched on first use) and caches
    // the answer; without root or QEMU only an earlier answer can be shown.
    let probe = if root && tools_ok {
        crate::vm::VmBackend::new(&state_dir)
            .accelerator()
            .map_err(|e| e.to_string())
    } else {
        crate::vm::VmBackend::cached_accelerator(&state_dir).ok_or_else(|| {
            "not probed yet: run the host check as root with QEMU installed".to_string()
        })
    };
    checks.push(match probe {
        Ok(p) => HostCheck {
            name: "vm accelerator".into(),
            ok: true,
            detail: format!("{} ({})", p.accelerator.as_str(), p.detail),
            fix: (p.accelerator == crate::vm::Accelerator::Tcg).then(|| {
                "VM nodes run under TCG, many times slower than with KVM: use a host where /dev/kvm runs guests (bare metal, or nested virtualisation enabled)".into()
            }),
            required: false,
        },
        Err(e) => HostCheck {
            name: "vm accelerator".into(),
            ok: false,
            detail: e,
            fix: Some("install the VM tools above, then run the host check again as root".into()),
            required: false,
        },
    });
    checks
}

/// One check per host package of `host-packages.txt` whose need `include`
/// accepts: installed, and its tools on PATH. `scripts/setup.sh` verifies
/// its installs with exactly these (`rehearse doctor --packages`).
pub fn package_checks(include: impl Fn(Need) -> bool) -> Vec<HostCheck> {
    packages::check(include)
        .into_iter()
        .map(HostCheck::from)
        .collect()
}

impl From<packages::Presence> for HostCheck {
    fn from(p: packages::Presence) -> HostCheck {
        HostCheck {
            name: format!("package {}", p.package.name),
            ok: p.ok(),
            detail: p.detail(),
            fix: p.fix(),
            required: p.package.need == Need::Cluster,
        }
    }
}
