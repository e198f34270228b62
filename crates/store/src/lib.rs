//! The run store: every converge run, its iterations, the model calls, the
//! troubleshooting commands and the check results, in one SQLite file under
//! the state directory.
//!
//! The schema lives in `migrations/` as plain SQL that PostgreSQL accepts as
//! well, so a later PostgreSQL backend applies the very same files. Texts are
//! stored as the engine hands them over: already redacted.

mod converge;
mod migrate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use converge::{CheckRow, CommandRow, IterationRecord, LlmCallRecord, RunEnd, RunRecord};
pub use migrate::MIGRATIONS;

/// The database's file name under the state directory.
pub const FILE_NAME: &str = "rehearse.db";

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("opening the run store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A migration of the schema failed; the database keeps the version before it.
    #[error("applying migration {version} ({name}) to the run store: {source}")]
    Migrate {
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer rehearse.
    #[error("the run store is at schema version {found}, newer than this rehearse knows ({known}): upgrade rehearse")]
    TooNew { found: u32, known: u32 },
    #[error("the run store: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens `<state_dir>/rehearse.db`, creating it, and brings its schema up
    /// to date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        Store::open_file(&state_dir.join(FILE_NAME))
    }

    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let open = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        // WAL lets the dashboard read while a run writes.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open)?;
        migrate::apply(&mut conn)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The versions of the migrations applied, in order.
    pub fn schema_versions(&self) -> Result<Vec<u32>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")?;
        let versions = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(versions)
    }
}
