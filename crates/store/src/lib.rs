//! The run store: every scenario and converge run, its steps, check results,
//! iterations, model calls and troubleshooting commands, and every cluster
//! started — in one SQLite file under the state directory by default, or in
//! PostgreSQL when the process names a server (the CLI: `REHEARSE_DATABASE_URL`).
//! This crate reads no environment to choose: the process opens one
//! [`SharedStore`] and hands it to whatever records.
//!
//! Both databases get the very same migrations (`migrations/`, plain SQL both
//! accept) and the very same statements. Texts are stored as the engine hands
//! them over: already redacted.

mod clusters;
mod converge;
mod db;
mod metrics;
mod migrate;
mod owner;
mod runs;
mod scenario;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use clusters::ClusterRow;
pub use converge::{
    CommandRow, ConvergeDetail, ConvergeEnd, ConvergeStart, IterationRecord, LlmCallRecord,
};
pub use metrics::{Counts, Metrics};
pub use migrate::MIGRATIONS;
pub use runs::{Aborted, Deleted, RunDetail, RunFilter, RunFinish, RunRow, RunStart, ABORTED};
pub use scenario::{CheckRow, StepRow};

use db::Db;

/// The SQLite database's file name under the state directory.
pub const FILE_NAME: &str = "rehearse.db";

/// The environment variable that points the store at PostgreSQL.
pub const DATABASE_URL_ENV: &str = "REHEARSE_DATABASE_URL";

/// The environment variable naming the fleet host this process is
/// (`rehearse serve --fleet` sets it): runs and clusters it records carry the
/// name, so the whole fleet sees where each lives and what a gone host lost.
pub const HOST_ENV: &str = "REHEARSE_FLEET_HOST";

