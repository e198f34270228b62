//! A fleet of rehearse hosts sharing one PostgreSQL run store.
//!
//! Every host running `rehearse serve --fleet URL` registers in
//! `fleet_hosts` with what it offers (cores, memory, node slots, images) and
//! beats every few seconds; any host marks the ones that stopped beating
//! gone, in one statement that also requeues their work and reports their
//! runs and clusters lost. Work waits in `fleet_jobs` and is claimed with
//! `FOR UPDATE SKIP LOCKED` by a host with enough free node slots, highest
//! submitter priority first, then oldest. Each claim is an attempt: a result
//! is recorded only for the attempt that is current, so a late answer from a
//! host that was given up on changes nothing.
//!
//! The tables come with the run store's migrations; this crate speaks to them
//! with the same synchronous `postgres` client the store uses.

mod hosts;
mod jobs;
pub mod payload;
pub mod place;
mod worker;

use std::sync::Mutex;

pub use hosts::{HostRow, HostSpec, Reaped};
pub use jobs::{
    images_of, Claimed, JobEnd, JobKind, JobRow, JobSpec, JobState, DEFAULT_MAX_ATTEMPTS,
    PROGRESS_KEPT,
};
pub use worker::{Worker, WorkerConfig};

/// Errors of the fleet's shared database and queue.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The URL does not name a PostgreSQL server.
    #[error("a fleet needs a PostgreSQL store, not \"{0}\": pass --fleet postgresql://user:password@host/database (every host of the fleet the same)")]
    NotPostgres(String),
    /// The server could not be reached or the schema not brought up to date.
    #[error("opening the fleet's database at {location}: {message}")]
    Open { location: String, message: String },
    // The database's error is said in the message and not given again as a
    // source, so a chain of causes says it once.
    #[error("the fleet's database: {0}")]
    Postgres(postgres::Error),
    #[error("the fleet's database holds a value this rehearse cannot read: {0}")]
    Decode(String),
    #[error("no fleet job {0}; `rehearse fleet jobs` lists them")]
    NoJob(String),
    /// A change the job's state does not allow (cancelling a finished job, ...).
    #[error("job {id} is {state}: {why}")]
    Conflict {
        id: String,
        state: String,
        why: String,
    },
    /// A scenario folder too large or unreadable to travel in the queue.
    #[error("{0}")]
    Payload(String),
    /// The work needs more node slots than any host of the fleet has.
    #[error("{0}")]
    TooBig(String),
}

impl From<postgres::Error> for FleetError {
    fn from(e: postgres::Error) -> Self {
        FleetError::Postgres(e)
    }
}

/// The fleet's shared database: one connection, used by one caller at a time.
pub struct Fleet {
    client: Mutex<postgres::Client>,
    location: String,
}

impl Fleet {
    /// Connects to the fleet's PostgreSQL and brings its schema up to date
    /// (the run store's migrations, which hold the fleet's tables).
    pub fn connect(url: &str) -> Result<Fleet, FleetError> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(FleetError::NotPostgres(url.to_owned()));
        }
        let store = rehearse_store::RunStore::connect(url).map_err(|e| FleetError::Open {
            location: url_without_password(url),
            message: e.to_string(),
        })?;
        let location = store.location().to_owned();
        drop(store);
        let client =
            postgres::Client::connect(url, postgres::NoTls).map_err(|e| FleetError::Open {
                location: location.clone(),
                message: e.to_string(),
            })?;
        Ok(Fleet {
            client: Mutex::new(client),
            location,
        })
    }

    /// Where the fleet's database is, without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn db(&self) -> std::sync::MutexGuard<'_, postgres::Client> {
        // A panic while holding the lock leaves the connection usable: every
        // multi-statement change is one transaction.
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn url_without_password(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        let (auth, host) = rest.rsplit_once('@')?;
        let (user, _) = auth.split_once(':')?;
        Some(format!("{scheme}://{user}:***@{host}"))
    }) {
        Some(redacted) => redacted,
        None => url.to_owned(),
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    rehearse_store::now_ms()
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, FleetError> {
    serde_json::from_str(text).map_err(|e| FleetError::Decode(format!("{what}: {e}")))
}
