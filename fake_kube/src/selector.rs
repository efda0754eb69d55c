//! Label and field selectors as they arrive in `?labelSelector=` and
//! `?fieldSelector=`: equality (`k=v`, `k==v`, `k!=v`), sets
//! (`k in (a,b)`, `k notin (a,b)`) and existence (`k`, `!k`).

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses a selector string; the error names the part that is malformed.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let requirements = split_top_level(text)
            .into_iter()
            .map(|part| parse_requirement(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector { requirements })
    }

    /// Whether a key/value lookup satisfies every requirement.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => !lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Whether an object satisfies a field selector (`metadata.name`,
    /// `metadata.namespace`; other fields are looked up by dotted path).
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|path| {
            let mut cur = object;
            for part in path.split('.') {
                cur = cur.get(part)?;
            }
            match cur {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
    }
}

/// Splits on commas that are not inside a `(...)` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("malformed selector requirement {part:?}");
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k, part)?, v.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k, part)?, v.trim().to_string()));
    }
    if let Some(open) = part.find('(') {
        let close = part.rfind(')').filter(|c| *c > open).ok_or_else(bad)?;
        let values: Vec<String> = part[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        return match head.as_slice() {
            [k, "in"] => Ok(Requirement::In(key(k, part)?, values)),
            [k, "notin"] => Ok(Requirement::NotIn(key(k, part)?, values)),
            _ => Err(bad()),
        };
    }
    match part.strip_prefix('!') {
        Some(k) => Ok(Requirement::NotExists(key(k, part)?)),
        None => Ok(Requirement::Exists(key(part, part)?)),
    }
}

fn key(raw: &str, part: &str) -> Result<String, String> {
    let k = raw.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("malformed selector requirement {part:?}"));
    }
    Ok(k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn equality_requirements_all_have_to_hold() {
        let s = Selector::parse("app=web,tier==front").unwrap();
        assert!(s.matches_labels(&labelled(json!({"app": "web", "tier": "front"}))));
        assert!(!s.matches_labels(&labelled(json!({"app": "web"}))));
    }

    #[test]
    fn set_requirements_split_on_commas_outside_parentheses() {
        let s = Selector::parse("app in (web, api),!legacy").unwrap();
        assert!(s.matches_labels(&labelled(json!({"app": "api"}))));
        assert!(!s.matches_labels(&labelled(json!({"app": "db"}))));
        assert!(!s.matches_labels(&labelled(json!({"app": "web", "legacy": "y"}))));
    }

    #[test]
    fn a_malformed_selector_is_an_error() {
        assert!(Selector::parse("app in web").is_err());
    }
}