/// How long a SQLite writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("opening the run store at {location}: {message}")]
    Open { location: String, message: String },
    /// A migration of the schema failed; the database keeps the version before it.
    #[error("applying migration {version} ({name}) to the run store: {cause}")]
    Migrate {
        version: u32,
        name: &'static str,
        cause: Box<StoreError>,
    },
    /// The database was written by a newer rehearse.
    #[error("the run store is at schema version {found}, newer than this rehearse knows ({known}): upgrade rehearse")]
    TooNew { found: u32, known: u32 },
    // The database's error is said in the message and not given again as a
    // source, so a chain of causes says it once.
    #[error("the run store (SQLite): {0}")]
    Sqlite(rusqlite::Error),
    #[error("the run store (PostgreSQL): {0}")]
    Postgres(postgres::Error),
    #[error("the run store holds a value this rehearse cannot read: {0}")]
    Decode(String),
    /// A run cannot be removed while something still needs it.
    #[error("run {id} is still referenced: {why}")]
    Referenced { id: String, why: String },
    #[error("no run {0} in the run store")]
    NoRun(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

/// The run store: runs, iterations, commands, check results, cluster
/// history. Every method takes `&self`: one connection, used by one caller at
/// a time, so a server's request handlers may share it.
pub struct RunStore {
    db: Mutex<Db>,
    location: String,
    /// Runs opening the store found dead, until [`RunStore::abort_dead_runs`] tells.
    aborted_at_open: Mutex<Vec<Aborted>>,
    /// The fleet host this process is ([`HOST_ENV`]), written with every run
    /// and cluster it records.
    host: Option<String>,
}

/// The run store's earlier name, kept so that existing callers still compile.
pub type Store = RunStore;

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The run store of a process, opened on first use and then shared: one
/// connection for everything the process records, whoever records it.
#[derive(Debug)]
pub struct SharedStore {
    state_dir: PathBuf,
    url: Option<String>,
    opened: Mutex<Option<std::sync::Arc<RunStore>>>,
}

impl SharedStore {
    /// The store `url` names, else the SQLite file under `state_dir` (see
    /// [`RunStore::open_at`]); nothing is opened yet.
    pub fn new(state_dir: &Path, url: Option<String>) -> SharedStore {
        SharedStore {
            state_dir: state_dir.to_path_buf(),
            url,
            opened: Mutex::new(None),
        }
    }

    /// The store, opened now if it is not yet. A failed open is tried again
    /// by the next call.
    pub fn get(&self) -> Result<std::sync::Arc<RunStore>, StoreError> {
        let mut slot = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = slot.as_ref() {
            return Ok(std::sync::Arc::clone(store));
        }
        let store = std::sync::Arc::new(RunStore::open_at(&self.state_dir, self.url.as_deref())?);
        *slot = Some(std::sync::Arc::clone(&store));
        Ok(store)
    }
}

impl RunStore {
    /// Opens the SQLite file under `state_dir` (`<state_dir>/rehearse.db`).
    pub fn open(state_dir: &Path) -> Result<RunStore, StoreError> {
        RunStore::open_at(state_dir, None)
    }

    /// Opens the store `url` names (see [`RunStore::connect`]) when it is
    /// given and not blank, else the SQLite file under `state_dir`. Which
    /// store a process uses is the process's to say (the CLI reads
    /// [`DATABASE_URL_ENV`]); libraries are handed the store they record in.
    pub fn open_at(state_dir: &Path, url: Option<&str>) -> Result<RunStore, StoreError> {
        match url.map(str::trim) {
            Some(url) if !url.is_empty() => RunStore::connect(url),
            _ => RunStore::open_file(&state_dir.join(FILE_NAME)),
        }
    }

    /// Opens a store by URL: `postgres://` / `postgresql://` for PostgreSQL,
    /// `sqlite://PATH` or a plain path for SQLite.
    pub fn connect(url: &str) -> Result<RunStore, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let location = redact_password(url);
            let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
                StoreError::Open {
                    location: location.clone(),
                    message: format!(
                        "{e} (is the server running and does {DATABASE_URL_ENV} name a database this user may create tables in?)"
                    ),
                }
            })?;
            RunStore::with(Db::Postgres(Box::new(client)), location)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            RunStore::open_file(Path::new(path))
        }
    }

    /// Opens (creating) a SQLite file.
    pub fn open_file(path: &Path) -> Result<RunStore, StoreError> {
        let location = path.display().to_string();
        let open = |e: rusqlite::Error| StoreError::Open {
            location: location.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = rusqlite::Connection::open(path).map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        // WAL lets the dashboard read while a run writes. Switching a fresh
        // file to WAL needs it alone, and SQLite answers "locked" at once
        // instead of calling the busy handler when another process is
        // creating it too: wait for that as for any other lock.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(open(e)),
            }
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open)?;
        RunStore::with(Db::Sqlite(conn), location)
    }

    fn with(mut db: Db, location: String) -> Result<RunStore, StoreError> {
        migrate::apply(&mut db)?;
        let store = RunStore {
            db: Mutex::new(db),
            location,
            aborted_at_open: Mutex::new(Vec::new()),
            host: std::env::var(HOST_ENV)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
        };
        // Runs whose process died show as aborted wherever the store is read.
        let aborted = store.abort_dead_runs()?;
        *store
            .aborted_at_open
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = aborted;
        Ok(store)
    }

    /// Where the store is: a file path, or a PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The fleet host this process records its runs and clusters as.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.db().is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// The file, for a SQLite store.
    pub fn path(&self) -> Option<PathBuf> {
        (self.backend() == "sqlite").then(|| PathBuf::from(&self.location))
    }

    /// The versions of the migrations applied, in order.
    pub fn schema_versions(&self) -> Result<Vec<u32>, StoreError> {
        self.db()
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        // A panic while holding the lock leaves the connection as usable as
        // before: every multi-statement write is one transaction.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Now, in Unix milliseconds: the unit of every time the store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    /// The error and its causes as `{:#}` prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text += &format!(": {s}");
            source = s.source();
        }
        text
    }

    #[test]
    fn database_errors_are_said_once() {
        let e = StoreError::Migrate {
            version: 3,
            name: "clusters",
            cause: Box::new(StoreError::from(rusqlite::Error::InvalidQuery)),
        };
        let said = chain(&e);
        assert_eq!(
            said,
            "applying migration 3 (clusters) to the run store: the run store (SQLite): Query is not read-only"
        );
    }

    #[test]
    fn passwords_stay_out_of_the_location() {
        assert_eq!(
            super::redact_password("postgresql://rehearse:s3cret@127.0.0.1:5432/runs"),
            "postgresql://rehearse:***@127.0.0.1:5432/runs"
        );
        assert_eq!(
            super::redact_password("postgres://127.0.0.1/runs"),
            "postgres://127.0.0.1/runs"
        );
    }
}
