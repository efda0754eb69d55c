//! AlertManager's label matcher syntax: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`. Regexes are anchored at both ends, as in
//! AlertManager, and a missing label matches as the empty string.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// The comparison a matcher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

/// One parsed matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

/// Why a matcher did not parse; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatcherError(pub String);

/// Regexes from playbooks are small; this bounds a hostile one.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, MatcherError> {
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        MatcherError(format!(
                            "`{name}{}\"{value}\"` has an invalid regex: {}",
                            op.as_str(),
                            first_line(&e.to_string())
                        ))
                    })?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label set passes this matcher.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.regex) {
            (Op::Equal, _) => actual == self.value,
            (Op::NotEqual, _) => actual != self.value,
            (Op::Regex, Some(re)) => re.is_match(actual),
            (Op::NotRegex, Some(re)) => !re.is_match(actual),
            (_, None) => unreachable!("regex matchers are built with a regex"),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Parses one matcher, or several inside braces: `{a="1", b=~"2|3"}`.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let trimmed = input.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| MatcherError(format!("`{trimmed}` opens `{{` but does not close it with `}}`")))?,
        None => trimmed,
    };
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (matcher, after) = parse_one(rest)?;
        out.push(matcher);
        rest = after.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.is_empty() {
            return Err(MatcherError(format!(
                "unexpected `{rest}` after a matcher; separate matchers with `,` inside `{{...}}`"
            )));
        }
    }
    if out.is_empty() {
        return Err(MatcherError(
            "empty matcher; write e.g. `alertname=\"ServiceDown\"`".into(),
        ));
    }
    Ok(out)
}

fn parse_one(s: &str) -> Result<(Matcher, &str), MatcherError> {
    let name_len = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i);
    let name = &s[..name_len];
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_name {
        return Err(MatcherError(format!(
            "`{s}` does not start with a label name; write e.g. `alertname=\"ServiceDown\"`"
        )));
    }
    let after_name = s[name_len..].trim_start();
    let op = [
        ("=~", Op::Regex),
        ("!~", Op::NotRegex),
        ("!=", Op::NotEqual),
        ("=", Op::Equal),
    ]
    .into_iter()
    .find(|(text, _)| after_name.starts_with(text));
    let Some((op_text, op)) = op else {
        return Err(MatcherError(format!(
            "`{s}` needs an operator after `{name}`: one of `=`, `!=`, `=~`, `!~` (e.g. `{name}=\"value\"`)"
        )));
    };
    let after_op = after_name[op_text.len()..].trim_start();
    let (value, rest) = if let Some(quoted) = after_op.strip_prefix('"') {
        parse_quoted(quoted)
            .ok_or_else(|| MatcherError(format!("`{s}` has a value that opens `\"` but never closes it")))?
    } else {
        let end = after_op.find([',', '}']).unwrap_or(after_op.len());
        (after_op[..end].trim_end().to_string(), &after_op[end..])
    };
    Ok((Matcher::new(name, op, &value)?, rest))
}

/// Reads a double-quoted value up to its closing quote, with `\"`, `\\`
/// and `\n` escapes; returns the value and what follows the quote.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => {
                    // Keep unknown escapes as written so regexes like `\d` survive.
                    if other != '"' && other != '\\' {
                        out.push('\\');
                    }
                    out.push(other);
                }
            },
            _ => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_all_four_operators() {
        let ms =
            parse_matchers(r#"{alertname="ServiceDown", severity=~"critical|page", namespace!="dev", env!~"test.*"}"#)
                .unwrap();
        let ops: Vec<Op> = ms.iter().map(|m| m.op).collect();
        assert_eq!(ops, [Op::Equal, Op::Regex, Op::NotEqual, Op::NotRegex]);
        let l = labels(&[
            ("alertname", "ServiceDown"),
            ("severity", "page"),
            ("namespace", "prod"),
        ]);
        assert!(ms.iter().all(|m| m.matches(&l)));
    }

    #[test]
    fn regexes_are_anchored_like_alertmanager() {
        let m = &parse_matchers(r#"severity=~"crit""#).unwrap()[0];
        assert!(!m.matches(&labels(&[("severity", "critical")])));
        assert!(m.matches(&labels(&[("severity", "crit")])));
    }

    #[test]
    fn a_missing_label_matches_as_empty() {
        let m = &parse_matchers(r#"team="""#).unwrap()[0];
        assert!(m.matches(&labels(&[])));
        let m = &parse_matchers(r#"team!="""#).unwrap()[0];
        assert!(!m.matches(&labels(&[])));
    }

    #[test]
    fn unquoted_values_and_escapes_are_accepted() {
        let m = &parse_matchers("alertname=ServiceDown").unwrap()[0];
        assert_eq!(m.value, "ServiceDown");
        let m = &parse_matchers(r#"msg="say \"hi\"""#).unwrap()[0];
        assert_eq!(m.value, r#"say "hi""#);
        let m = &parse_matchers(r#"pod=~"api-\d+""#).unwrap()[0];
        assert!(m.matches(&labels(&[("pod", "api-12")])));
    }

    #[test]
    fn bad_matchers_say_what_to_write() {
        let e = parse_matchers("alertname").unwrap_err();
        assert!(e.0.contains("needs an operator"), "{e}");
        let e = parse_matchers(r#"sev=~"(crit""#).unwrap_err();
        assert!(e.0.contains("invalid regex"), "{e}");
        let e = parse_matchers(r#"="x""#).unwrap_err();
        assert!(e.0.contains("label name"), "{e}");
        let e = parse_matchers(r#"a="x"#).unwrap_err();
        assert!(e.0.contains("never closes"), "{e}");
    }
}
