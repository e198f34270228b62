//! The QEMU command line of a node: a `microvm` machine (no PCI, no firmware
//! tables beyond what Linux needs, no emulated legacy devices besides one
//! serial port), direct kernel boot, virtio-mmio disk, network cards and
//! readiness port.

use std::path::PathBuf;

use super::accel::Accelerator;

pub const QEMU: &str = "qemu-system-x86_64";

/// Everything that differs between two VMs.
pub struct VmSpec {
    pub name: String,
    pub accelerator: Accelerator,
    pub memory_mb: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub disk: PathBuf,
    /// (tap device, MAC address) per interface, in interface order.
    pub nics: Vec<(String, String)>,
    pub console_log: PathBuf,
    pub ready_socket: PathBuf,
}

impl VmSpec {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let (machine, cpu) = match self.accelerator {
            // With KVM the in-kernel LAPIC does the PIT's and PIC's work.
            Accelerator::Kvm => (
                "microvm,accel=kvm,pit=off,pic=off,rtc=on,x-option-roms=off",
                "host",
            ),
            Accelerator::Tcg => ("microvm,accel=tcg,rtc=on,x-option-roms=off", "max"),
        };
        push(&["-name", &self.name, "-M", machine, "-cpu", cpu]);
        push(&[
            "-m",
            &self.memory_mb.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        push(&["-monitor", "none"]);
        push(&["-serial", &format!("file:{}", self.console_log.display())]);
        push(&["-kernel", &self.kernel.display().to_string()]);
        push(&["-initrd", &self.initrd.display().to_string()]);
        push(&["-append", &self.cmdline]);
        // A disposable disk: the guest's flushes need not reach the host's disk.
        push(&[
            "-drive",
            &format!(
                "id=root,file={},format=qcow2,if=none,cache=unsafe,discard=unmap",
                self.disk.display()
            ),
            "-device",
            "virtio-blk-device,drive=root",
        ]);
        for (i, (tap, mac)) in self.nics.iter().enumerate() {
            push(&[
                "-netdev",
                &format!("tap,id=net{i},ifname={tap},script=no,downscript=no"),
                "-device",
                &format!("virtio-net-device,netdev=net{i},mac={mac}"),
            ]);
        }
        push(&[
            "-device",
            "virtio-serial-device",
            "-chardev",
            &format!("socket,id=ready,path={}", self.ready_socket.display()),
            "-device",
            &format!(
                "virtserialport,chardev=ready,name={}",
                super::guest::READY_PORT
            ),
        ]);
        a
    }
}

/// The kernel command line. Kept short on purpose: every parameter here is
/// either needed or saves boot time.
pub fn cmdline(accelerator: Accelerator, init: &str) -> String {
    let mut c = vec![
        "console=ttyS0",
        "root=/dev/vda",
        "rw",
        // A panic or a reboot ends the VM (QEMU runs with -no-reboot).
        "panic=-1",
        "reboot=t",
        // eth0, eth1, ... as the cluster names them.
        "net.ifnames=0",
        "quiet",
        "loglevel=4",
        // The disk is fresh from a base that was never mounted dirty.
        "fsck.mode=skip",
        "8250.nr_uarts=1",
        "systemd.show_status=error",
        // Units a disposable node has no use for.
        "systemd.mask=apt-daily.timer",
        "systemd.mask=apt-daily-upgrade.timer",
        "systemd.mask=e2scrub_reap.service",
        "systemd.mask=systemd-timesyncd.service",
    ];
    if accelerator == Accelerator::Kvm {
        // kvmclock is exact: skip the TSC calibration and timer checks.
        c.extend(["tsc=reliable", "no_timer_check"]);
    }
    let mut s = c.join(" ");
    if accelerator == Accelerator::Tcg {
        // Under TCG the guest's TSC is the host's, and calibrating it against
        // the emulated PIT fails on a busy host, leaving the kernel without a
        // clock (it hangs after "Marking TSC unstable"): give it the rate.
        if let Some(khz) = host_tsc_khz() {
            s += &format!(" tsc_early_khz={khz}");
        }
    }
    s += &format!(" rehearse.init={init}");
    s
}

/// The host CPU's clock rate in kHz, as the kernel measured it.
fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64).filter(|k| *k > 0)
}

/// A locally administered MAC address unique to a cluster, node and interface.
pub fn mac_address(cluster: &str, node_index: usize, nic: usize) -> String {
    let id = u32::from_str_radix(cluster, 16).unwrap_or(0);
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (id >> 16) & 0xff,
        (id >> 8) & 0xff,
        id & 0xff,
        node_index & 0xff,
        nic & 0xff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_differ_per_node_and_interface_and_are_locally_administered() {
        let a = mac_address("a1b2c3", 0, 0);
        assert_eq!(a, "02:a1:b2:c3:00:00");
        assert_ne!(a, mac_address("a1b2c3", 1, 0));
        assert_ne!(a, mac_address("a1b2c3", 0, 1));
        assert_ne!(a, mac_address("a1b2c4", 0, 0));
    }
}
