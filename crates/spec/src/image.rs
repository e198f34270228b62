//! Golden images: what a node boots from, described as a distribution release plus
//! extra packages and commands, so that an image can be rebuilt identically.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, SpecError};
use crate::names;
use crate::source::{self, FieldPath, Source};

/// Names of the images rehearse can build without a spec file.
pub const BUILTIN_IMAGES: &[&str] = &[
    "debian-11",
    "debian-12",
    "debian-13",
    "ubuntu-22.04",
    "ubuntu-24.04",
];

/// What makes a built-in image's name the name of its variant with every
/// file kept (`debian-12-full`): see [`ImageSpec::full_files`].
pub const FULL_FILES_SUFFIX: &str = "-full";

/// The mirror used when a Debian image spec names none.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The mirror used when an Ubuntu image spec names none.
pub const UBUNTU_MIRROR: &str = "http://archive.ubuntu.com/ubuntu";

/// Distributions the image builder knows how to bootstrap.
pub const SUPPORTED_DISTROS: &[&str] = &["debian", "ubuntu"];

/// Releases the image builder knows by code name: (distribution, suite,
/// release number). Other suites still build; they just show no number.
const RELEASES: &[(&str, &str, &str)] = &[
    ("debian", "bullseye", "11"),
    ("debian", "bookworm", "12"),
    ("debian", "trixie", "13"),
    ("debian", "forky", "14"),
    ("debian", "sid", "unstable"),
    ("debian", "unstable", "unstable"),
    ("ubuntu", "focal", "20.04"),
    ("ubuntu", "jammy", "22.04"),
    ("ubuntu", "noble", "24.04"),
];

/// A golden image: a Debian or Ubuntu release bootstrapped into a directory, plus
/// packages and commands on top.
///
/// ```yaml
/// name: web-base
/// suite: bookworm
/// packages: [nginx, curl]
/// post_install:
///   - systemctl enable nginx
/// ```
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rehearse image")]
pub struct ImageSpec {
    /// Name nodes use to refer to the image (`image:` in a topology), e.g. `debian-12`.
    pub name: String,
    /// Distribution: `debian` (default) or `ubuntu`.
    #[serde(default = "debian")]
    pub distro: String,
    /// Release to bootstrap by code name, e.g. `bookworm`, `trixie`, `noble`.
    pub suite: String,
    /// Package mirror. Default: `http://deb.debian.org/debian` for Debian,
    /// `http://archive.ubuntu.com/ubuntu` for Ubuntu.
    #[serde(default)]
    pub mirror: Option<String>,
    /// Archive components. Default: `main` for Debian, `main` and `universe`
    /// for Ubuntu.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Packages installed on top of rehearse's base set.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Shell commands run in the image root after the packages are installed.
    #[serde(default)]
    pub post_install: Vec<String>,
    /// Keep every file packages ship: documentation, man pages and locales are
    /// unpacked (in the image and by installs in its nodes) and man-db keeps
    /// its index up to date. Off by default: a disposable node installs
    /// faster without them. `<built-in>-full` (e.g. `debian-12-full`) is a
    /// built-in image with this on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_files: bool,
    /// Prepare `apt-get update` in nodes (the default): the package lists
    /// fetched while building stay in the image, so a node revalidates them
    /// through the host's package cache instead of downloading and unpacking
    /// every index, and the distribution's own sources name its archive
    /// keyring (`signed-by`), so release files are checked against that one
    /// keyring. Off, nodes start without lists and trust every key of
    /// `/etc/apt/trusted.gpg.d`, as in a stock image.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub package_lists: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

fn debian() -> String {
    "debian".to_owned()
}

/// The spec of a built-in image, such as `debian-12`.
///
/// Built-in images list no packages: the image builder adds the base set every
/// node needs (systemd, networking tools) to every image. A built-in name
/// followed by `-full` (`debian-12-full`) is the same image with
/// [`ImageSpec::full_files`] on.
pub fn builtin_image(name: &str) -> Option<ImageSpec> {
    let (base, full_files) = match name.strip_suffix(FULL_FILES_SUFFIX) {
        Some(base) => (base, true),
        None => (name, false),
    };
    let (distro, suite) = match base {
        "debian-11" => ("debian", "bullseye"),
        "debian-12" => ("debian", "bookworm"),
        "debian-13" => ("debian", "trixie"),
        "ubuntu-22.04" => ("ubuntu", "jammy"),
        "ubuntu-24.04" => ("ubuntu", "noble"),
        _ => return None,
    };
    Some(ImageSpec {
        name: name.to_owned(),
        distro: distro.to_owned(),
        suite: suite.to_owned(),
        mirror: None,
        components: Vec::new(),
        packages: Vec::new(),
        post_install: Vec::new(),
        full_files,
        package_lists: true,
    })
}

impl ImageSpec {
    /// Reads, parses and validates an image spec file.
    pub fn from_path(path: &Path) -> Result<ImageSpec, SpecError> {
        let text = source::read(path)?;
        ImageSpec::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates an image spec written in YAML; `origin` is the file
    /// name shown in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<ImageSpec, SpecError> {
        let source = Source::file(origin, text);
        if let Some(error) = source.duplicate_key() {
            return Err(error);
        }
        let spec: ImageSpec = serde_yaml::from_str(text).map_err(|e| source.yaml_error(&e))?;
        spec.validate_at(&source)?;
        Ok(spec)
    }

