//! `laojun store copy`: every record of one store into another (a sled
//! `data_dir` into PostgreSQL), offline. Each write is an upsert keyed as
//! in the source, so a second copy changes nothing; afterwards the target
//! is read back and must hold as many records of each kind as the source.

use std::collections::BTreeMap;

use super::{Store, StoreError, Write};

/// Writes per transaction: big enough to amortise a commit, small enough
/// that a copy cut short has most of its work kept (and is simply run again).
const CHUNK: usize = 1000;

/// How many records of each kind.
pub type Counts = BTreeMap<&'static str, u64>;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target read back does not hold what was copied.
    #[error("the copy does not match: {0}; nothing in the source changed, the target holds what it was given")]
    Mismatch(String),
}

/// Copies `from` into `to`, then verifies; returns the source's counts.
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<Counts, CopyError> {
    let mut source = Counts::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    from.export(&mut |w: Write| {
        *source.entry(w.kind()).or_default() += 1;
        chunk.push(w);
        if chunk.len() == CHUNK {
            to.commit(vec![std::mem::take(&mut chunk)])?;
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        to.commit(vec![chunk])?;
    }
    let target = counts(to)?;
    let differ: Vec<String> = source
        .keys()
        .chain(target.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|kind| {
            let (s, t) = (
                source.get(kind).copied().unwrap_or(0),
                target.get(kind).copied().unwrap_or(0),
            );
            (s != t).then(|| format!("{kind}: {s} in the source, {t} in the target"))
        })
        .collect();
    if differ.is_empty() {
        Ok(source)
    } else {
        Err(CopyError::Mismatch(differ.join("; ")))
    }
}

/// How many records of each kind `store` holds.
pub fn counts(store: &dyn Store) -> Result<Counts, StoreError> {
    let mut out = Counts::new();
    store.export(&mut |w: Write| {
        *out.entry(w.kind()).or_default() += 1;
        Ok(())
    })?;
    Ok(out)
}
