//! Secrets: values written as references (`${env:NAME}`, `${file:PATH}`)
//! and resolved only when used. A resolved secret lives in `Secret`, whose
//! `Display` and `Debug` print `**REDACTED**`, so it cannot reach a log, a
//! timeline or an error message by accident.

use std::fmt;

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// Why a reference could not be used; never holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text has `${` that is not a well-formed reference.
    #[error("{0}")]
    Malformed(String),
    /// The environment variable is not set.
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("secret file `{path}` cannot be read: {reason}")]
    File { path: String, reason: String },
}

/// One reference found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference<'a> {
    Env(&'a str),
    File(&'a str),
}

/// Splits `text` into literal parts and references.
fn scan(text: &str) -> Result<Vec<Result<&str, Reference<'_>>>, SecretError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        parts.push(Ok(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            SecretError::Malformed("`${` is not closed with `}`; write `${env:NAME}` or `${file:/path}`".into())
        })?;
        let inner = &after[..end];
        let reference = if let Some(name) = inner.strip_prefix("env:") {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(SecretError::Malformed(format!(
                    "`${{{inner}}}` is not an environment variable name; write e.g. `${{env:SLACK_WEBHOOK_URL}}`"
                )));
            }
            Reference::Env(name)
        } else if let Some(path) = inner.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::Malformed(
                    "`${file:}` names no file; write e.g. `${file:/run/secrets/slack}`".into(),
                ));
            }
            Reference::File(path)
        } else {
            return Err(SecretError::Malformed(format!(
                "`${{{inner}}}` is not a secret reference; write `${{env:NAME}}` or `${{file:/path}}`"
            )));
        };
        parts.push(Err(reference));
        rest = &after[end + 1..];
    }
    parts.push(Ok(rest));
    Ok(parts)
}

/// Checks that every `${...}` in `text` is a well-formed reference,
/// without resolving anything (for `validate`).
pub fn check_references(text: &str) -> Result<(), String> {
    scan(text).map(|_| ()).map_err(|e| e.to_string())
}

/// Whether `text` holds any secret reference.
pub fn has_references(text: &str) -> bool {
    text.contains("${")
}

/// Resolves every reference in `text`. File contents lose one trailing
/// newline, as files written by editors and `echo` end with one.
pub fn resolve(text: &str) -> Result<Secret, SecretError> {
    let mut out = String::new();
    for part in scan(text)? {
        match part {
            Ok(literal) => out.push_str(literal),
            Err(Reference::Env(name)) => {
                out.push_str(&std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_string()))?)
            }
            Err(Reference::File(path)) => {
                let content = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    path: path.to_string(),
                    reason: e.kind().to_string(),
                })?;
                out.push_str(content.strip_suffix('\n').unwrap_or(&content));
            }
        }
    }
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new("https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(format!("{s} {s:?}"), "**REDACTED** **REDACTED**");
    }

    #[test]
    fn references_resolve_from_env_and_file() {
        std::env::set_var("LAOJUN_TEST_SECRET_A", "tok");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!("Bearer ${{env:LAOJUN_TEST_SECRET_A}}/${{file:{}}}", file.display());
        assert_eq!(resolve(&text).unwrap().expose(), "Bearer tok/from-file");
    }

    #[test]
    fn a_missing_variable_is_named_and_malformed_references_say_what_to_write() {
        let e = resolve("${env:LAOJUN_TEST_SURELY_UNSET}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable `LAOJUN_TEST_SURELY_UNSET` is not set"
        );
        assert!(check_references("${SLACK}").unwrap_err().contains("${env:NAME}"));
        assert!(check_references("${env:A").is_err());
        assert!(check_references("no references").is_ok());
    }
}
