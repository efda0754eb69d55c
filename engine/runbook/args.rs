//! The `with:` arguments of a step, checked against its action's spec:
//! each argument's type, required ones, groups of which exactly one must be
//! given, template syntax and references, and `slack.notify`'s template name.

use crate::actions::k8s::scale::parse_scale_by;
use crate::actions::{Action, ArgKind};
use crate::decode::{expect_int, expect_str, Fields};
use crate::diag::{did_you_mean, one_of, Diagnostics};
use crate::template::{self, Scope};
use crate::yaml::{Node, Pos, Value};

use super::load::StepContext;

impl StepContext<'_> {
    /// Checks `with:` against the action's arguments and returns it as JSON.
    pub(super) fn arguments(
        &self,
        action: Action,
        with: Option<&Node>,
        step: &Fields,
        label: &str,
        d: &mut Diagnostics,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let spec = action.spec();
        let what = format!("`with` of {label} ({})", spec.name);
        let names = spec.arg_names();
        let empty = Node {
            pos: step.pos,
            value: Value::Map(Vec::new()),
        };
        let with_node = with.unwrap_or(&empty);
        let f = Fields::of(with_node, what.clone(), &names, d)?;
        let errors_before = d.count();
        let mut out = serde_json::Map::new();
        for arg in spec.args {
            match f.get(arg.name) {
                Some(value) => {
                    if let Some(v) = self.argument(arg.kind, value, &f.field(arg.name), d) {
                        out.insert(arg.name.to_string(), v);
                    }
                }
                None if arg.required => d.error(
                    with_node.pos,
                    format!(
                        "{label} ({}) is missing `{}` in `with`; add e.g. `{}: {}`",
                        spec.name,
                        arg.name,
                        arg.name,
                        example(arg.kind, arg.name)
                    ),
                ),
                None => {}
            }
        }
        for group in spec.exactly_one_of {
            let given: Vec<&str> = group.iter().copied().filter(|n| f.get(n).is_some()).collect();
            if given.is_empty() {
                d.error(
                    with_node.pos,
                    format!("{label} ({}) needs one of {} in `with`", spec.name, one_of(group)),
                );
            } else if given.len() > 1 {
                d.error(
                    with_node.pos,
                    format!(
                        "{label} ({}) gives both {}; keep only one of them",
                        spec.name,
                        given.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(" and ")
                    ),
                );
            }
        }
        if action == Action::Http {
            check_http_url(&f, d);
        }
        if action == Action::SlackNotify {
            self.check_template_name(&f, d);
        }
        (d.count() == errors_before).then_some(out)
    }

    fn argument(&self, kind: ArgKind, node: &Node, field: &str, d: &mut Diagnostics) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        // A template renders at run time; its type is checked then, except
        // that a bare `{{params.x}}` must have a type that can fit.
        if let Some(text) = node.as_str() {
            if template::is_template(text) && kind != ArgKind::Any {
                self.check_text(text, node.pos, field, d);
                self.check_param_type(text, kind, node.pos, field, d);
                return Some(J::String(text.to_string()));
            }
        }
        let bad = |d: &mut Diagnostics| {
            d.error(
                node.pos,
                format!(
                    "{field} must be {}, found {}; e.g. `{}`",
                    article(kind),
                    node.brief(),
                    example(kind, field)
                ),
            );
            None
        };
        match kind {
            ArgKind::Str => match &node.value {
                Value::Str { text, .. } => {
                    self.check_text(text, node.pos, field, d);
                    Some(J::String(text.clone()))
                }
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => Some(J::String(template::plain(&node.to_json()))),
                _ => bad(d),
            },
            ArgKind::Int => match node.value {
                Value::Int(i) if i >= 0 => Some(J::from(i)),
                _ => bad(d),
            },
            ArgKind::Bool => match node.value {
                Value::Bool(b) => Some(J::Bool(b)),
                _ => bad(d),
            },
            ArgKind::Enum(words) => match node.as_str() {
                Some(w) if words.contains(&w) => Some(J::String(w.into())),
                Some(w) => {
                    let hint = did_you_mean(w, words)
                        .map(|n| format!("did you mean `{n}`? "))
                        .unwrap_or_default();
                    d.error(
                        node.pos,
                        format!("{field} is `{w}`; {hint}write one of {}", one_of(words)),
                    );
                    None
                }
                None => bad(d),
            },
            ArgKind::ScaleBy => match &node.value {
                Value::Int(i) => Some(J::String(format!("{i:+}"))),
                Value::Str { text, .. } if parse_scale_by(text).is_some() => Some(J::String(text.clone())),
                _ => bad(d),
            },
            ArgKind::Statuses => {
                let codes: Vec<&Node> = match &node.value {
                    Value::Seq(items) => items.iter().collect(),
                    _ => vec![node],
                };
                let mut out = Vec::new();
                for c in codes {
                    out.push(J::from(expect_int(c, field, 100, 599, d)?));
                }
                Some(J::Array(out))
            }
            ArgKind::StrList => match &node.value {
                Value::Str { text, .. } => Some(J::Array(vec![J::String(text.clone())])),
                Value::Seq(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        out.push(J::String(
                            expect_str(item, &format!("each entry of {field}"), d)?.to_string(),
                        ));
                    }
                    Some(J::Array(out))
                }
                _ => bad(d),
            },
            ArgKind::StrMap | ArgKind::IntMap => {
                let Some(entries) = node.as_map() else {
                    return bad(d);
                };
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    let entry_field = format!("`{}` under {field}", k.key_text());
                    let value = match (&v.value, kind) {
                        (Value::Str { text, .. }, _) if template::is_template(text) => {
                            self.check_text(text, v.pos, &entry_field, d);
                            J::String(text.clone())
                        }
                        (Value::Int(i), ArgKind::IntMap) => J::from(*i),
                        (Value::Str { text, .. }, ArgKind::StrMap) => {
                            self.check_text(text, v.pos, &entry_field, d);
                            J::String(text.clone())
                        }
                        (Value::Int(_) | Value::Float(_) | Value::Bool(_), ArgKind::StrMap) => {
                            J::String(template::plain(&v.to_json()))
                        }
                        _ => {
                            let want = if kind == ArgKind::IntMap {
                                "a whole number"
                            } else {
                                "a string"
                            };
                            d.error(v.pos, format!("{entry_field} must be {want}, found {}", v.brief()));
                            continue;
                        }
                    };
                    out.insert(k.key_text(), value);
                }
                Some(J::Object(out))
            }
            ArgKind::Any => {
                self.check_strings_in(node, field, d);
                Some(node.to_json())
            }
        }
    }

    fn check_strings_in(&self, node: &Node, field: &str, d: &mut Diagnostics) {
        match &node.value {
            Value::Str { text, .. } => self.check_text(text, node.pos, field, d),
            Value::Seq(items) => items.iter().for_each(|i| self.check_strings_in(i, field, d)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.check_strings_in(v, field, d)),
            _ => {}
        }
    }

    /// Checks a string value's template and secret references.
    fn check_text(&self, text: &str, pos: Pos, field: &str, d: &mut Diagnostics) {
        if let Err(msg) = crate::secret::check_references(text) {
            d.error(pos, format!("{field}: {msg}"));
        }
        if !template::is_template(text) {
            return;
        }
        let scope = Scope {
            roots: Some(template::STEP_ROOTS),
            params: Some(self.params),
            steps: Some(&self.earlier),
            partials: None,
        };
        for p in template::check(text, &scope) {
            let at = if p.line > 1 {
                format!(" (template line {}, column {})", p.line, p.col)
            } else {
                String::new()
            };
            d.error(pos, format!("{field}: {}{at}", p.message));
        }
    }

    /// `secs: "{{params.namespace}}"` with `namespace: string` can never
    /// render to a whole number: say so now, not at 3 a.m.
    fn check_param_type(&self, text: &str, kind: ArgKind, pos: Pos, field: &str, d: &mut Diagnostics) {
        let Some(name) = text
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(str::trim)
            .and_then(|t| t.strip_prefix("params."))
        else {
            return;
        };
        let Some(param) = self.param_types.get(name) else {
            return;
        };
        use super::ParamType as P;
        let fits = match kind {
            ArgKind::Int => matches!(param, P::Int),
            ArgKind::Bool => matches!(param, P::Bool),
            ArgKind::StrMap | ArgKind::IntMap => false,
            ArgKind::Statuses => matches!(param, P::Int | P::List),
            ArgKind::StrList => matches!(param, P::String | P::List),
            _ => !matches!(param, P::List),
        };
        if !fits {
            let wanted = kind.describe();
            let wanted = match wanted.chars().next() {
                Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {wanted}"),
                Some('`') => wanted,
                _ if wanted.starts_with("one of") => wanted,
                _ => format!("a {wanted}"),
            };
            d.error(
                pos,
                format!(
                    "{field} must be {} but `params.{name}` is declared `{}`; declare the parameter as `{{type: {}}}` or pass another value",
                    wanted,
                    param.name(),
                    match kind {
                        ArgKind::Int => "int",
                        ArgKind::Bool => "bool",
                        ArgKind::StrList | ArgKind::Statuses => "list",
                        _ => "string",
                    }
                ),
            );
        }
    }

    fn check_template_name(&self, f: &Fields, d: &mut Diagnostics) {
        let (Some(known), Some(node)) = (self.tools.templates, f.get("template")) else {
            return;
        };
        let Some(name) = node.as_str() else { return };
        if !known.contains(name) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            let hint = did_you_mean(name, &names)
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            d.error(node.pos, format!("{} names template `{name}`, which is not in templates/; {hint}add templates/{name}.hbs or use `text:`", f.field("template")));
        }
    }
}

