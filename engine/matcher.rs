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

/// Parses matchers exactly as AlertManager's `pkg/labels` does (its config's
/// `matchers:` and `amtool`): one optional `{` and `}` trimmed, matchers
/// separated by commas outside double quotes, a trailing comma allowed.
/// A string with no matcher at all gives none (the caller decides whether
/// that is allowed).
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let s = input.strip_prefix('{').unwrap_or(input);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut inside_quotes, mut escaped) = (false, false);
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => {}
            '"' if !escaped => inside_quotes = !inside_quotes,
            '"' => escaped = false,
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    if !token.trim_matches(is_space).is_empty() {
        tokens.push(token);
    }
    tokens.iter().map(|t| parse_one(t)).collect()
}

/// Go's `\s`: ASCII space, tab, newline, form feed, carriage return.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// One matcher: `^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$`,
/// then the value unquoted and unescaped as AlertManager does.
fn parse_one(token: &str) -> Result<Matcher, MatcherError> {
    let bad = || {
        MatcherError(format!(
            "`{}` is not a matcher; write a label name, an operator (`=`, `!=`, `=~` or `!~`) and a value, e.g. `alertname=\"ServiceDown\"`",
            token.trim_matches(is_space)
        ))
    };
    let s = token.trim_start_matches(is_space);
    let name_len = s
        .char_indices()
        .find(|&(i, c)| {
            let first = c.is_ascii_alphabetic() || c == '_' || c == ':';
            !(first || (i > 0 && c.is_ascii_digit()))
        })
        .map_or(s.len(), |(i, _)| i);
    if name_len == 0 {
        return Err(bad());
    }
    let name = &s[..name_len];
    let after_name = s[name_len..].trim_start_matches(is_space);
    let (op_text, op) = [
        ("=~", Op::Regex),
        ("=", Op::Equal),
        ("!=", Op::NotEqual),
        ("!~", Op::NotRegex),
    ]
    .into_iter()
    .find(|(text, _)| after_name.starts_with(text))
    .ok_or_else(|| {
        MatcherError(format!(
            "`{}` needs an operator after `{name}`: one of `=`, `!=`, `=~`, `!~` (e.g. `{name}=\"value\"`)",
            token.trim_matches(is_space)
        ))
    })?;
    let raw = after_name[op_text.len()..]
        .trim_start_matches(is_space)
        .trim_end_matches(is_space);
    let value = unquote(raw).map_err(|why| {
        let hint = if raw.starts_with(['=', '~']) {
            format!(
                "; `{name}{op_text}{}` reads as `{name}{op_text}` and a value that starts with `{}`: write `{name}{}\"...\"`",
                &raw[..1],
                &raw[..1],
                op.as_str()
            )
        } else {
            "; put the value in double quotes and write a `\"` inside it as `\\\"`".to_string()
        };
        MatcherError(format!("`{}`: {why}{hint}", token.trim_matches(is_space)))
    })?;
    Matcher::new(name, op, &value)
}

/// The value as AlertManager reads it: an optional pair of double quotes
/// around it; `\"`, `\\` and `\n` escapes; any other backslash kept as is;
/// a `"` anywhere else is an error.
fn unquote(raw: &str) -> Result<String, String> {
    let (body, mut expect_closing) = match raw.strip_prefix('"') {
        Some(rest) => (rest, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        let last = i + c.len_utf8() == body.len();
        if escaped {
            escaped = false;
            match c {
                'n' => out.push('\n'),
                '"' | '\\' => out.push(c),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        match c {
            '\\' if !last => escaped = true,
            '"' if expect_closing && last => expect_closing = false,
            '"' => return Err("the value holds a `\"` that is not escaped".into()),
            other => out.push(other),
        }
    }
    if expect_closing {
        return Err("the value opens `\"` but does not close it".into());
    }
    Ok(out)
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
        assert!(e.0.contains("needs an operator after `alertname`"), "{e}");
        let e = parse_matchers(r#"sev=~"(crit""#).unwrap_err();
        assert!(e.0.contains("invalid regex"), "{e}");
        let e = parse_matchers(r#"="x""#).unwrap_err();
        assert!(e.0.contains("is not a matcher"), "{e}");
        let e = parse_matchers(r#"a="x"#).unwrap_err();
        assert!(e.0.contains("does not close"), "{e}");
        let e = parse_matchers(r#"env=="prod""#).unwrap_err();
        assert!(e.0.contains(r#"write `env="..."`"#), "{e}");
    }

    #[test]
    fn what_alertmanager_accepts_reads_as_it_reads_it() {
        assert_eq!(parse_matchers("env==prod").unwrap()[0].value, "=prod");
        assert_eq!(parse_matchers("a=b c").unwrap()[0].value, "b c");
        assert_eq!(parse_matchers(r#"{a="1""#).unwrap()[0].value, "1");
        assert_eq!(parse_matchers(r#"a:b="x""#).unwrap()[0].name, "a:b");
        assert_eq!(parse_matchers("a=").unwrap()[0].value, "");
        assert_eq!(parse_matchers(r#"a="x, y", b=2,"#).unwrap().len(), 2);
        assert_eq!(parse_matchers(r#"p="C:\dir""#).unwrap()[0].value, r"C:\dir");
        assert!(parse_matchers(",a=b").is_err(), "an empty matcher before a comma");
        assert!(parse_matchers("").unwrap().is_empty());
    }
}
