//! The content-addressed image cache under `<state>/images`.
//!
//! `<id>/rootfs` is an image; `<id>/image.json` is written last, after a rename
//! from a `.build-*` folder, so an image without it (a build that was killed) is
//! never used. `names/<name>` points a name at the id it was last built as.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rehearse_spec::{builtin_image, ImageSpec, BUILTIN_IMAGES};

use crate::{build, customize, shift, ImageError, BASE_PACKAGES, UID_BASE};

/// Bumped whenever the way an image is prepared changes, so old cache entries
/// are not mistaken for new ones.
const RECIPE_VERSION: u32 = 10;

/// A built, ready-to-use image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub spec: ImageSpec,
    pub uid_base: u32,
    pub built_at: u64,
    pub build_secs: f64,
    pub size_bytes: u64,
    /// For an image saved from a node: the id of the image the node booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For an image saved from a node: which node of which cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// For an imported image: the source it was imported from, as skopeo read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Image {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// The image cache.
#[derive(Debug, Clone)]
pub struct ImageCache {
    pub(crate) root: PathBuf,
}

impl ImageCache {
    pub fn new(state_dir: &Path) -> Self {
        ImageCache {
            root: state_dir.join("images"),
        }
    }

    /// The content address of a spec: what is built, and how.
    pub fn id_of(spec: &ImageSpec) -> String {
        let key = serde_json::json!({
            "spec": spec,
            "base": BASE_PACKAGES,
            "recipe": RECIPE_VERSION,
            "uid_base": UID_BASE,
        });
        let digest = Sha256::digest(key.to_string().as_bytes());
        hex::encode(&digest[..8])
    }

    /// The spec a name stands for: a built-in, or the spec of a cached image.
    pub fn spec_for(&self, name: &str) -> Result<ImageSpec, ImageError> {
        if let Some(spec) = builtin_image(name) {
            return Ok(spec);
        }
        if let Some(image) = self.by_name(name)? {
            return Ok(image.spec);
        }
        Err(ImageError::Unknown {
            name: name.to_string(),
            known: self.known_names().join(", "),
        })
    }

    /// Every name an image can be asked for by: the built-in ones, then the
    /// names of images in the cache (saved, imported, built from spec files).
    pub fn known_names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN_IMAGES.iter().map(|s| s.to_string()).collect();
        let mut cached: Vec<String> = fs::read_dir(self.root.join("names"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !names.contains(n))
            .filter(|n| self.by_name(n).ok().flatten().is_some())
            .collect();
        cached.sort();
        names.extend(cached);
        names
    }

