//! Container nodes share the host's kernel: a sysctl outside the node's network
//! namespace, loading a module, or swap and most mounts are refused there, with
//! messages ("Read-only file system", "Operation not permitted") that do not say
//! why. Commands on container nodes are watched for these refusals, and a
//! failing one gets a last line naming the node and the fix: `backend: vm`.

use std::io::Write;

/// Words of a tool that works on the kernel itself, and of its refusal.
const KERNEL_TOOLS: &[&str] = &[
    "sysctl",
    "/proc/sys/",
    "modprobe",
    "insmod",
    "rmmod",
    "swapon",
    "kexec",
];
const REFUSALS: &[&str] = &[
    "read-only file system",
    "operation not permitted",
    "permission denied",
    "not found in directory /lib/modules",
    "could not insert",
    "cannot open moddep",
    "could not open moddep",
];

/// Whether a line of error output is the kernel refusing a change a container
/// cannot make.
pub fn is_kernel_refusal(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    // Network sysctls belong to the node's own namespace: a refusal there is
    // something else.
    if lower.contains("net.") || lower.contains("/proc/sys/net/") {
        return false;
    }
    KERNEL_TOOLS.iter().any(|t| lower.contains(t)) && REFUSALS.iter().any(|r| lower.contains(r))
}

/// The line added after a refused kernel-level change on a container node.
pub fn hint(node: &str, refusal: &str) -> String {
    format!(
        "rehearse: node {node} is a container sharing the host's kernel, which refused a kernel-level change ({}). \
         Give {node} a kernel of its own: set `backend: vm` on it in the topology (or pass --backend vm).\n",
        refusal.trim()
    )
}

/// Passes error output through while remembering the first kernel refusal.
pub struct Watch<'a> {
    inner: &'a mut (dyn Write + Send),
    line: Vec<u8>,
    pub refusal: Option<String>,
}

impl<'a> Watch<'a> {
    pub fn new(inner: &'a mut (dyn Write + Send)) -> Self {
        Watch {
            inner,
            line: Vec::new(),
            refusal: None,
        }
    }

    fn scan(&mut self) {
        if self.refusal.is_none() {
            let text = String::from_utf8_lossy(&self.line);
            if is_kernel_refusal(&text) {
                self.refusal = Some(text.trim().to_string());
            }
        }
        self.line.clear();
    }

    /// Looks at a last line without a newline.
    pub fn finish(&mut self) {
        if !self.line.is_empty() {
            self.scan();
        }
    }
}

impl Write for Watch<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        for b in &buf[..n] {
            if *b == b'\n' {
                self.scan();
            } else if self.line.len() < 4096 {
                self.line.push(*b);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_refusals_are_told_apart_from_other_failures() {
        for line in [
            "sysctl: setting key \"vm.swappiness\": Read-only file system",
            "sh: 1: cannot create /proc/sys/kernel/pid_max: Read-only file system",
            "modprobe: FATAL: Module dummy not found in directory /lib/modules/6.18.4",
            "insmod: ERROR: could not insert module x.ko: Operation not permitted",
            "swapon: /swapfile: swapon failed: Operation not permitted",
        ] {
            assert!(is_kernel_refusal(line), "{line}");
        }
        for line in [
            "sysctl: setting key \"net.ipv4.ip_forward\": Read-only file system",
            "cat: /etc/shadow: Permission denied",
            "sysctl: cannot stat /proc/sys/vm/nope: No such file or directory",
            "E: Unable to locate package foo",
        ] {
            assert!(!is_kernel_refusal(line), "{line}");
        }
    }

    #[test]
    fn output_passes_through_unchanged_and_the_refusal_is_kept() {
        let mut sink = Vec::new();
        let mut w = Watch::new(&mut sink);
        w.write_all(b"first\nsysctl: setting key \"vm.swappiness\": Read-only ")
            .unwrap();
        w.write_all(b"file system\n").unwrap();
        w.finish();
        let refusal = w.refusal.clone().unwrap();
        assert!(refusal.starts_with("sysctl: setting key"), "{refusal}");
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "first\nsysctl: setting key \"vm.swappiness\": Read-only file system\n"
        );
        let h = hint("web1", &refusal);
        assert!(
            h.contains("node web1") && h.contains("`backend: vm`"),
            "{h}"
        );
    }
}
