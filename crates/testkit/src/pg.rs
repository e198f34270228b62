//! A PostgreSQL database of a test's own, created on the server
//! `REHEARSE_TEST_DATABASE_URL` names and dropped at the end.

/// The admin URL of a PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "REHEARSE_TEST_DATABASE_URL";

pub struct PgDatabase {
    admin: String,
    pub name: String,
    /// The database's URL over TCP.
    pub url: String,
}

impl PgDatabase {
    /// A fresh database; None (the test is skipped, saying so) when no server
    /// is named outside CI. In CI one is required.
    pub fn create() -> Option<PgDatabase> {
        let admin = match std::env::var(PG_ENV) {
            Ok(a) if !a.is_empty() => a,
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{PG_ENV} must name a PostgreSQL server in CI (scripts/test.sh sets it)"
                );
                eprintln!("skipped: {PG_ENV} names no PostgreSQL server");
                return None;
            }
        };
        let name = format!("rehearse_test_{:016x}", rand::random::<u64>());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{PG_ENV}={admin}: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (base, _) = admin.rsplit_once('/').expect("a URL ending in /database");
        let url = format!("{base}/{name}");
        Some(PgDatabase { admin, name, url })
    }

    /// A plain client, for what a test sets up or looks at directly.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let dropped = postgres::Client::connect(&self.admin, postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
        });
        if let Err(e) = dropped {
            eprintln!("dropping the test database {}: {e}", self.name);
        }
    }
}