fn article(kind: ArgKind) -> String {
    match kind {
        ArgKind::Int => "a whole number (or a template)".into(),
        ArgKind::Bool => "`true` or `false`".into(),
        ArgKind::Str => "a string".into(),
        ArgKind::StrMap => "a mapping of names to strings".into(),
        ArgKind::IntMap => "a mapping of names to whole numbers".into(),
        other => other.describe(),
    }
}

fn example(kind: ArgKind, name: &str) -> String {
    let name = name.trim_matches('`').split('`').next().unwrap_or(name);
    match kind {
        ArgKind::Int => "3".into(),
        ArgKind::Bool => "true".into(),
        ArgKind::StrMap => "{version: stable}".into(),
        ArgKind::IntMap => "{primary: 0, standby: 100}".into(),
        ArgKind::StrList => "[oncall]".into(),
        ArgKind::Enum(words) => words[0].into(),
        ArgKind::ScaleBy => "\"+2\"".into(),
        ArgKind::Statuses => "[200, 204]".into(),
        ArgKind::Any => "{key: value}".into(),
        ArgKind::Str => format!("\"{{{{params.{name}}}}}\""),
    }
}

/// An `http` step's URL, when written out, must be http:// or https://.
fn check_http_url(f: &Fields, d: &mut Diagnostics) {
    let Some(node) = f.get("url") else { return };
    let Some(url) = node.as_str() else { return };
    if template::is_template(url) || url.starts_with("${") {
        return;
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        d.error(
            node.pos,
            format!(
                "{} is {url:?}; write an http:// or https:// URL, e.g. `https://status.example.com/api`",
                f.field("url")
            ),
        );
    }
}