    /// Returns the ready image for `spec`, building it first if needed. Concurrent
    /// callers wait for one build instead of racing.
    pub fn ensure(&self, spec: &ImageSpec, progress: &dyn Fn(&str)) -> Result<Image, ImageError> {
        // An image saved from a node or imported cannot be rebuilt from its
        // spec: it is the one its name points at (its spec names the
        // distribution it is, which need not be one mmdebstrap builds).
        if let Some(saved) = self.by_name(&spec.name)? {
            if (saved.parent.is_some() || saved.imported.is_some()) && saved.spec == *spec {
                return Ok(saved);
            }
        }
        spec.validate()?;
        let id = Self::id_of(spec);
        if let Some(image) = self.load(&id)? {
            self.set_name(&spec.name, &id)?;
            return Ok(image);
        }
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io("creating", &self.root, e))?;
        let _lock = self.lock(&id)?;
        if let Some(image) = self.load(&id)? {
            return Ok(image);
        }
        let started = std::time::Instant::now();
        let staging = self.staging(&id)?;
        (|| {
            let rootfs = staging.rootfs();
            progress(&format!(
                "building image {} ({} {}) with mmdebstrap",
                spec.name, spec.distro, spec.suite
            ));
            let state_dir = self.root.parent().unwrap_or(&self.root);
            build::mmdebstrap(spec, &rootfs, state_dir, progress)?;
            build::sign_sources(spec, &rootfs)?;
            build::apt_caches(spec, &rootfs, progress);
            progress("preparing the image for container boot");
            customize::prepare(&rootfs)?;
            progress("shifting ownership to the node UID range");
            shift::shift_tree(&rootfs, UID_BASE)?;
            Ok::<_, ImageError>(())
        })()?;
        let final_dir = self.root.join(&id);
        let image = Image {
            id: id.clone(),
            name: spec.name.clone(),
            spec: spec.clone(),
            uid_base: UID_BASE,
            built_at: now(),
            build_secs: started.elapsed().as_secs_f64(),
            size_bytes: du(&staging.rootfs()),
            parent: None,
            origin: None,
            imported: None,
            dir: final_dir,
        };
        staging.commit(self, &image)?;
        progress(&format!("image {} ready ({id})", spec.name));
        Ok(image)
    }

    /// Every complete image in the cache.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut images = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(images);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "names" {
                continue;
            }
            // An entry this build cannot read (written by a newer rehearse
            // sharing the state directory, or damaged) is not this build's
            // to use; it must not hide every other image.
            match self.load(&name) {
                Ok(Some(image)) => images.push(image),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(image = %name, error = %e, "skipping an image this build cannot read")
                }
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name).then(b.built_at.cmp(&a.built_at)));
        Ok(images)
    }

    /// The image a name currently points at, if built.
    pub fn by_name(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let link = self.root.join("names").join(name);
        match fs::read_to_string(&link) {
            Ok(id) => self.load(id.trim()),
            Err(_) => Ok(None),
        }
    }

    /// Finds an image by name or id (or id prefix).
    pub fn find(&self, name_or_id: &str) -> Result<Option<Image>, ImageError> {
        if let Some(image) = self.by_name(name_or_id)? {
            return Ok(Some(image));
        }
        let matches: Vec<Image> = self
            .list()?
            .into_iter()
            .filter(|i| i.id.starts_with(name_or_id))
            .collect();
        Ok(if matches.len() == 1 {
            matches.into_iter().next()
        } else {
            None
        })
    }

    /// Removes an image from the cache. The caller checks it is not in use.
    pub fn remove(&self, image: &Image) -> Result<(), ImageError> {
        let _lock = self.lock(&image.id)?;
        let names = self.root.join("names");
        if let Ok(entries) = fs::read_dir(&names) {
            for entry in entries.flatten() {
                if fs::read_to_string(entry.path())
                    .map(|s| s.trim() == image.id)
                    .unwrap_or(false)
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        // Drop the marker first: a half-removed image must never look complete.
        let _ = fs::remove_file(image.dir.join("image.json"));
        remove_tree(&image.dir)
    }

    /// Removes staging folders of builds whose builder is gone.
    pub fn remove_stale_builds(&self) -> Result<usize, ImageError> {
        let mut removed = 0;
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".build-") else {
                continue;
            };
            let pid: Option<i32> = rest.rsplit('-').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
                continue;
            }
            remove_tree(&entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    pub(crate) fn load(&self, id: &str) -> Result<Option<Image>, ImageError> {
        let dir = self.root.join(id);
        let meta = dir.join("image.json");
        let Ok(text) = fs::read_to_string(&meta) else {
            return Ok(None);
        };
        let mut image: Image = serde_json::from_str(&text).map_err(|e| {
            ImageError::io(
                "reading",
                &meta,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        if !dir.join("rootfs").is_dir() {
            return Ok(None);
        }
        image.dir = dir;
        Ok(Some(image))
    }

    /// A fresh staging folder for image `id`.
    pub(crate) fn staging(&self, id: &str) -> Result<Staging, ImageError> {
        let dir = self
            .root
            .join(format!(".build-{id}-{}", std::process::id()));
        remove_tree(&dir)?;
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }

    pub(crate) fn set_name(&self, name: &str, id: &str) -> Result<(), ImageError> {
        let names = self.root.join("names");
        fs::create_dir_all(&names).map_err(|e| ImageError::io("creating", &names, e))?;
        // One temporary file per call: threads of one process (recipe proofs
        // side by side) name the same image at the same moment.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = names.join(format!(".{name}.{}.{n}", std::process::id()));
        fs::write(&tmp, id).map_err(|e| ImageError::io("writing", &tmp, e))?;
        fs::rename(&tmp, names.join(name)).map_err(|e| ImageError::io("writing", &names, e))
    }

    pub(crate) fn lock(&self, id: &str) -> Result<Flock<fs::File>, ImageError> {
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io("creating", &self.root, e))?;
        let path = self.root.join(format!(".lock-{id}"));
        crate::lock::exclusive(&path).map_err(|e| ImageError::io(e.action, &path, e.source))
    }
}

/// An image being made: a folder of its own in the cache (named after the
/// image and this process, so `gc` knows a dead builder's), removed unless
/// it is committed. Built, imported and saved images are all made in one.
pub(crate) struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image's root filesystem is made.
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Moves the folder into place as `image` (its `dir`), writes its record
    /// and gives it its name.
    pub(crate) fn commit(mut self, cache: &ImageCache, image: &Image) -> Result<(), ImageError> {
        remove_tree(&image.dir)?;
        fs::rename(&self.dir, &image.dir)
            .map_err(|e| ImageError::io("moving image into", &image.dir, e))?;
        self.committed = true;
        write_json(&image.dir.join("image.json"), image)?;
        cache.set_name(&image.name, &image.id)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_tree(&self.dir);
        }
    }
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(value).expect("image metadata serialises");
    fs::write(&tmp, text).map_err(|e| ImageError::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ImageError::io("writing", path, e))
}

pub(crate) fn remove_tree(path: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("removing", path, e)),
    }
}

