//! Versioned migrations: `migrations/NNNN_name.sql`, applied in order, each
//! in its own transaction together with its row in `schema_migrations`. The
//! same files serve SQLite and PostgreSQL.

use crate::db::{params, Db};
use crate::StoreError;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A new one is appended, never edited in place.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs",
        sql: include_str!("../migrations/0001_runs.sql"),
    },
    Migration {
        version: 2,
        name: "owners",
        sql: include_str!("../migrations/0002_owners.sql"),
    },
    Migration {
        version: 3,
        name: "fleet",
        sql: include_str!("../migrations/0003_fleet.sql"),
    },
    Migration {
        version: 4,
        name: "fleet_images",
        sql: include_str!("../migrations/0004_fleet_images.sql"),
    },
    Migration {
        version: 5,
        name: "fleet_progress",
        sql: include_str!("../migrations/0005_fleet_progress.sql"),
    },
];

/// PostgreSQL: one migrating process at a time, across every client.
const PG_LOCK: i64 = 0x7265_6865_6172;

pub(crate) fn apply(db: &mut Db) -> Result<(), StoreError> {
    if db.is_postgres() {
        db.execute("SELECT pg_advisory_lock(?)", params![PG_LOCK])?;
        let applied = apply_all(db);
        let unlocked = db.query("SELECT pg_advisory_unlock(?)", params![PG_LOCK]);
        applied?;
        unlocked?;
        Ok(())
    } else {
        apply_all(db)
    }
}

fn apply_all(db: &mut Db) -> Result<(), StoreError> {
    db.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at_ms BIGINT NOT NULL
         )",
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let current = current_version(db)?;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        db.transaction(|db| {
            // Another process may have applied it while this one waited for
            // the write lock.
            if current_version(db)? >= migration.version {
                return Ok(());
            }
            db.batch(migration.sql)?;
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
                params![migration.version, migration.name, crate::now_ms()],
            )?;
            Ok(())
        })
        .map_err(|cause| StoreError::Migrate {
            version: migration.version,
            name: migration.name,
            cause: Box::new(cause),
        })?;
    }
    Ok(())
}

fn current_version(db: &mut Db) -> Result<u32, StoreError> {
    match db.query_one(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        &[],
    )? {
        Some(row) => row.get(0),
        None => Ok(0),
    }
}
