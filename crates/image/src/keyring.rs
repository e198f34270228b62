//! The archive keys mmdebstrap verifies a distribution's packages with.
//!
//! A Debian host has Debian's keys (`debian-archive-keyring`). Ubuntu's keys come
//! from the host's `ubuntu-keyring` package when installed, else from that
//! same package in Debian's archive, fetched once into the image cache and
//! checked against the digest pinned here, so a mirror cannot slip in other keys.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::ImageError;

/// Where Debian's own package of Ubuntu's keys is found (`ubuntu-keyring`; the
/// `ubuntu-archive-keyring` package beside it only depends on this one).
const UBUNTU_KEYRING_DEB: &str =
    "http://deb.debian.org/debian/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1-0.2_all.deb";
/// Its SHA-256, as listed in Debian trixie's signed `Packages` index.
const UBUNTU_KEYRING_SHA256: &str =
    "b2e7ed48431bf9e7978ae810bbdaf253093570d6e3f864e575b7c13554b81174";
const UBUNTU_KEYRING_FILE: &str = "ubuntu-archive-keyring.gpg";

/// The keyring to pass to mmdebstrap for `distro`; `None` lets mmdebstrap use
/// the host's (Debian's keys on a Debian host).
pub(crate) fn for_distro(
    distro: &str,
    state_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<Option<PathBuf>, ImageError> {
    if distro != "ubuntu" {
        return Ok(None);
    }
    let host = Path::new("/usr/share/keyrings").join(UBUNTU_KEYRING_FILE);
    if host.is_file() {
        return Ok(Some(host));
    }
    let dir = state_dir.join("images/.keyrings");
    let path = dir.join(UBUNTU_KEYRING_FILE);
    if path.is_file() {
        return Ok(Some(path));
    }
    progress("fetching Ubuntu's archive keys from Debian's archive");
    fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
    let deb = fetch(UBUNTU_KEYRING_DEB).map_err(|why| ImageError::ArchiveUnreachable {
        name: "ubuntu".into(),
        archive: UBUNTU_KEYRING_DEB.into(),
        why,
    })?;
    let digest = hex::encode(Sha256::digest(&deb));
    if digest != UBUNTU_KEYRING_SHA256 {
        return Err(ImageError::BuildFailed {
            name: "ubuntu".into(),
            what: format!("{UBUNTU_KEYRING_DEB} has SHA-256 {digest}, not the expected {UBUNTU_KEYRING_SHA256}"),
            tail: "install the host package ubuntu-keyring instead (it provides /usr/share/keyrings/ubuntu-archive-keyring.gpg)".into(),
        });
    }
    let staging = tempdir_in(&dir)?;
    let result = extract(&deb, &staging, &path);
    let _ = fs::remove_dir_all(&staging);
    result?;
    Ok(Some(path))
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .and_then(|c| c.get(url).send())
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    response
        .take(1 << 20)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(body)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, ImageError> {
    let path = dir.join(format!(".extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).map_err(|e| ImageError::io("creating", &path, e))?;
    Ok(path)
}

/// Unpacks the keyring out of the package and moves it into place atomically.
fn extract(deb: &[u8], staging: &Path, target: &Path) -> Result<(), ImageError> {
    let file = staging.join("keyring.deb");
    fs::write(&file, deb).map_err(|e| ImageError::io("writing", &file, e))?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&file)
        .arg(staging.join("root"))
        .output()
        .map_err(|e| ImageError::io("running dpkg-deb on", &file, e))?;
    let key = staging
        .join("root/usr/share/keyrings")
        .join(UBUNTU_KEYRING_FILE);
    if !out.status.success() || !key.is_file() {
        return Err(ImageError::BuildFailed {
            name: "ubuntu".into(),
            what: format!("{UBUNTU_KEYRING_DEB} holds no {UBUNTU_KEYRING_FILE}"),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    fs::rename(&key, target).map_err(|e| ImageError::io("moving the keyring to", target, e))
}
