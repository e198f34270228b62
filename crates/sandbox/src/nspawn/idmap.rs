//! Idmapped bind mounts: the same files on disk, seen with their owners
//! shifted into another UID range.
//!
//! The golden image is shifted to its base range once, when it is built. Each
//! node runs in a host UID range of its own; its overlay's layers (the image
//! below, the node's own layer above) are idmapped bind mounts that show the
//! image's range as the node's. Nothing is copied or chowned per node, and
//! everything on disk (upper layers, snapshots, saved images) stays in the
//! image's range. Overlayfs itself cannot be idmapped, but its layers can
//! (Linux 5.19 and later).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};

use crate::SandboxError;

/// `MOUNT_ATTR_IDMAP` of `<linux/mount.h>`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `<linux/mount.h>` (the first published size).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One line of a user namespace's UID and GID map: `count` ids from
/// `inside` on are `outside` on.
#[derive(Debug, Clone, Copy)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A user namespace that exists only to carry an id mapping for idmapped
/// mounts; no process stays in it.
pub struct MappingNs {
    fd: OwnedFd,
}

impl MappingNs {
    /// Creates a user namespace with `map` as both its UID and GID map.
    pub fn new(map: &[IdRange]) -> Result<Self, SandboxError> {
        let err = |what: &'static str, e: std::io::Error| {
            SandboxError::io(what, "a mapping user namespace", e)
        };
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| err("creating a pipe for", e.into()))?;
        let (done_r, done_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| err("creating a pipe for", e.into()))?;
        // SAFETY: the child only makes async-signal-safe system calls
        // (close, unshare, write, read, _exit) on file descriptors opened
        // before the fork, and never returns into Rust code.
        let child = match unsafe { nix::unistd::fork() } {
            // SAFETY: as above: raw system calls only, then _exit.
            Ok(nix::unistd::ForkResult::Child) => unsafe {
                // The child keeps only its own ends: its read of `done` then
                // ends when the parent closes its end or dies, so a parent
                // killed half-way never leaves the child waiting forever.
                libc::close(done_w.as_raw_fd());
                libc::close(ready_r.as_raw_fd());
                let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    1
                } else {
                    0
                };
                libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
                let mut b = 0u8;
                libc::read(done_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            },
            Ok(nix::unistd::ForkResult::Parent { child }) => child,
            Err(e) => return Err(err("forking for", e.into())),
        };
        drop(ready_w);
        drop(done_r);
        let result = write_maps(child.as_raw(), ready_r, map);
        // The namespace lives on through its fd; the child is not needed.
        drop(done_w);
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        result.map(|fd| MappingNs { fd })
    }
}

/// Waits for the child to have unshared its user namespace, writes its maps
/// and opens the namespace.
fn write_maps(child: i32, ready: OwnedFd, map: &[IdRange]) -> Result<OwnedFd, SandboxError> {
    let mut ok = [0u8];
    if File::from(ready).read_exact(&mut ok).is_err() || ok[0] != 1 {
        return Err(SandboxError::io(
            "creating",
            "a mapping user namespace",
            std::io::Error::other("unshare(CLONE_NEWUSER) failed"),
        ));
    }
    let text: String = map
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect();
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{child}/{file}");
        // The whole map must arrive in a single write.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| SandboxError::io("writing", &path, e))?;
    }
    let path = format!("/proc/{child}/ns/user");
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| SandboxError::io("opening", &path, e))
}

/// Bind-mounts `source` at `target`, with file owners mapped through `ns`.
pub fn bind_idmapped(source: &Path, target: &Path, ns: &MappingNs) -> Result<(), SandboxError> {
    let tree = open_tree(
        rustix::fs::CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| SandboxError::io("cloning the mount of", source, e.into()))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.fd.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) on a mount fd we own, with an empty path and
    // AT_EMPTY_PATH, reading a `struct mount_attr` of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(SandboxError::io(
            "idmapping a mount of",
            source,
            std::io::Error::last_os_error(),
        ));
    }
    move_mount(
        tree.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| SandboxError::io("mounting an idmapped view at", target, e.into()))
}
