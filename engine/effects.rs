//! What committed changes lead to, outside the store. The writer sends an
//! `Effect` only after the change is durable: an opened incident starts its
//! playbook's runbooks (the engine hands it to the executor), a resolved one
//! gets its postmortem file under `data_dir/postmortems/` and, if asked for,
//! a Slack summary (`Reports`); a resolved one that changes again (a note,
//! its severity, a reopen) gets its file written again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::alert::Alert;
use crate::ids::IncidentId;
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
    /// A resolved incident changed (a note, its severity, a reopen): its
    /// postmortem file is written again.
    Changed(IncidentId),
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
    /// Starts the task that writes postmortem files; send it an incident
    /// whenever its postmortem may have changed. It writes one file at a
    /// time, from the store as it is when it gets there, so the file on
    /// disk ends as the newest render; ids that pile up meanwhile are
    /// written once.
    pub fn start_files(&self) -> PostmortemFiles {
        let (tx, mut rx) = mpsc::unbounded_channel::<IncidentId>();
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut ids = BTreeSet::from([first]);
                while let Ok(more) = rx.try_recv() {
                    ids.insert(more);
                }
                for id in ids {
                    this.write_file(id).await;
                }
            }
        });
        PostmortemFiles { tx }
    }

    async fn write_file(&self, id: IncidentId) {
        let Some(dir) = self.dir.clone() else { return };
        let (store, live) = (self.store.clone(), self.live.clone());
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
            let text = live.postmortems().render_stored(store.as_ref(), id)?;
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{id}.md"));
            // Write beside and rename, so a reader never sees half a file.
            let partial = dir.join(format!(".{id}.md.partial"));
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

    /// The Slack summary of a resolved incident, with the figures its
    /// postmortem shows.
    pub async fn summarize(self, id: IncidentId) {
        if !self.notices.wants(NoticeKind::IncidentResolved) {
            return;
        }
        // The summary reads the stored record: the resolve is on disk.
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let incident = store.incident(id)?;
            let timeline = store.timeline(id)?;
            Ok(incident.map(|i| (i, timeline)))
        })
        .await;
        if let Ok(Ok(Some((inc, timeline)))) = read {
            let times = crate::timing::Times::of(&inc, &timeline);
            let link = self.notices.link(&crate::incident::page_path(id));
            self.notices.notify(
                NoticeKind::IncidentResolved,
                format!("incident_resolved:{id}"),
                Some(id),
                crate::notices::text::resolved(&inc, &times, link),
            );
        }
    }
}

/// Where to send incidents whose postmortem file is to be written.
#[derive(Clone)]
pub struct PostmortemFiles {
    tx: mpsc::UnboundedSender<IncidentId>,
}

impl PostmortemFiles {
    pub fn write(&self, id: IncidentId) {
        let _ = self.tx.send(id);
    }
}
