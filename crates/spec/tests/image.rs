//! Image spec files: defaults, built-in images, and refusals with positions.

use rehearse_spec::image::DEFAULT_MIRROR;
use rehearse_spec::{builtin_image, ErrorKind, ImageSpec, SpecError, BUILTIN_IMAGES};

const FILE: &str = "image.yaml";

fn refuse(yaml: &str) -> SpecError {
    match ImageSpec::from_yaml(yaml, FILE) {
        Ok(spec) => panic!("should be refused:\n{yaml}\nparsed as {spec:?}"),
        Err(error) => error,
    }
}

#[track_caller]
fn assert_at(error: &SpecError, kind: ErrorKind, line: usize, field: &str) {
    let location = error
        .location()
        .unwrap_or_else(|| panic!("no location: {error}"));
    assert_eq!(
        (location.file.as_str(), location.line),
        (FILE, line),
        "{error}"
    );
    assert_eq!(error.kind(), kind, "{error}");
    assert_eq!(error.field(), Some(field), "{error}");
}

#[test]
fn minimal_spec_gets_defaults() {
    let spec = ImageSpec::from_yaml("name: web\nsuite: bookworm\n", FILE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.distro, "debian");
    assert_eq!(spec.mirror, None);
    assert_eq!(spec.mirror_url(), DEFAULT_MIRROR);
    assert_eq!(spec.mirror_url(), "http://deb.debian.org/debian");
    assert!(spec.packages.is_empty());
    assert!(spec.post_install.is_empty());
}

#[test]
fn full_spec_keeps_every_field() {
    let yaml = "\
name: web-base
distro: debian
suite: trixie
mirror: https://mirror.example/debian
packages: [nginx, libstdc++6]
post_install:
  - systemctl enable nginx
";
    let spec = ImageSpec::from_yaml(yaml, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.mirror_url(), "https://mirror.example/debian");
    assert_eq!(spec.packages, ["nginx", "libstdc++6"]);
    assert_eq!(spec.post_install, ["systemctl enable nginx"]);
}

