//! `laojun store migrate` and `laojun store copy`: the PostgreSQL store's
//! schema brought up to date by hand, and a sled store moved into it.

use std::path::Path;
use std::process::ExitCode;

use super::exit;
use crate::store::{copy, PostgresStore, SledStore};

fn failed(message: String) -> ExitCode {
    super::print_error(&message);
    ExitCode::from(exit::FAILED)
}

/// Connects to `url` (resolving `${env:…}` and `${file:…}`), migrating.
async fn open(url: &str, ca_file: Option<&Path>, what: &str) -> Result<PostgresStore, String> {
    let url = crate::secret::resolve(url).map_err(|e| format!("{what}: {e}"))?;
    PostgresStore::open(url.expose(), 2, ca_file, crate::store::Use::Alone)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

/// What `serve` does at start, by hand: the migrations this database has
/// not had, under the same advisory lock.
pub async fn migrate(config: Option<&Path>) -> ExitCode {
    let config = match crate::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    let Some(pg) = config.store.postgres else {
        return failed(
            "store.postgres is not set: there is no PostgreSQL store to migrate (the embedded sled store migrates itself at start)"
                .into(),
        );
    };
    let url = match crate::secret::resolve(&pg.url) {
        Ok(u) => u,
        Err(e) => return failed(format!("store.postgres.url: {e}")),
    };
    // Not `open`: migrating does not need the store to itself.
    let store = match PostgresStore::connect(url.expose(), 1, pg.ca_file.as_deref()) {
        Ok(s) => s,
        Err(e) => return failed(format!("store.postgres.url: {e}")),
    };
    match store.migrate().await {
        Ok(0) => {
            println!("the schema was up to date (version {})", PostgresStore::MIGRATIONS);
            ExitCode::SUCCESS
        }
        Ok(n) => {
            println!(
                "ran {n} migration(s); the schema is at version {}",
                PostgresStore::MIGRATIONS
            );
            ExitCode::SUCCESS
        }
        Err(e) => failed(e.to_string()),
    }
}

/// Every record of the sled store in `from` into the database at `to`,
/// then both counted.
pub async fn copy(from: &Path, to: &str, ca_file: Option<&Path>) -> ExitCode {
    let dir = from.join("store");
    if !dir.is_dir() {
        return failed(format!(
            "no laojun store in {} (expected {}): give the data_dir laojun serve uses",
            from.display(),
            dir.display()
        ));
    }
    let source = match SledStore::open(&dir) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("could not acquire lock") => {
            return failed(format!(
                "a laojun is using {}: stop it first (the copy is made offline)",
                from.display()
            ))
        }
        Err(e) => return failed(format!("opening {}: {e}", dir.display())),
    };
    let target = match open(to, ca_file, "--to").await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let copied = tokio::task::block_in_place(|| copy::copy(&source, &target));
    match copied {
        Ok(counts) => {
            for (kind, n) in &counts {
                println!("{n:>8}  {kind}");
            }
            println!(
                "copied {} into PostgreSQL, and read back the same counts",
                from.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => failed(e.to_string()),
    }
}
