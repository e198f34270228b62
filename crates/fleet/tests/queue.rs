//! The fleet's hosts and queue on a real PostgreSQL server, each test in a
//! database of its own.

use std::time::Duration;

use rehearse_fleet::{Fleet, FleetError, HostSpec, JobEnd, JobKind, JobSpec, JobState};
use rehearse_testkit::pg::PgDatabase;

fn host(name: &str, slots: u32) -> HostSpec {
    HostSpec {
        name: name.into(),
        url: Some(format!("http://{name}:8787")),
        cores: 2,
        memory_bytes: 4 << 30,
        slots_total: slots,
        slots_free: slots,
        images: vec!["debian-12".into()],
        pool: None,
    }
}

fn job(submitter: &str, nodes: u32) -> JobSpec {
    JobSpec {
        kind: JobKind::Scenario,
        payload: serde_json::json!({"submitter": submitter}),
        nodes,
        submitter: submitter.into(),
        max_attempts: None,
        images: Vec::new(),
    }
}

fn done(run: &str) -> JobEnd {
    JobEnd {
        state: JobState::Done,
        run_id: Some(run.into()),
        result: Some(serde_json::json!({"outcome": "passed"})),
        exit_code: Some(0),
        error: None,
    }
}

/// Makes a host's last beat a minute old.
fn silence(db: &PgDatabase, host_id: &str) {
    db.client()
        .execute(
            "UPDATE fleet_hosts SET heartbeat_at_ms = heartbeat_at_ms - 60000 WHERE id = $1",
            &[&host_id],
        )
        .unwrap();
}

#[test]
fn a_store_that_is_not_postgres_is_refused_saying_what_to_pass() {
    let Err(e) = Fleet::connect("sqlite:///tmp/x.db") else {
        panic!("a SQLite URL was accepted")
    };
    assert!(matches!(e, FleetError::NotPostgres(_)));
    assert!(e.to_string().contains("--fleet postgresql://"), "{e}");
}

#[test]
fn work_is_claimed_by_priority_then_age_and_only_where_it_fits() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (a, _) = fleet.register(&host("alpha", 8)).unwrap();
    let old = fleet.submit(&job("ci", 2)).unwrap();
    let big = fleet.submit(&job("ci", 6)).unwrap();
    let urgent = fleet.submit(&job("oncall", 1)).unwrap();
    fleet.set_priority("oncall", 10).unwrap();
    assert_eq!(fleet.job(&urgent.id).unwrap().priority, 10);

    // Three free slots: the urgent job first, then the oldest that fits.
    let first = fleet.claim(&a.id, 3).unwrap().unwrap();
    assert_eq!(first.id, urgent.id);
    assert_eq!(first.attempt, 1);
    let second = fleet.claim(&a.id, 3).unwrap().unwrap();
    assert_eq!(second.id, old.id);
    assert!(fleet.claim(&a.id, 3).unwrap().is_none(), "6 nodes fit in 3");
    assert_eq!(fleet.claim(&a.id, 6).unwrap().unwrap().id, big.id);

    let row = fleet.job(&old.id).unwrap();
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.host.as_deref(), Some("alpha"));

    // More nodes than any host takes is refused at once, naming the largest.
    let Err(e) = fleet.submit(&job("ci", 9)) else {
        panic!("9 nodes were queued on a fleet of 8-slot hosts")
    };
    assert!(e.to_string().contains("alpha, takes 8"), "{e}");
}