    /// Checks every rule of the format; errors name the field but carry no location.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_at(&Source::detached())
    }

    /// The mirror to bootstrap and install packages from.
    pub fn mirror_url(&self) -> &str {
        self.mirror
            .as_deref()
            .unwrap_or(match self.distro.as_str() {
                "ubuntu" => UBUNTU_MIRROR,
                _ => DEFAULT_MIRROR,
            })
    }

    /// The archive components to enable.
    pub fn components(&self) -> Vec<&str> {
        if !self.components.is_empty() {
            return self.components.iter().map(String::as_str).collect();
        }
        match self.distro.as_str() {
            "ubuntu" => vec!["main", "universe"],
            _ => vec!["main"],
        }
    }

    /// The release number of the suite (`12` for bookworm, `24.04` for noble),
    /// when the suite is one rehearse knows.
    pub fn release(&self) -> Option<&'static str> {
        RELEASES
            .iter()
            .find(|(distro, suite, _)| *distro == self.distro && *suite == self.suite)
            .map(|(_, _, release)| *release)
    }

    /// The JSON Schema of the YAML form, for editors and `rehearse schema`.
    pub fn json_schema() -> serde_json::Value {
        crate::file_schema::<ImageSpec>()
    }

    fn validate_at(&self, source: &Source) -> Result<(), SpecError> {
        let at = |field: &str, error: SpecError| source.at(&FieldPath::key(field), error);
        names::IMAGE
            .validate(&self.name)
            .map_err(|e| at("name", e))?;
        if !SUPPORTED_DISTROS.contains(&self.distro.as_str()) {
            let error = SpecError::new(
                ErrorKind::Unsupported,
                format!(
                    "distribution \"{}\" is not supported",
                    self.distro.escape_default()
                ),
            )
            .with_hint(format!("use one of: {}", SUPPORTED_DISTROS.join(", ")));
            return Err(at("distro", error));
        }
        names::SUITE.validate(&self.suite).map_err(|e| {
            at(
                "suite",
                e.with_hint(
                    "name a release by code name, such as bookworm or trixie (Debian), noble (Ubuntu)",
                ),
            )
        })?;
        for (i, component) in self.components.iter().enumerate() {
            names::COMPONENT.validate(component).map_err(|e| {
                source.at(
                    &FieldPath::key("components").at(i),
                    e.with_hint("name an archive component, such as main, contrib or universe"),
                )
            })?;
        }
        if let Some(mirror) = &self.mirror {
            let scheme_ok = ["http://", "https://", "file:///"]
                .iter()
                .any(|scheme| mirror.starts_with(scheme));
            if !scheme_ok || mirror.chars().any(char::is_whitespace) {
                let error = SpecError::new(
                    ErrorKind::InvalidValue,
                    format!("mirror \"{}\" is not a URL", mirror.escape_default()),
                )
                .with_hint(format!(
                    "write an http://, https:// or file:/// URL, such as {DEFAULT_MIRROR}"
                ));
                return Err(at("mirror", error));
            }
        }
        for (i, package) in self.packages.iter().enumerate() {
            names::DEBIAN_PACKAGE
                .validate(package)
                .map_err(|e| source.at(&FieldPath::key("packages").at(i), e))?;
        }
        for (i, command) in self.post_install.iter().enumerate() {
            if command.trim().is_empty() {
                let error = SpecError::new(ErrorKind::InvalidValue, "empty command")
                    .with_hint("remove the entry, or write the shell command to run");
                return Err(source.at(&FieldPath::key("post_install").at(i), error));
            }
        }
        Ok(())
    }
}
