//! Which link-impairment mechanisms this host's kernel and tools offer.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::host;

/// Whether the running kernel has a feature: `CONFIG_<option>` set in its
/// configuration (/proc/config.gz or /boot/config-<release>), or the module
/// loaded. `None` when the configuration cannot be read.
fn kernel_config(option: &str, module: &str) -> Option<bool> {
    static CONFIG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if Path::new("/sys/module").join(module).exists() {
        return Some(true);
    }
    let config = CONFIG.get_or_init(|| {
        let from_proc = Command::new("zcat")
            .arg("/proc/config.gz")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        from_proc.or_else(|| {
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .ok()?;
            std::fs::read_to_string(format!("/boot/config-{release}")).ok()
        })
    });
    let config = config.as_ref()?;
    let set = config.lines().any(|l| {
        l.strip_prefix(&format!("CONFIG_{option}="))
            .is_some_and(|v| v == "y" || v == "m")
    });
    Some(set)
}

fn kernel_has(option: &str, module: &str) -> bool {
    // Unknown configuration: assume a stock kernel, which has it as a module.
    kernel_config(option, module).unwrap_or(true)
}

/// How packets reach the delayer on this host: an nftables `queue` rule, or
/// the xtables NFQUEUE target through `iptables`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueBy {
    Nft,
    Iptables,
}

pub(super) fn queue_by() -> Option<QueueBy> {
    if kernel_has("NFT_QUEUE", "nft_queue") {
        Some(QueueBy::Nft)
    } else if kernel_config("NETFILTER_XT_TARGET_NFQUEUE", "xt_NFQUEUE").unwrap_or(false)
        && host::which("iptables").is_some()
    {
        Some(QueueBy::Iptables)
    } else {
        None
    }
}

/// Whether `tc ... netem` can be used on this kernel.
pub(crate) fn has_netem() -> bool {
    kernel_has("NET_SCH_NETEM", "sch_netem")
}

/// One kind of link impairment and whether this kernel supports it.
#[derive(Debug, Clone, Serialize)]
pub struct Impairment {
    pub name: &'static str,
    pub supported: bool,
    /// How rehearse does it here, or what is missing.
    pub how: String,
}

/// What link impairments this host's kernel supports, and how.
pub fn impairment_support() -> Vec<Impairment> {
    let nft = host::which("nft").is_some();
    let tc = host::which("tc").is_some();
    let netem = has_netem();
    let queue = queue_by();
    let tbf = kernel_has("NET_SCH_TBF", "sch_tbf");
    vec![
        Impairment {
            name: "partition",
            supported: nft,
            how: if nft { "nftables in the nodes' namespaces".into() } else { "needs nft (package nftables)".into() },
        },
        Impairment {
            name: "loss",
            supported: nft,
            how: if nft { "nftables numgen".into() } else { "needs nft (package nftables)".into() },
        },
        Impairment {
            name: "rate",
            supported: tc && tbf,
            how: if tc && tbf { "tbf qdisc".into() } else { "needs tc (iproute2) and the sch_tbf kernel module".into() },
        },
        Impairment {
            name: "delay",
            supported: netem || queue.is_some(),
            how: match (netem, queue) {
                (true, _) => "netem qdisc".into(),
                (false, Some(QueueBy::Nft)) => {
                    "no sch_netem in this kernel: nftables queue + rehearse's user-space delayer".into()
                }
                (false, Some(QueueBy::Iptables)) => {
                    "no sch_netem nor nft queue in this kernel: iptables NFQUEUE + rehearse's user-space delayer".into()
                }
                (false, None) => {
                    "needs sch_netem, or nfnetlink_queue with nft queue or the xtables NFQUEUE target (and iptables)".into()
                }
            },
        },
    ]
}
