//! The catalog in force, swapped whole when it is reloaded. Readers take
//! the current one (`Arc`) and keep it for as long as they use it, so a run
//! in progress finishes on the runbooks it started with while new runs get
//! the new ones. Postmortem templates are compiled with each catalog.

use std::sync::{Arc, RwLock};

use crate::catalog::Catalog;
use crate::postmortem::{PostmortemError, Renderer, Style};

/// A catalog and its compiled postmortem templates.
pub struct Current {
    pub catalog: Arc<Catalog>,
    pub postmortems: Arc<Renderer>,
}

pub struct Live {
    now: RwLock<Arc<Current>>,
    /// The catalogs this process has had, by revision (the newest few), so
    /// a retry runs the runbook version its run ran.
    seen: RwLock<Vec<Arc<Catalog>>>,
    style: Style,
}

/// How many catalog versions are kept for retries.
const VERSIONS_KEPT: usize = 20;

impl Live {
    pub fn new(catalog: Arc<Catalog>, style: impl Into<Style>) -> Result<Live, PostmortemError> {
        let style = style.into();
        let current = Self::compile(catalog.clone(), style.clone())?;
        Ok(Live {
            now: RwLock::new(Arc::new(current)),
            seen: RwLock::new(vec![catalog]),
            style,
        })
    }

    fn compile(catalog: Arc<Catalog>, style: Style) -> Result<Current, PostmortemError> {
        let postmortems = Arc::new(Renderer::new(catalog.clone(), style)?);
        Ok(Current { catalog, postmortems })
    }

    fn current(&self) -> Arc<Current> {
        // A panic while swapping leaves the last good catalog in place.
        self.now
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.current().catalog.clone()
    }

    pub fn postmortems(&self) -> Arc<Renderer> {
        self.current().postmortems.clone()
    }

    /// Puts `catalog` in force, all at once.
    pub fn replace(&self, catalog: Arc<Catalog>) -> Result<(), PostmortemError> {
        let next = Arc::new(Self::compile(catalog.clone(), self.style.clone())?);
        *self.now.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        let mut seen = self.seen.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|c| c.revision != catalog.revision);
        seen.push(catalog);
        if seen.len() > VERSIONS_KEPT {
            seen.remove(0);
        }
        Ok(())
    }

    /// The catalog of this revision, if this process has had it.
    pub fn at(&self, revision: &str) -> Option<Arc<Catalog>> {
        let seen = self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter().rev().find(|c| c.revision == revision).cloned()
    }
}

/// What a clean reload put in force.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reloaded {
    pub revision: String,
    pub runbooks: usize,
    pub playbooks: usize,
    pub templates: usize,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl Reloaded {
    pub fn of(catalog: &Catalog) -> Reloaded {
        Reloaded {
            revision: catalog.revision.clone(),
            runbooks: catalog.runbooks.len(),
            playbooks: catalog.playbooks.len(),
            templates: catalog.templates.len(),
            loaded_at: catalog.loaded_at,
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// What `validate` would print, one `path:line:col: message` each.
    #[error("the catalog has {} problem(s); nothing changed", .0.len())]
    Problems(Vec<String>),
    /// The folder could not be read, or the new catalog not put in force.
    #[error("{0}")]
    Failed(String),
}

/// Reloads the catalog from its folder (the engine does; the server and
/// SIGHUP ask it to).
pub trait Reload: Send + Sync {
    fn reload(&self)
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reloaded, ReloadError>> + Send + '_>>;
}