#[test]
fn hosts_claiming_at_once_never_take_the_same_job() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    for _ in 0..40 {
        fleet.submit(&job("ci", 1)).unwrap();
    }
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let url = db.url.clone();
                s.spawn(move || {
                    let fleet = Fleet::connect(&url).unwrap();
                    let (me, _) = fleet.register(&host(&format!("h{i}"), 4)).unwrap();
                    let mut mine = Vec::new();
                    while let Some(c) = fleet.claim(&me.id, 4).unwrap() {
                        mine.push(c.id);
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<String> = claimed.concat();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a job was claimed twice: {claimed:?}");
    assert_eq!(n, 40);
}

#[test]
fn a_silent_host_is_given_up_on_its_work_requeued_once_and_its_runs_and_clusters_lost() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (a, _) = fleet.register(&host("alpha", 4)).unwrap();
    let (b, _) = fleet.register(&host("beta", 4)).unwrap();
    let submitted = fleet
        .submit(&JobSpec {
            kind: JobKind::MatrixLeg,
            ..job("ci", 2)
        })
        .unwrap();
    let on_a = fleet.claim(&a.id, 4).unwrap().unwrap();
    fleet.set_run(&on_a.id, on_a.attempt, "run-a").unwrap();
    let mut c = db.client();
    c.execute(
        "INSERT INTO runs (id, kind, name, file, started_at_ms, updated_at_ms, outcome, host)
         VALUES ('run-a', 'scenario', 'web', 'web/rehearse.yaml', 1, 2, 'running', 'alpha'),
                ('run-b', 'scenario', 'web', 'web/rehearse.yaml', 1, 2, 'running', 'beta')",
        &[],
    )
    .unwrap();
    c.execute(
        "INSERT INTO clusters (id, source, backend, nodes, addresses, created_at_ms, boot_ms, host)
         VALUES ('c-a', 'run', 'nspawn', 2, '', 1, 5, 'alpha'),
                ('c-b', 'run', 'nspawn', 2, '', 1, 5, 'beta')",
        &[],
    )
    .unwrap();
    assert_eq!(
        fleet.holder_of("c-a").unwrap().map(|h| h.id),
        Some(a.id.clone())
    );

    // Nothing is given up on while every host beats.
    assert!(fleet.reap(Duration::from_secs(10)).unwrap().is_empty());
    silence(&db, &a.id);
    let reaped = fleet.reap(Duration::from_secs(10)).unwrap();
    assert_eq!(reaped.hosts.len(), 1, "{reaped:?}");
    assert_eq!(reaped.hosts[0].0, a.id);
    assert!(reaped.hosts[0].1.contains("stopped beating"), "{reaped:?}");
    assert_eq!(reaped.requeued, vec![submitted.id.clone()]);
    assert_eq!(reaped.lost_runs, vec!["run-a".to_string()]);
    assert_eq!(reaped.lost_clusters, vec!["c-a".to_string()]);
    // A second pass (another host's) finds nothing more to do.
    assert!(fleet.reap(Duration::from_secs(10)).unwrap().is_empty());

    let (outcome, summary): (String, String) = {
        let r = c
            .query_one("SELECT outcome, summary FROM runs WHERE id = 'run-a'", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(outcome, "lost");
    assert!(summary.contains("host alpha"), "{summary}");
    let other: String = c
        .query_one("SELECT outcome FROM runs WHERE id = 'run-b'", &[])
        .unwrap()
        .get(0);
    assert_eq!(other, "running", "beta's run was touched");
    let reason: String = c
        .query_one(
            "SELECT destroyed_reason FROM clusters WHERE id = 'c-a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.contains("host alpha"), "{reason}");
    assert_eq!(fleet.holder_of("c-a").unwrap(), None);
    assert_eq!(
        fleet.holder_of("c-b").unwrap().map(|h| h.name),
        Some("beta".to_string())
    );

    // The gone host can neither beat nor claim.
    assert!(!fleet.heartbeat(&a.id, 4, &[]).unwrap());
    assert!(fleet.claim(&a.id, 4).unwrap().is_none());

    // The other host takes it as attempt 2; the gone host's late answer is ignored.
    let on_b = fleet.claim(&b.id, 4).unwrap().unwrap();
    assert_eq!((on_b.id.as_str(), on_b.attempt), (submitted.id.as_str(), 2));
    assert!(fleet.should_stop(&on_a.id, on_a.attempt).unwrap());
    assert!(!fleet.should_stop(&on_b.id, on_b.attempt).unwrap());
    assert!(!fleet
        .finish(&on_a.id, &a.id, on_a.attempt, &done("run-a"))
        .unwrap());
    assert!(fleet
        .finish(&on_b.id, &b.id, on_b.attempt, &done("run-b2"))
        .unwrap());
    assert!(
        !fleet
            .finish(&on_b.id, &b.id, on_b.attempt, &done("run-b3"))
            .unwrap(),
        "a repeated answer was recorded twice"
    );
    let row = fleet.job(&submitted.id).unwrap();
    assert_eq!(row.state, JobState::Done);
    assert_eq!(row.host.as_deref(), Some("beta"));
    assert_eq!(row.run_id.as_deref(), Some("run-b2"));
    assert_eq!(row.attempt, 2);
    assert_eq!(row.result.unwrap()["outcome"], "passed");
}

#[test]
fn work_whose_last_attempt_is_lost_is_reported_lost_and_can_be_retried() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (a, _) = fleet.register(&host("alpha", 4)).unwrap();
    let once = fleet
        .submit(&JobSpec {
            max_attempts: Some(1),
            ..job("ci", 1)
        })
        .unwrap();
    fleet.claim(&a.id, 4).unwrap().unwrap();
    silence(&db, &a.id);
    let reaped = fleet.reap(Duration::from_secs(10)).unwrap();
    assert_eq!(reaped.lost_jobs, vec![once.id.clone()]);
    let lost = fleet.job(&once.id).unwrap();
    assert_eq!(lost.state, JobState::Lost);
    assert!(lost.error.unwrap().contains("host alpha"));

    let retried = fleet.retry(&once.id).unwrap();
    assert_eq!(retried.state, JobState::Queued);
    assert_eq!(retried.max_attempts, 2);
    let (b, _) = fleet.register(&host("beta", 4)).unwrap();
    assert_eq!(fleet.claim(&b.id, 4).unwrap().unwrap().attempt, 2);
    let Err(e) = fleet.retry(&once.id) else {
        panic!("a running job was retried")
    };
    assert!(e.to_string().contains("is running"), "{e}");
}

#[test]
fn cancelling_stops_queued_work_at_once_and_asks_the_host_of_running_work() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (a, _) = fleet.register(&host("alpha", 4)).unwrap();
    let running = fleet.submit(&job("ci", 1)).unwrap();
    let queued = fleet.submit(&job("ci", 1)).unwrap();
    let claimed = fleet.claim(&a.id, 1).unwrap().unwrap();
    assert_eq!(claimed.id, running.id);

    assert_eq!(fleet.cancel(&queued.id).unwrap().state, JobState::Cancelled);
    assert!(
        fleet.claim(&a.id, 4).unwrap().is_none(),
        "a cancelled job was claimed"
    );

    let asked = fleet.cancel(&running.id).unwrap();
    assert_eq!(asked.state, JobState::Running);
    assert!(asked.cancel_requested);
    assert!(fleet.should_stop(&claimed.id, claimed.attempt).unwrap());
    let end = JobEnd {
        state: JobState::Cancelled,
        error: Some("cancelled".into()),
        ..done("run-x")
    };
    assert!(fleet
        .finish(&claimed.id, &a.id, claimed.attempt, &end)
        .unwrap());
    assert_eq!(fleet.job(&running.id).unwrap().state, JobState::Cancelled);
    let Err(e) = fleet.cancel(&running.id) else {
        panic!("a cancelled job was cancelled again")
    };
    assert!(e.to_string().contains("is cancelled"), "{e}");
    assert!(matches!(fleet.job("job-nope"), Err(FleetError::NoJob(_))));
}

#[test]
fn a_host_that_restarts_under_its_name_gives_its_earlier_work_back() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (first, _) = fleet.register(&host("alpha", 4)).unwrap();
    let submitted = fleet.submit(&job("ci", 1)).unwrap();
    fleet.claim(&first.id, 4).unwrap().unwrap();
    let (second, reaped) = fleet.register(&host("alpha", 4)).unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(reaped.hosts.len(), 1);
    assert!(reaped.hosts[0].1.contains("restarted"), "{reaped:?}");
    assert_eq!(reaped.requeued, vec![submitted.id.clone()]);
    let hosts = fleet.hosts().unwrap();
    assert_eq!(hosts[0].id, second.id);
    assert_eq!(hosts[0].state, "up");
    assert_eq!(hosts[1].state, "gone");

    // Leaving gives running work back too.
    let again = fleet.claim(&second.id, 4).unwrap().unwrap();
    assert_eq!(again.attempt, 2);
    let left = fleet.leave(&second.id).unwrap();
    assert_eq!(left.hosts[0].1, "stopped: it left the fleet");
    assert_eq!(fleet.job(&submitted.id).unwrap().state, JobState::Lost);
}

#[test]
fn a_job_is_left_to_a_host_holding_its_images_while_that_host_has_room() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Fleet::connect(&db.url).unwrap();
    let (a, _) = fleet.register(&host("alpha", 2)).unwrap();
    let both = vec!["debian-12".to_string(), "rocky-9".to_string()];
    let (b, _) = fleet
        .register(&HostSpec {
            images: both.clone(),
            ..host("beta", 2)
        })
        .unwrap();
    let needs = |images: &[&str]| JobSpec {
        images: images.iter().map(|i| i.to_string()).collect(),
        ..job("ci", 1)
    };
    let rocky = fleet.submit(&needs(&["rocky-9"])).unwrap();
    let plain = fleet.submit(&needs(&["debian-12"])).unwrap();

    // alpha lacks rocky-9 and beta, which holds it, has room: alpha takes
    // the younger job it can boot at once.
    assert_eq!(fleet.claim(&a.id, 2).unwrap().unwrap().id, plain.id);
    assert!(fleet.claim(&a.id, 1).unwrap().is_none());
    assert_eq!(fleet.claim(&b.id, 2).unwrap().unwrap().id, rocky.id);

    // With beta full (by its beat), nobody holding rocky-9 has room: alpha
    // takes the job and builds or fails it as it can.
    let next = fleet.submit(&needs(&["rocky-9"])).unwrap();
    assert!(fleet.heartbeat(&b.id, 0, &both).unwrap());
    assert_eq!(fleet.claim(&a.id, 1).unwrap().unwrap().id, next.id);

    // A beat says what a host holds now: once alpha has rocky-9 it takes
    // such jobs while beta has room again.
    assert!(fleet.heartbeat(&b.id, 2, &both).unwrap());
    assert!(fleet.heartbeat(&a.id, 1, &both).unwrap());
    let last = fleet.submit(&needs(&["rocky-9", "debian-12"])).unwrap();
    assert_eq!(fleet.claim(&a.id, 1).unwrap().unwrap().id, last.id);

    // Jobs that name no images go to whoever has room.
    let any = fleet.submit(&job("ci", 1)).unwrap();
    assert!(fleet.heartbeat(&a.id, 1, &[]).unwrap());
    assert_eq!(fleet.claim(&a.id, 1).unwrap().unwrap().id, any.id);
}
