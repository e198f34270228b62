//! Package installs in nodes: the default image's settings that make apt and
//! dpkg cheap, an install that still leaves a working package, and the
//! full-files variant that keeps documentation and man pages.

mod common;

use common::*;

/// cowsay ships a man page and documentation besides its licence.
const INSTALL: &str = "apt-get update && DEBIAN_FRONTEND=noninteractive \
                       apt-get install -y -qq cowsay >/dev/null";

/// Package lists in the node before any `apt-get update`, one per source.
const LISTS: &str = "ls /var/lib/apt/lists/ | grep -c '_Packages$'";

#[test]
fn a_default_node_installs_a_working_package_without_docs_and_with_prepared_lists() {
    let c = Cluster::up(&["--nodes", "1"]);
    let node = "node1";

    // The speed settings are in place.
    let dpkg = c.ok(node, "cat /etc/dpkg/dpkg.cfg.d/*");
    for line in [
        "force-unsafe-io",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/locale/*",
    ] {
        assert!(
            dpkg.lines().any(|l| l.trim() == line),
            "no `{line}` in the node's dpkg settings:\n{dpkg}"
        );
    }
    let apt = c.ok(node, "apt-config dump");
    assert!(
        apt.contains("APT::Install-Recommends \"false\";"),
        "recommends are installed:\n{apt}"
    );
    assert!(
        apt.lines()
            .any(|l| l.starts_with("Acquire::Languages") && l.contains("\"none\"")),
        "translations are fetched:\n{apt}"
    );
    // The node's layer is never synced to disk: what a run installs is
    // dropped with the cluster instead of being flushed first.
    let root = c.dir().join("nodes").join(node).join("root");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(root.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted:\n{mountinfo}", root.display()));
    assert!(
        line.contains("volatile"),
        "the node's overlay is synced: {line}"
    );
    // Lists from the image's build are there (main, updates, security), and
    // look old, so tools that refresh stale lists (Ansible) still do.
    assert_eq!(c.ok(node, LISTS), "3");
    assert_eq!(c.ok(node, "stat -c %Y /var/lib/apt/lists"), "0");
    // apt's binary caches were built from those lists and the final sources:
    // an apt command without an update opens them instead of parsing the lists.
    let opened = c.ok(
        node,
        "apt-cache -o Debug::pkgCacheGen=true policy 2>&1 >/dev/null",
    );
    assert!(
        opened.contains("Opened cache with hash") && !opened.contains("NOT valid"),
        "the image's apt caches are missing or stale:\n{opened}"
    );

    // `apt-get update` revalidates every source through the host's cache.
    let update = c.ok(node, INSTALL);
    for pocket in ["bookworm ", "bookworm-updates ", "bookworm-security "] {
        assert!(
            update
                .lines()
                .any(|l| l.contains(pocket) && l.contains("InRelease")),
            "apt-get update did not ask for the {pocket}release file:\n{update}"
        );
    }
    // The package is installed and works; its man page and docs were not unpacked.
    assert_eq!(
        c.ok(node, "dpkg-query -W -f='${Status}' cowsay"),
        "install ok installed"
    );
    assert!(c.ok(node, "/usr/games/cowsay moo").contains("moo"));
    c.ok(node, "dpkg -s cowsay >/dev/null");
    c.ok(node, "test -x /usr/games/cowthink");
    c.ok(node, "test ! -e /usr/share/man/man6/cowsay.6.gz");
    assert_eq!(
        c.ok(node, "find /usr/share/doc/cowsay -type f"),
        "/usr/share/doc/cowsay/copyright"
    );
}

#[test]
fn a_full_files_node_keeps_docs_and_man_pages() {
    let c = Cluster::up(&["--nodes", "1", "--image", "debian-12-full"]);
    let node = "node1";
    let dpkg = c.ok(node, "cat /etc/dpkg/dpkg.cfg.d/*");
    assert!(!dpkg.contains("path-exclude"), "{dpkg}");
    assert!(dpkg.contains("force-unsafe-io"), "{dpkg}");
    // Files the default image leaves out of its own packages are there.
    c.ok(node, "test -e /usr/share/man/man8/apt-get.8.gz");
    c.ok(node, "test -e /usr/share/doc/apt/changelog.gz");
    assert_eq!(c.ok(node, LISTS), "3");

    c.ok(node, INSTALL);
    // Every file the package ships is on disk.
    assert_eq!(c.ok(node, "dpkg --verify cowsay"), "");
    c.ok(node, "test -e /usr/share/man/man6/cowsay.6.gz");
    let docs = c.ok(node, "ls /usr/share/doc/cowsay");
    assert!(
        docs.lines().any(|f| f != "copyright"),
        "only the licence in /usr/share/doc/cowsay: {docs}"
    );
}
