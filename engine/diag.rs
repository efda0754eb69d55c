//! Problems found in runbooks, playbooks and templates, each tied to
//! `path:line:col`, collected so one pass reports all of them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::Pos;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.pos, self.message)
    }
}

/// Collects problems for one file at a time.
#[derive(Debug)]
pub struct Diagnostics<'a> {
    path: &'a Path,
    found: &'a mut Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(path: &'a Path, found: &'a mut Vec<Diagnostic>) -> Self {
        Diagnostics { path, found }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.found.push(Diagnostic {
            path: self.path.to_path_buf(),
            pos,
            message: message.into(),
        });
    }

    /// A problem in another file than the one being read (a `.rhai` file
    /// that a runbook names).
    pub fn error_in(&mut self, path: &Path, pos: Pos, message: impl Into<String>) {
        self.found.push(Diagnostic {
            path: path.to_path_buf(),
            pos,
            message: message.into(),
        });
    }

    pub fn path(&self) -> &Path {
        self.path
    }

    /// How many problems have been found so far (in all files).
    pub fn count(&self) -> usize {
        self.found.len()
    }
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| {
            // A prefix (`timeout` for `timeout_secs`) is as good as a typo.
            let prefix = c.starts_with(word) || word.starts_with(c);
            (if prefix { 1 } else { edit_distance(word, c) }, *c)
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Formats a list of names as `` `a`, `b` or `c` ``.
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name_for_a_typo() {
        let keys = ["timeout_secs", "retries", "on_failure"];
        assert_eq!(did_you_mean("timeout", &keys), Some("timeout_secs"));
        assert_eq!(did_you_mean("retires", &keys), Some("retries"));
        assert_eq!(did_you_mean("banana", &keys), None);
    }

    #[test]
    fn lists_alternatives_in_prose() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
