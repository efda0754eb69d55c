//! Everything under a root folder: `runbooks/`, `playbooks/` and
//! `templates/`, loaded and checked together. `validate` prints what this
//! finds; `serve` refuses to start on a catalog with problems.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics};
use crate::playbook::{self, Playbook};
use crate::runbook::{self, Runbook};
use crate::script::Sandbox;
use crate::template::{self, Scope};
use crate::yaml::Pos;

/// The loaded content of one root folder.
#[derive(Debug, Default)]
pub struct Catalog {
    pub runbooks: BTreeMap<String, Runbook>,
    /// In file-name order, which is the order alerts are routed in.
    pub playbooks: Vec<Playbook>,
    /// Template name (file name without `.hbs`) → source.
    pub templates: BTreeMap<String, String>,
    /// A hash of every file read, so a run can say which version it ran
    /// with and a reload can say what it took.
    pub revision: String,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

/// What loading found: the catalog and every problem.
pub struct Loaded {
    pub catalog: Catalog,
    pub problems: Vec<Diagnostic>,
}

/// Why a root folder could not be read at all (as opposed to problems in
/// its files).
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// None of the three folders is there.
    #[error("{0} has none of runbooks/, playbooks/ or templates/; pass the folder that holds them")]
    Empty(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads and checks everything under `root`.
pub fn load(root: &Path, sandbox: &Sandbox) -> Result<Loaded, RootError> {
    let mut loaded = load_files(root, sandbox)?;
    loaded.catalog.revision = revision(root)?;
    loaded.catalog.loaded_at = chrono::Utc::now();
    Ok(loaded)
}

/// A hash of the names and contents of the files a catalog is read from.
fn revision(root: &Path) -> Result<String, RootError> {
    use std::hash::Hasher;
    // SipHash with fixed keys: the same files give the same revision in
    // every process of this build.
    let mut h = std::hash::DefaultHasher::new();
    for (dir, ext) in [
        ("runbooks", "yaml"),
        ("runbooks", "rhai"),
        ("playbooks", "yaml"),
        ("templates", "hbs"),
    ] {
        for path in files(&root.join(dir), ext)? {
            h.write(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().as_bytes());
            h.write(&std::fs::read(&path).unwrap_or_default());
        }
    }
    Ok(format!("{:016x}", h.finish()))
}

fn load_files(root: &Path, sandbox: &Sandbox) -> Result<Loaded, RootError> {
    let dirs = ["runbooks", "playbooks", "templates"].map(|d| root.join(d));
    if !dirs.iter().any(|d| d.is_dir()) {
        return Err(RootError::Empty(root.to_path_buf()));
    }
    let mut problems = Vec::new();
    let mut catalog = Catalog::default();

    for path in files(&dirs[2], "hbs")? {
        let Some(source) = read(&path, &mut problems)? else {
            continue;
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .trim_end_matches(".hbs")
            .to_string();
        catalog.templates.insert(name, source);
    }
    let template_names: HashSet<String> = catalog.templates.keys().cloned().collect();
    for (name, source) in &catalog.templates {
        let path = dirs[2].join(format!("{name}.hbs"));
        let mut d = Diagnostics::new(&path, &mut problems);
        let scope = Scope {
            partials: Some(&template_names),
            ..Scope::default()
        };
        for p in template::check(source, &scope) {
            d.error(Pos::new(p.line.max(1), p.col.max(1)), p.message);
        }
    }

    // Runbooks whose files have problems: playbooks that call them are not
    // told the runbook "does not exist" on top of the real problem.
    let mut broken = HashSet::new();
    let tools = runbook::load::Tools {
        sandbox,

        templates: Some(&template_names),
    };
    for path in files(&dirs[0], "yaml")? {
        let Some(source) = read(&path, &mut problems)? else {
            broken.insert(stem(&path));
            continue;
        };
        let Some(rb) = runbook::load(&path, &source, &tools, &mut problems) else {
            broken.insert(
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string(),
            );
            continue;
        };
        {
            if let Some(first) = catalog.runbooks.get(&rb.name) {
                let msg = format!(
                    "runbook `{}` is also defined in {}; names must be unique",
                    rb.name,
                    first.path.display()
                );
                Diagnostics::new(&path, &mut problems).error(Pos::new(1, 1), msg);
            } else {
                catalog.runbooks.insert(rb.name.clone(), rb);
            }
        }
    }

    for path in files(&dirs[1], "yaml")? {
        let Some(source) = read(&path, &mut problems)? else {
            continue;
        };
        if let Some(pb) = playbook::load(&path, &source, &mut problems) {
            playbook::check_calls(&pb, &catalog.runbooks, &broken, &mut problems);
            catalog.playbooks.push(pb);
        }
    }
    // Read top to bottom, file by file, like a compiler's output.
    problems.sort_by(|a, b| (&a.path, a.pos).cmp(&(&b.path, b.pos)));
    Ok(Loaded { catalog, problems })
}

/// The files in `dir` ending in `.ext` (`.yml` too for yaml), sorted by
/// name; a missing folder has none.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, RootError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RootError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let e = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            p.is_file() && (e == ext || (ext == "yaml" && e == "yml"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads a file; one that is not UTF-8 is a problem in that file, not a
/// reason to stop checking the others.
fn read(path: &Path, problems: &mut Vec<Diagnostic>) -> Result<Option<String>, RootError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Diagnostics::new(path, problems).error(Pos::new(1, 1), "the file is not UTF-8 text; save it as UTF-8");
            Ok(None)
        }
        Err(source) => Err(RootError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}
