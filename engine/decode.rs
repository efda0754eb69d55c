//! Typed reads from a positioned YAML tree. Each read that fails records a
//! problem that names the field, what was expected and what was found, and
//! returns `None` so the caller can go on and find the next problem.

use crate::diag::{did_you_mean, one_of, Diagnostics};
use crate::yaml::{Node, Pos, Value};

/// The keys of one mapping, checked against the keys it may have.
pub struct Fields<'n> {
    pub pos: Pos,
    entries: &'n [(Node, Node)],
    /// What this mapping is, for messages: "step `rollback`", "the runbook".
    pub what: String,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping whose keys must be among `allowed`; every
    /// unknown key is reported with the closest allowed one.
    pub fn of(node: &'n Node, what: impl Into<String>, allowed: &[&str], d: &mut Diagnostics) -> Option<Self> {
        let what = what.into();
        let Some(entries) = node.as_map() else {
            d.error(
                node.pos,
                format!("{what} must be a mapping (`key: value` lines), found {}", node.kind()),
            );
            return None;
        };
        for (key, _) in entries {
            let Some(name) = key.as_str() else {
                d.error(key.pos, format!("keys in {what} are names, found {}", key.brief()));
                continue;
            };
            if !allowed.contains(&name) {
                let hint = match did_you_mean(name, allowed) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::new(),
                };
                d.error(
                    key.pos,
                    format!("unknown key `{name}` in {what}{hint} (allowed: {})", one_of(allowed)),
                );
            }
        }
        Some(Fields {
            pos: node.pos,
            entries,
            what,
        })
    }

    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The value of a required key; reports it missing with an example.
    pub fn required(&self, key: &str, example: &str, d: &mut Diagnostics) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            d.error(
                self.pos,
                format!("{} is missing `{key}`; add e.g. `{example}`", self.what),
            );
        }
        found
    }

    pub fn opt_str(&self, key: &str, d: &mut Diagnostics) -> Option<&'n str> {
        self.get(key).and_then(|n| expect_str(n, &self.field(key), d))
    }

    pub fn req_str(&self, key: &str, example: &str, d: &mut Diagnostics) -> Option<&'n str> {
        self.required(key, example, d)
            .and_then(|n| expect_str(n, &self.field(key), d))
    }

    pub fn opt_bool(&self, key: &str, d: &mut Diagnostics) -> Option<bool> {
        let node = self.get(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                d.error(
                    node.pos,
                    format!("{} must be `true` or `false`, found {}", self.field(key), node.brief()),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn opt_int(&self, key: &str, min: i64, max: i64, d: &mut Diagnostics) -> Option<i64> {
        self.get(key).and_then(|n| expect_int(n, &self.field(key), min, max, d))
    }

    /// "`timeout_secs` in step `x`" for messages.
    pub fn field(&self, key: &str) -> String {
        format!("`{key}` in {}", self.what)
    }

    pub fn entries(&self) -> &'n [(Node, Node)] {
        self.entries
    }
}

pub fn expect_str<'n>(node: &'n Node, field: &str, d: &mut Diagnostics) -> Option<&'n str> {
    match &node.value {
        Value::Str { text, .. } => Some(text),
        _ => {
            d.error(node.pos, format!("{field} must be a string, found {}", node.brief()));
            None
        }
    }
}

pub fn expect_int(node: &Node, field: &str, min: i64, max: i64, d: &mut Diagnostics) -> Option<i64> {
    match node.value {
        Value::Int(i) if (min..=max).contains(&i) => Some(i),
        Value::Int(i) => {
            d.error(node.pos, format!("{field} must be between {min} and {max}, found {i}"));
            None
        }
        _ => {
            d.error(
                node.pos,
                format!(
                    "{field} must be a whole number (e.g. `{}`), found {}",
                    min.max(1),
                    node.brief()
                ),
            );
            None
        }
    }
}

/// A list of strings; a single string is accepted as a list of one.
pub fn str_list<'n>(node: &'n Node, field: &str, d: &mut Diagnostics) -> Vec<(&'n str, Pos)> {
    match &node.value {
        Value::Str { text, .. } => vec![(text.as_str(), node.pos)],
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| expect_str(item, &format!("each entry of {field}"), d).map(|s| (s, item.pos)))
            .collect(),
        _ => {
            d.error(
                node.pos,
                format!("{field} must be a list of strings, found {}", node.brief()),
            );
            Vec::new()
        }
    }
}

/// True when `name` is a usable identifier: lower-case letters, digits,
/// `-` and `_`, starting with a letter.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks a runbook's or playbook's `name`: an identifier, equal to its
/// file name, so there is one name to grep for.
pub fn check_name_matches_file(kind: &str, example: &str, name: &str, pos: Pos, d: &mut Diagnostics) {
    if !is_identifier(name) {
        d.error(
            pos,
            format!("{kind} name {name:?} must be lower-case letters, digits, `-` or `_`, starting with a letter (e.g. `{example}`)"),
        );
        return;
    }
    let stem = d.path().file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if stem != name {
        d.error(
            pos,
            format!("{kind} `{name}` is in {stem}.yaml; rename the file to {name}.yaml or write `name: {stem}`"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diagnostic;
    use crate::yaml::parse;
    use std::path::Path;

    #[test]
    fn unknown_keys_are_all_reported_with_a_suggestion() {
        let node = parse("id: a\ntimeout: 3\nretires: 2\n").unwrap();
        let mut found: Vec<Diagnostic> = Vec::new();
        let mut d = Diagnostics::new(Path::new("x.yaml"), &mut found);
        Fields::of(&node, "step `a`", &["id", "timeout_secs", "retries"], &mut d);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].pos, Pos::new(2, 1));
        assert!(found[0].message.contains("did you mean `timeout_secs`"), "{}", found[0]);
        assert!(found[1].message.contains("did you mean `retries`"), "{}", found[1]);
    }

    #[test]
    fn wrong_types_name_the_field_and_what_was_found() {
        let node = parse("timeout_secs: soon\n").unwrap();
        let mut found: Vec<Diagnostic> = Vec::new();
        let mut d = Diagnostics::new(Path::new("x.yaml"), &mut found);
        let f = Fields::of(&node, "step `a`", &["timeout_secs"], &mut d).unwrap();
        assert_eq!(f.opt_int("timeout_secs", 1, 3600, &mut d), None);
        assert_eq!(
            found[0].to_string(),
            "x.yaml:1:15: `timeout_secs` in step `a` must be a whole number (e.g. `1`), found \"soon\""
        );
    }
}
