//! Copy steps on a real two-node cluster.

mod common;

use common::{cluster, dump, step, two_nodes, Run};
use rehearse_runner::Pass;
use rehearse_spec::scenario::{Step, StepAction};

fn run() -> Run {
    Run::new(cluster(two_nodes))
}

fn copy(src: &str, dest: &str, mode: Option<&str>) -> Step {
    step(
        "copy",
        StepAction::Copy {
            src: src.into(),
            dest: dest.into(),
            mode: mode.map(str::to_string),
        },
    )
}

#[test]
fn a_file_is_copied_with_its_mode_and_a_second_copy_changes_nothing() {
    let run = run();
    run.file("files/app.conf", "key=1\n");
    let step = copy("files/app.conf", "/etc/app/app.conf", Some("0600"));
    let first = run.apply(&step, &[], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    assert_eq!(first.kind, "copy");
    for out in &first.nodes {
        assert_eq!(
            out.changed_files,
            vec!["/etc/app/app.conf"],
            "{}",
            dump(&first)
        );
        let (_, got) = run.sh(
            &out.node,
            "stat -c %a /etc/app/app.conf; cat /etc/app/app.conf",
        );
        assert_eq!(got, "600\nkey=1\n", "on {}", out.node);
    }
    let second = run.apply(&step, &[], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(second.changed(), Vec::<String>::new());

    // A new content is a change again, on the nodes targeted only.
    run.file("files/app.conf", "key=2\n");
    let third = run.apply(&step, &["node2"], Pass::First);
    assert_eq!(third.changed(), vec!["node2: /etc/app/app.conf"]);
    let (_, node1) = run.sh("node1", "cat /etc/app/app.conf");
    assert_eq!(node1, "key=1\n");
}

#[test]
fn a_file_goes_inside_a_destination_ending_with_a_slash() {
    let run = run();
    run.file("motd", "welcome\n");
    let report = run.apply(&copy("motd", "/srv/copied/", None), &["node1"], Pass::First);
    assert!(report.ok, "{}", dump(&report));
    assert_eq!(report.nodes[0].changed_files, vec!["/srv/copied/motd"]);
    let (_, got) = run.sh("node1", "cat /srv/copied/motd");
    assert_eq!(got, "welcome\n");
}

#[test]
fn a_folder_is_merged_into_its_destination_with_the_mode_on_its_files() {
    let run = run();
    run.file("conf.d/a.conf", "a\n");
    run.file("conf.d/sub/b.conf", "b\n");
    // Something already there, not part of the copy, stays untouched.
    run.sh(
        "node1",
        "mkdir -p /etc/demo/conf.d && echo keep > /etc/demo/conf.d/local.conf",
    );
    let step = copy("conf.d", "/etc/demo/conf.d", Some("0640"));
    let first = run.apply(&step, &["node1"], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    assert_eq!(
        first.nodes[0].changed_files,
        vec!["/etc/demo/conf.d/a.conf", "/etc/demo/conf.d/sub/b.conf"]
    );
    let (_, got) = run.sh(
        "node1",
        "cd /etc/demo/conf.d && stat -c '%a %n' a.conf sub/b.conf local.conf && cat sub/b.conf && test -x sub && echo sub-traversable",
    );
    assert_eq!(
        got,
        "640 a.conf\n640 sub/b.conf\n644 local.conf\nb\nsub-traversable\n"
    );

    let second = run.apply(&step, &["node1"], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(second.changed(), Vec::<String>::new());
    let (code, _) = run.sh("node1", "test -e /etc/demo/conf.d/conf.d");
    assert_ne!(code, 0, "a second copy nested the folder into itself");
}

#[test]
fn a_missing_source_fails_the_step_and_names_it() {
    let run = run();
    let report = run.apply(&copy("nope.conf", "/etc/nope.conf", None), &[], Pass::First);
    assert!(!report.ok);
    let error = report.error.unwrap();
    assert!(error.contains("nope.conf"), "{error}");
}
