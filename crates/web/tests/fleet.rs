//! A fleet seen from one of its hosts, over a real PostgreSQL: the dashboard's
//! fleet page (in a real browser) lists every host and the clusters the other
//! host holds, and an MCP call on a cluster another host holds is passed on
//! to that host over its authenticated HTTP endpoint and answered from there
//! (a real cluster, a real MCP client).

mod browser;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use rehearse_api::Api;
use rehearse_fleet::{Fleet, HostSpec, JobKind, JobSpec};
use rehearse_store::{ClusterRow, RunStore};
use rehearse_testkit::pg::PgDatabase;
use rehearse_web::{AppState, FleetHolders};
use serde_json::{json, Value};

const TOKEN: &str = "fleet-test-token";

/// One host's HTTP server, in this process, on a runtime of its own.
struct Host {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Host {
    fn start(
        api: Arc<Api>,
        store: RunStore,
        fleet: Option<Arc<Fleet>>,
        forwarding: Option<rehearse_mcp::Forwarding>,
    ) -> Host {
        let state = AppState {
            api,
            store: Arc::new(store),
            fleet,
        };
        let router = rehearse_web::router(state, TOKEN.into(), true, forwarding);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
        Host { addr, _rt: rt }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn join(fleet: &Fleet, name: &str, url: &str) {
    fleet
        .register(&HostSpec {
            name: name.into(),
            url: Some(url.into()),
            cores: 2,
            memory_bytes: 4 << 30,
            slots_total: 24,
            slots_free: 20,
            images: vec!["debian-12".into()],
            pool: None,
        })
        .unwrap();
}

fn cluster_row(id: &str, host: &str, addresses: &[&str]) -> ClusterRow {
    ClusterRow {
        id: id.into(),
        run_id: None,
        source: "mcp provision".into(),
        backend: "nspawn".into(),
        nodes: addresses.len() as u32,
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        created_at_ms: rehearse_fleet::now_ms(),
        boot_ms: 400,
        destroyed_at_ms: None,
        destroyed_reason: None,
        host: Some(host.into()),
    }
}

/// An engine over a state directory, recording in a history of the test's own.
fn api(state: &Path, history: &Path) -> Arc<Api> {
    Api::new(
        rehearse_sandbox::Engine::new(state)
            .unwrap()
            .with_history_dir(history),
    )
}

#[test]
fn the_fleet_page_lists_every_host_the_clusters_each_holds_and_the_queue() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Arc::new(Fleet::connect(&db.url).unwrap());
    let store = RunStore::connect(&db.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alpha = Host::start(
        api(&dir.path().join("state"), dir.path()),
        RunStore::connect(&db.url).unwrap(),
        Some(Arc::clone(&fleet)),
        None,
    );
    join(&fleet, "alpha", &alpha.url());
    join(&fleet, "beta", "http://192.0.2.7:7878");
    store
        .record_cluster(&cluster_row("b0b0b0", "beta", &["web=10.9.0.2"]))
        .unwrap();
    store
        .record_cluster(&cluster_row("a1a1a1", "alpha", &["db=10.8.0.2"]))
        .unwrap();
    let mut gone = cluster_row("dead00", "beta", &["x=10.7.0.2"]);
    gone.destroyed_at_ms = Some(rehearse_fleet::now_ms());
    store.record_cluster(&gone).unwrap();
    store.cluster_destroyed("dead00").unwrap();
    let job = fleet
        .submit(&JobSpec {
            kind: JobKind::Scenario,
            payload: json!({}),
            nodes: 2,
            submitter: "ci@example".into(),
            max_attempts: None,
            images: Vec::new(),
        })
        .unwrap();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    let mut b = browser::Browser::start(&shots);
    b.open(&format!("{}/login?token={TOKEN}", alpha.url()));
    b.open(&format!("{}/fleet", alpha.url()));
    b.wait_for(
        "the hosts",
        "document.querySelectorAll('#hosts tbody tr').length == 2",
    );
    let hosts = b.texts("#hosts tbody tr");
    assert!(
        hosts
            .iter()
            .any(|h| h.contains("alpha") && h.contains("up")),
        "{hosts:?}"
    );
    assert!(
        hosts
            .iter()
            .any(|h| h.contains("beta") && h.contains("192.0.2.7:7878") && h.contains("20 / 24")),
        "{hosts:?}"
    );
    // This host's page lists the other host's cluster, with where it lives;
    // a destroyed one is not among the live ones.
    let clusters = b.texts("#fleet-clusters tbody tr");
    assert!(
        clusters
            .iter()
            .any(|c| c.contains("b0b0b0") && c.contains("beta") && c.contains("web=10.9.0.2")),
        "{clusters:?}"
    );
    assert!(
        clusters
            .iter()
            .any(|c| c.contains("a1a1a1") && c.contains("alpha")),
        "{clusters:?}"
    );
    assert!(
        !clusters.iter().any(|c| c.contains("dead00")),
        "{clusters:?}"
    );
    let jobs = b.texts("#jobs tbody tr");
    assert!(
        jobs.iter()
            .any(|j| j.contains(&job.id) && j.contains("queued") && j.contains("ci@example")),
        "{jobs:?}"
    );
    b.screenshot("fleet");

    // A host that stopped beating shows as gone, with why.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fleet.reap(std::time::Duration::from_millis(1)).unwrap();
    b.open(&format!("{}/fleet", alpha.url()));
    b.wait_for(
        "the hosts",
        "document.querySelectorAll('#hosts tbody tr').length == 2",
    );
    let hosts = b.texts("#hosts tbody tr");
    assert!(hosts.iter().all(|h| h.contains("gone")), "{hosts:?}");
    let clusters = b.texts("#fleet-clusters");
    assert!(
        clusters.iter().all(|c| !c.contains("b0b0b0")),
        "a gone host's clusters are not live: {clusters:?}"
    );
    b.close();
}

fn mcp_call(url: &str, tool: &str, args: Value) -> (bool, Value) {
    rehearse_testkit::mcp::call(url, TOKEN, tool, args)
}

#[test]
fn an_mcp_call_on_a_cluster_another_host_holds_is_answered_by_that_host() {
    rehearse_testkit::require_root("the fleet forwarding test");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let fleet = Arc::new(Fleet::connect(&db.url).unwrap());
    let history = tempfile::tempdir().unwrap();
    // beta holds a real cluster; alpha's engine has none of its own.
    let beta_api = api(&rehearse_testkit::state_dir(), history.path());
    let beta = Host::start(
        Arc::clone(&beta_api),
        RunStore::connect(&db.url).unwrap(),
        Some(Arc::clone(&fleet)),
        None,
    );
    let empty = tempfile::tempdir().unwrap();
    let forwarding = rehearse_mcp::Forwarding::new(
        Arc::new(FleetHolders {
            fleet: Arc::clone(&fleet),
            me: "alpha".into(),
        }),
        TOKEN.into(),
        "alpha".into(),
        None,
    );
    let alpha = Host::start(
        api(&empty.path().join("state"), history.path()),
        RunStore::connect(&db.url).unwrap(),
        Some(Arc::clone(&fleet)),
        Some(forwarding.clone()),
    );
    join(&fleet, "alpha", &alpha.url());
    join(&fleet, "beta", &beta.url());

    let (failed, up) = mcp_call(
        &beta.url(),
        "provision",
        json!({"nodes": ["web"], "ttl": "10m"}),
    );
    assert!(!failed, "{up}");
    let cluster = up["cluster"].as_str().unwrap().to_owned();
    let _down = Down {
        api: Arc::clone(&beta_api),
        cluster: cluster.clone(),
    };
    RunStore::connect(&db.url)
        .unwrap()
        .record_cluster(&cluster_row(&cluster, "beta", &["web"]))
        .unwrap();

    // Asked of alpha, answered by beta's node.
    let (failed, ran) = mcp_call(
        &alpha.url(),
        "exec",
        json!({"cluster": cluster, "node": "web", "command": "hostname; cat /etc/machine-id"}),
    );
    assert!(!failed, "{ran}");
    assert!(
        ran["stdout"].as_str().unwrap().starts_with("web\n"),
        "{ran}"
    );
    let (failed, _) = mcp_call(
        &alpha.url(),
        "write_file",
        json!({"cluster": cluster, "node": "web", "path": "/etc/placed-by", "content": "alpha"}),
    );
    assert!(!failed);
    let (_, direct) = mcp_call(
        &beta.url(),
        "read_file",
        json!({"cluster": cluster, "node": "web", "path": "/etc/placed-by"}),
    );
    assert_eq!(direct["content"], "alpha", "{direct}");
    // Both calls travelled over one session with beta, kept open.
    let sessions = forwarding.sessions.blocking_lock().len();
    assert_eq!(sessions, 1, "one kept session per holder");

    // A cluster nobody holds is not found, from either host.
    let (failed, missing) = mcp_call(
        &alpha.url(),
        "exec",
        json!({"cluster": "ffffff", "node": "web", "command": "true"}),
    );
    assert!(failed);
    assert_eq!(missing["error"]["code"], "cluster_not_found", "{missing}");

    // Destroyed through alpha: gone from beta.
    let (failed, gone) = mcp_call(&alpha.url(), "destroy", json!({"cluster": cluster}));
    assert!(!failed, "{gone}");
    assert!(
        beta_api.engine().list().iter().all(|c| c.id != cluster),
        "beta no longer holds {cluster}"
    );
}

/// Destroys a test's cluster, pass or fail.
struct Down {
    api: Arc<Api>,
    cluster: String,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = self.api.engine().down(&self.cluster);
    }
}