#[test]
fn builtin_images_exist_and_are_valid() {
    for name in BUILTIN_IMAGES {
        let spec = builtin_image(name).unwrap_or_else(|| panic!("{name} has a spec"));
        assert_eq!(&spec.name, name);
        spec.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let debian = builtin_image("debian-12").expect("debian-12 is built in");
    assert_eq!(
        (debian.distro.as_str(), debian.suite.as_str()),
        ("debian", "bookworm")
    );
    assert!(debian.packages.is_empty());
    assert_eq!(builtin_image("debian-13-typo"), None);
}

#[test]
fn a_builtin_name_with_full_appended_keeps_every_file() {
    for name in BUILTIN_IMAGES {
        let base = builtin_image(name).expect("built in");
        assert!(!base.full_files && base.package_lists, "{name}");
        let full = builtin_image(&format!("{name}-full")).expect("its full variant");
        assert_eq!(full.name, format!("{name}-full"));
        assert!(full.full_files && full.package_lists, "{name}-full");
        full.validate().unwrap();
        assert_eq!((full.distro, full.suite), (base.distro, base.suite));
    }
    assert_eq!(builtin_image("-full"), None);
    assert_eq!(builtin_image("debian-12-full-full"), None);
}

#[test]
fn package_install_settings_read_from_a_spec_file() {
    let spec = ImageSpec::from_yaml(
        "name: docs
suite: bookworm
",
        "image.yaml",
    )
    .expect("valid");
    assert!(!spec.full_files && spec.package_lists, "the defaults");
    let spec = ImageSpec::from_yaml(
        "name: docs
suite: bookworm
full_files: true
package_lists: false
",
        "image.yaml",
    )
    .expect("valid");
    assert!(spec.full_files && !spec.package_lists);
    // The defaults are left out when written, so specs written before these
    // settings existed keep their form.
    let text = serde_json::to_string(&builtin_image("debian-12").unwrap()).unwrap();
    assert!(
        !text.contains("full_files") && !text.contains("package_lists"),
        "{text}"
    );
}

#[test]
fn builtin_images_cover_the_supported_debian_and_ubuntu_releases() {
    let described: Vec<String> = BUILTIN_IMAGES
        .iter()
        .map(|name| {
            let spec = builtin_image(name).expect("built in");
            format!(
                "{} {} {} {} [{}]",
                spec.name,
                spec.distro,
                spec.suite,
                spec.release().unwrap_or("?"),
                spec.components().join(" ")
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            "debian-11 debian bullseye 11 [main]",
            "debian-12 debian bookworm 12 [main]",
            "debian-13 debian trixie 13 [main]",
            "ubuntu-22.04 ubuntu jammy 22.04 [main universe]",
            "ubuntu-24.04 ubuntu noble 24.04 [main universe]",
        ]
    );
    let ubuntu = builtin_image("ubuntu-24.04").expect("built in");
    assert_eq!(ubuntu.mirror_url(), "http://archive.ubuntu.com/ubuntu");
}

#[test]
fn components_are_kept_and_checked() {
    let spec = ImageSpec::from_yaml(
        "name: web\nsuite: bookworm\ncomponents: [main, contrib]\n",
        FILE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.components(), ["main", "contrib"]);
    let error = refuse("name: web\nsuite: bookworm\ncomponents:\n  - main\n  - Non Free\n");
    assert_at(&error, ErrorKind::InvalidName, 5, "components[1]");
    assert!(error.message().contains("component"), "{error}");
}

#[test]
fn unknown_key_is_refused() {
    let error = refuse("name: web\nsuite: bookworm\npackage: [nginx]\n");
    assert_at(&error, ErrorKind::UnknownField, 3, "package");
    assert!(error.message().contains("`packages`"), "{error}");
}

#[test]
fn missing_suite_is_refused() {
    let error = refuse("name: web\n");
    assert_eq!(error.kind(), ErrorKind::MissingField, "{error}");
    assert!(error.message().contains("`suite`"), "{error}");
}

#[test]
fn unsupported_distro_lists_supported_ones() {
    let error = refuse("name: web\ndistro: fedora\nsuite: f40\n");
    assert_at(&error, ErrorKind::Unsupported, 2, "distro");
    assert!(error.message().contains("\"fedora\""), "{error}");
    assert_eq!(error.hint(), Some("use one of: debian, ubuntu"));
}

#[test]
fn bad_names_are_refused() {
    let error = refuse("name: Web Base\nsuite: bookworm\n");
    assert_at(&error, ErrorKind::InvalidName, 1, "name");

    let error = refuse("name: web\nsuite: Bookworm\n");
    assert_at(&error, ErrorKind::InvalidName, 2, "suite");

    let error = refuse("name: web\nsuite: bookworm\npackages:\n  - nginx\n  - Curl\n");
    assert_at(&error, ErrorKind::InvalidName, 5, "packages[1]");
    assert!(error.message().contains("package name \"Curl\""), "{error}");
}

#[test]
fn bad_mirror_and_empty_command_are_refused() {
    let error = refuse("name: web\nsuite: bookworm\nmirror: deb.debian.org\n");
    assert_at(&error, ErrorKind::InvalidValue, 3, "mirror");

    let error = refuse("name: web\nsuite: bookworm\npost_install:\n  - apt-get clean\n  - ''\n");
    assert_at(&error, ErrorKind::InvalidValue, 5, "post_install[1]");
}

#[test]
fn validate_works_without_a_file() {
    let mut spec = builtin_image("debian-12").expect("built in");
    spec.packages.push("NGINX".to_owned());
    let error = spec.validate().expect_err("refused");
    assert_eq!(error.location(), None);
    assert_eq!(error.field(), Some("packages[0]"));
}

#[test]
fn json_schema_describes_the_spec() {
    let schema = ImageSpec::json_schema();
    let properties = schema["properties"].as_object().expect("object schema");
    for key in [
        "name",
        "distro",
        "suite",
        "mirror",
        "packages",
        "post_install",
        "full_files",
        "package_lists",
    ] {
        assert!(properties.contains_key(key), "{key} missing from {schema}");
    }
}
