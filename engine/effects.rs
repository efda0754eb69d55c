//! What committed changes lead to, outside the store. The writer sends an
//! `Effect` only after the change is durable: an opened incident starts its
//! playbook's runbooks (the engine hands it to the executor), a resolved one
//! gets its postmortem file under `data_dir/postmortems/` and, if asked for,
//! a Slack summary (`Reports`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::alert::Alert;
use crate::incident::Incident;
use crate::notices::{NoticeKind, Notifier};
use crate::store::Store;

/// What committed changes lead to, for the parts that act on them.
#[derive(Debug)]
pub enum Effect {
    /// An incident opened: its playbook's runbooks start.
    Opened(Box<Opened>),
    /// An incident resolved: its postmortem is written.
    Resolved(Box<Incident>),
}

/// An incident that just opened, for the executor to start its runbooks.
#[derive(Debug, Clone)]
pub struct Opened {
    pub incident: Incident,
    pub alert: Alert,
}

/// Where resolved incidents are reported.
#[derive(Clone)]
pub struct Reports {
    pub store: Arc<dyn Store>,
    /// The catalog in force, for its postmortem templates.
    pub live: Arc<crate::live::Live>,
    /// `data_dir/postmortems`, unless `postmortem.write_on_resolve` is off.
    pub dir: Option<PathBuf>,
    pub notices: Notifier,
}

impl Reports {
    pub async fn on_resolved(self, incident: Incident) {
        let id = incident.id;
        if let Some(dir) = self.dir.clone() {
            let this = self.clone();
            let written = tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
                let text = this
                    .live
                    .postmortems()
                    .render_stored(this.store.as_ref(), incident.id)?;
                std::fs::create_dir_all(&dir)?;
                let path = dir.join(format!("{}.md", incident.id));
                // Write beside and rename, so a reader never sees half a file.
                let partial = dir.join(format!(".{}.md.partial", incident.id));
                std::fs::write(&partial, text)?;
                std::fs::rename(&partial, &path)?;
                Ok(path)
            })
            .await;
            match written {
                Ok(Ok(path)) => tracing::info!(incident = %id, path = %path.display(), "postmortem written"),
                Ok(Err(e)) => tracing::error!(incident = %id, error = %format!("{e:#}"), "postmortem not written"),
                Err(e) => tracing::error!(incident = %id, error = %e, "postmortem task failed"),
            }
        }
        // The summary reads the stored record: the resolve is on disk.
        if self.notices.wants(NoticeKind::IncidentResolved) {
            if let Ok(Some(inc)) = self.store.incident(id) {
                let link = self.notices.link(&format!("/api/v1/incidents/{id}/postmortem"));
                self.notices.notify(
                    NoticeKind::IncidentResolved,
                    format!("incident_resolved:{id}"),
                    Some(id),
                    crate::notices::text::resolved(&inc, link),
                );
            }
        }
    }
}