pub(crate) fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ImageSpec {
        ImageSpec::from_yaml(&format!("name: {name}\nsuite: bookworm\n"), "test").unwrap()
    }

    #[test]
    fn a_half_built_image_is_never_used() {
        let home = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(home.path());
        let s = spec("half");
        let id = ImageCache::id_of(&s);
        // A build killed after the rename but before the metadata was written,
        // and one killed while still staging.
        std::fs::create_dir_all(home.path().join("images").join(&id).join("rootfs")).unwrap();
        std::fs::create_dir_all(
            home.path()
                .join("images")
                .join(format!(".build-{id}-999999"))
                .join("rootfs"),
        )
        .unwrap();
        std::fs::create_dir_all(home.path().join("images/names")).unwrap();
        std::fs::write(home.path().join("images/names/half"), &id).unwrap();
        assert!(cache.list().unwrap().is_empty());
        assert!(cache.by_name("half").unwrap().is_none());
        assert!(cache.find(&id).unwrap().is_none());
        assert_eq!(
            cache.remove_stale_builds().unwrap(),
            1,
            "the dead builder's staging folder goes"
        );
    }

    #[test]
    fn an_image_this_build_cannot_read_hides_no_other() {
        let home = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(home.path());
        let unreadable = home.path().join("images/0123456789abcdef");
        std::fs::create_dir_all(unreadable.join("rootfs")).unwrap();
        std::fs::write(
            unreadable.join("image.json"),
            "{\"a_field\": \"from a newer build\"}",
        )
        .unwrap();
        assert!(cache.list().unwrap().is_empty());
        assert!(cache.find("0123").unwrap().is_none());
    }

    #[test]
    fn a_complete_image_is_found_by_name_and_id_prefix() {
        let home = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(home.path());
        let s = spec("done");
        let id = ImageCache::id_of(&s);
        let dir = home.path().join("images").join(&id);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let image = Image {
            id: id.clone(),
            name: "done".into(),
            spec: s.clone(),
            uid_base: UID_BASE,
            built_at: 1,
            build_secs: 1.0,
            size_bytes: 1,
            parent: None,
            origin: None,
            imported: None,
            dir: dir.clone(),
        };
        write_json(&dir.join("image.json"), &image).unwrap();
        cache.set_name("done", &id).unwrap();
        assert_eq!(cache.by_name("done").unwrap().unwrap().id, id);
        assert_eq!(cache.find(&id[..6]).unwrap().unwrap().name, "done");
        assert_eq!(cache.spec_for("done").unwrap(), s);
        cache.remove(&image).unwrap();
        assert!(cache.list().unwrap().is_empty());
        assert!(!dir.exists());
    }

    #[test]
    fn content_address_follows_the_spec() {
        let a = spec("a");
        let mut b = a.clone();
        b.packages.push("nginx".into());
        assert_ne!(ImageCache::id_of(&a), ImageCache::id_of(&b));
        assert_eq!(ImageCache::id_of(&a), ImageCache::id_of(&a.clone()));
        let full = ImageSpec {
            full_files: true,
            ..a.clone()
        };
        let no_lists = ImageSpec {
            package_lists: false,
            ..a.clone()
        };
        let ids = [&a, &full, &no_lists].map(ImageCache::id_of);
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
    }
}
