//! Images saved from nodes: a node's disk as it is now (the image it booted
//! with the node's changes on top), stored like any built image so that later
//! clusters boot it by name. Such an image records its parent and origin and
//! is never rebuilt: its spec only says what it started from.

use std::fs;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use rehearse_spec::{builtin_image, ImageSpec};

use crate::cache::{du, now};
use crate::{Image, ImageCache, ImageError};

/// Files every node gets at creation (its own keys, its cluster's client key):
/// they must not travel with an image into other clusters.
const NODE_IDENTITY: &[&str] = &[
    "etc/ssh/ssh_host_ed25519_key",
    "etc/ssh/ssh_host_ed25519_key.pub",
    "etc/ssh/ssh_known_hosts",
    "root/.ssh/authorized_keys",
    "root/.ssh/id_ed25519",
    "root/.ssh/id_ed25519.pub",
];

impl ImageCache {
    /// Adds an image named `name` whose root filesystem `fill` writes into the
    /// (not yet existing) folder it is given. `parent` is the image the node
    /// booted; `origin` says which node it was. The name must be new.
    pub fn add_saved<E: From<ImageError>>(
        &self,
        name: &str,
        parent: &Image,
        origin: &str,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Image, E> {
        let spec = ImageSpec {
            name: name.to_string(),
            ..parent.spec.clone()
        };
        spec.validate().map_err(ImageError::from)?;
        if builtin_image(name).is_some() {
            return Err(ImageError::NameTaken {
                name: name.to_string(),
                id: "built-in".into(),
            }
            .into());
        }
        if let Some(existing) = self.by_name(name)? {
            return Err(ImageError::NameTaken {
                name: name.to_string(),
                id: existing.id,
            }
            .into());
        }
        let started = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = serde_json::json!({
            "saved_from": parent.id, "name": name, "origin": origin, "at": nanos.to_string(),
        });
        let id = hex::encode(&Sha256::digest(key.to_string().as_bytes())[..8]);
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io("creating", &self.root, e))?;
        let _lock = self.lock(&id)?;
        let staging = self.staging(&id)?;
        let rootfs = staging.rootfs();
        fill(&rootfs).and_then(|()| forget_node_identity(&rootfs).map_err(E::from))?;
        let final_dir = self.root.join(&id);
        let image = Image {
            id: id.clone(),
            name: name.to_string(),
            spec,
            uid_base: parent.uid_base,
            built_at: now(),
            build_secs: started.elapsed().as_secs_f64(),
            size_bytes: du(&rootfs),
            parent: Some(parent.id.clone()),
            origin: Some(origin.to_string()),
            imported: None,
            dir: final_dir,
        };
        staging.commit(self, &image).map_err(E::from)?;
        Ok(image)
    }
}

/// Removes what made the root filesystem one particular node's: its keys, its
/// machine id. Nodes booted from the image get their own at creation.
fn forget_node_identity(root: &Path) -> Result<(), ImageError> {
    for rel in NODE_IDENTITY {
        let path = root.join(rel);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ImageError::io("removing", &path, e))
            }
            _ => {}
        }
    }
    let machine_id = root.join("etc/machine-id");
    if machine_id.exists() {
        fs::write(&machine_id, "").map_err(|e| ImageError::io("emptying", &machine_id, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::write_json;

    fn parent(cache_home: &Path) -> Image {
        let spec = ImageSpec::from_yaml("name: base\nsuite: bookworm\n", "test").unwrap();
        let id = ImageCache::id_of(&spec);
        let dir = cache_home.join("images").join(&id);
        fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        let image = Image {
            id,
            name: "base".into(),
            spec,
            uid_base: crate::UID_BASE,
            built_at: 1,
            build_secs: 1.0,
            size_bytes: 1,
            parent: None,
            origin: None,
            imported: None,
            dir: dir.clone(),
        };
        write_json(&dir.join("image.json"), &image).unwrap();
        image
    }

    #[test]
    fn a_saved_image_is_found_by_name_never_rebuilt_and_keeps_no_node_keys() {
        let home = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(home.path());
        let base = parent(home.path());
        let saved = cache
            .add_saved("web-ready", &base, "node1 of cluster abc123", |rootfs| {
                fs::create_dir_all(rootfs.join("etc/ssh")).unwrap();
                fs::write(rootfs.join("etc/ssh/ssh_host_ed25519_key"), "secret").unwrap();
                fs::write(rootfs.join("etc/machine-id"), "0123").unwrap();
                fs::write(rootfs.join("etc/app.conf"), "kept").unwrap();
                Ok::<(), ImageError>(())
            })
            .unwrap();
        assert_eq!(saved.parent.as_deref(), Some(base.id.as_str()));
        assert_ne!(saved.id, base.id);
        let root = saved.rootfs();
        assert_eq!(
            fs::read_to_string(root.join("etc/app.conf")).unwrap(),
            "kept"
        );
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert_eq!(fs::read_to_string(root.join("etc/machine-id")).unwrap(), "");

        // What `up` does with `image: web-ready`: the saved image, not a build.
        let spec = cache.spec_for("web-ready").unwrap();
        let ensured = cache
            .ensure(&spec, &|_| panic!("nothing to build"))
            .unwrap();
        assert_eq!(ensured.id, saved.id);
        assert_eq!(cache.list().unwrap().len(), 2);

        let taken = cache
            .add_saved("web-ready", &base, "again", |_| Ok::<(), ImageError>(()))
            .unwrap_err();
        assert!(matches!(taken, ImageError::NameTaken { .. }), "{taken}");
        let builtin = cache
            .add_saved("debian-12", &base, "x", |_| Ok::<(), ImageError>(()))
            .unwrap_err();
        assert!(builtin.to_string().contains("another name"), "{builtin}");
        let bad = cache
            .add_saved("Bad/Name", &base, "x", |_| Ok::<(), ImageError>(()))
            .unwrap_err();
        assert!(bad.to_string().contains("Bad/Name"), "{bad}");

        // A failed fill leaves nothing behind.
        let failed = cache.add_saved("broken", &base, "x", |_| Err(ImageError::NoMmdebstrap));
        assert!(failed.is_err());
        assert!(cache.by_name("broken").unwrap().is_none());
        let leftovers: Vec<_> = fs::read_dir(home.path().join("images"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".build-"))
            .collect();
        assert!(leftovers.is_empty());

        cache.remove(&saved).unwrap();
        assert!(cache.by_name("web-ready").unwrap().is_none());
        assert!(!saved.dir.exists());
    }
}
