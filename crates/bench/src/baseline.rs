//! The baseline: one plain `systemd-nspawn --boot` of the same golden image over
//! an overlay, timed from spawn to the READY=1 that systemd sends when boot is
//! complete. No network, no SSH, no seeding: what nspawn and systemd cost alone.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use rehearse_image::{Image, UID_RANGE};

pub fn nspawn_boot(image: &Image) -> anyhow::Result<Duration> {
    let dir = rehearse_image::state_dir()
        .join("bench")
        .join(format!("baseline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["upper", "work", "root"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::os::unix::fs::chown(
        dir.join("upper"),
        Some(image.uid_base),
        Some(image.uid_base),
    )?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        image.rootfs().display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &dir.join("root"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .context("mounting the baseline overlay")?;
    // nspawn with a user namespace and --keep-unit needs a cgroup of its own.
    let cgroups: Vec<std::path::PathBuf> = [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(|r| {
        std::path::Path::new(r)
            .join("rehearse-bench")
            .join(std::process::id().to_string())
    })
    .filter(|p| {
        p.parent()
            .and_then(|q| q.parent())
            .is_some_and(|r| r.join("cgroup.procs").exists())
    })
    .collect();
    for cg in &cgroups {
        std::fs::create_dir_all(cg)?;
    }
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    notify.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut cmd = Command::new("systemd-nspawn");
    cmd.args([
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--boot",
        "--notify-ready=yes",
        "--console=pipe",
    ])
    .arg(format!("--directory={}", dir.join("root").display()))
    .arg(format!("--machine=rhbench{}", std::process::id()))
    .arg(format!("--private-users={}:{}", image.uid_base, UID_RANGE))
    .arg("--private-users-ownership=off")
    .env("NOTIFY_SOCKET", &notify_path)
    .env("SYSTEMD_NSPAWN_LOCK", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let procs: Vec<std::ffi::CString> = cgroups
        .iter()
        .map(|c| {
            std::ffi::CString::new(c.join("cgroup.procs").into_os_string().into_encoded_bytes())
                .unwrap()
        })
        .collect();
    // SAFETY: only raw open/write/close between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc_open(p);
                if fd >= 0 {
                    nix::libc::write(fd, b"0".as_ptr().cast(), 1);
                    nix::libc::close(fd);
                }
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting systemd-nspawn")?;
    let mut buf = [0u8; 4096];
    let result = loop {
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!(
                "baseline node did not report READY in 60 s"
            ));
        }
        match notify.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                break Ok(started.elapsed())
            }
            _ => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(anyhow::anyhow!(
                "baseline systemd-nspawn exited with {status}"
            ));
        }
    };
    // Tear down: kill everything in the cgroups, unmount, remove.
    for cg in &cgroups {
        let _ = std::fs::write(cg.join("cgroup.kill"), "1");
    }
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    for cg in cgroups.iter().rev() {
        while std::fs::remove_dir(cg).is_err() && Instant::now() < deadline {
            for sub in std::fs::read_dir(cg)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
            {
                let _ = std::fs::remove_dir(sub.path());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = nix::mount::umount2(&dir.join("root"), nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(format!(
        "/run/systemd/nspawn/propagate/rhbench{}",
        std::process::id()
    ));
    match result {
        Ok(d) => Ok(d),
        Err(e) => bail!(e),
    }
}

fn libc_open(path: &std::ffi::CStr) -> i32 {
    // SAFETY: a valid C string; open is async-signal-safe.
    unsafe { nix::libc::open(path.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC) }
}
