//! `rehearse doctor` says which link impairments (faults) this kernel
//! supports, and how, in human text and JSON.

mod common;

use serde_json::Value;

fn doctor_json(path: Option<&str>) -> Value {
    let mut cmd = common::command();
    cmd.args(["--json", "doctor"]);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
}

#[test]
fn doctor_reports_the_impairments_this_kernel_supports() {
    common::require_root();
    let v = doctor_json(None);
    let names: Vec<&str> = v["impairments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["partition", "loss", "rate", "delay"], "{v}");
    for i in v["impairments"].as_array().unwrap() {
        let c = check(&v, &format!("impairment {}", i["name"].as_str().unwrap()));
        assert_eq!(c["ok"], i["supported"], "{c}");
        assert_eq!(c["detail"], i["how"], "{c}");
        assert_eq!(c["required"], false, "{c}");
        assert!(!i["how"].as_str().unwrap().is_empty(), "{i}");
    }
    // The fault tests inject partitions, loss and delay on this host: the
    // doctor must say it can.
    for name in ["partition", "loss", "delay"] {
        let c = check(&v, &format!("impairment {name}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    assert!(
        check(&v, "impairment delay")["detail"]
            .as_str()
            .unwrap()
            .contains("netem")
            || check(&v, "impairment delay")["detail"]
                .as_str()
                .unwrap()
                .contains("delayer"),
        "{v}"
    );

    let out = common::run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["partition", "loss", "rate", "delay"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("impairment {name}"))),
            "{text}"
        );
    }
}

#[test]
fn doctor_says_what_an_impairment_needs_when_its_tools_are_missing() {
    let empty = tempfile::tempdir().unwrap();
    let v = doctor_json(Some(empty.path().to_str().unwrap()));
    for (name, needs) in [
        ("partition", "nftables"),
        ("loss", "nftables"),
        ("rate", "tc"),
    ] {
        let c = check(&v, &format!("impairment {name}"));
        assert_eq!(c["ok"], false, "{c}");
        assert!(c["fix"].as_str().unwrap().contains(needs), "{c}");
    }
    let out = common::command()
        .arg("doctor")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains("impairment partition")),
        "{text}"
    );
}

#[test]
fn doctor_packages_reports_every_listed_package_and_names_what_is_gone() {
    let listed: Vec<String> = rehearse_sandbox::packages::all()
        .into_iter()
        .filter(|p| p.need != rehearse_sandbox::packages::Need::Test)
        .map(|p| format!("package {}", p.name))
        .collect();
    let report = |path: Option<&str>| {
        let mut cmd = common::command();
        cmd.args(["--json", "doctor", "--packages"]);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let out = cmd.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    // Exactly the list setup.sh installs (test packages aside), in its order.
    let (_, v) = report(None);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, listed, "{v}");

    // With no tool on PATH every package with tools is missing, exit 1, and
    // each says which tool and how to get it back.
    let empty = tempfile::tempdir().unwrap();
    let (code, v) = report(Some(empty.path().to_str().unwrap()));
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    let nspawn = check(&v, "package systemd-container");
    assert_eq!(nspawn["ok"], false, "{nspawn}");
    assert_eq!(nspawn["required"], true, "{nspawn}");
    assert!(
        nspawn["detail"]
            .as_str()
            .unwrap()
            .contains("systemd-nspawn"),
        "{nspawn}"
    );
    assert!(
        nspawn["fix"]
            .as_str()
            .unwrap()
            .contains("systemd-container"),
        "{nspawn}"
    );
    let missing: Vec<&str> = v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"systemd-container") && missing.contains(&"qemu-utils"),
        "{v}"
    );
    // A package without tools (ca-certificates) is judged by dpkg alone.
    assert!(!missing.contains(&"ca-certificates"), "{v}");
}
