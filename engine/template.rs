//! Handlebars for laojun: the helpers every template may use, rendering of
//! `with:` values, and the checks `validate` runs on a template before it
//! is ever rendered (syntax, unknown helpers, unknown partials, references to
//! parameters and steps that do not exist).
//!
//! Rendering is one pass over data: a label value that contains `{{...}}`
//! is printed as text, never compiled as a template.

use std::collections::{HashMap, HashSet};

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason, Template};

/// The names a `with:` value may start from.
pub const STEP_ROOTS: &[&str] = &["params", "alert", "incident", "steps", "run"];

/// Handlebars' own helpers and laojun's; a template may call no other.
pub const HELPERS: &[&str] = &[
    "and", "coalesce", "date", "duration", "each", "eq", "gt", "gte", "if", "json", "len", "log", "lookup", "lower",
    "lt", "lte", "md", "ne", "not", "or", "promql", "raw", "unless", "upper", "with",
];

fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name)
}

/// A Handlebars registry with laojun's helpers and no HTML escaping (values
/// fill plain text and JSON fields, not HTML).
pub fn registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("coalesce", Box::new(coalesce));
    hb.register_helper("upper", Box::new(upper));
    hb.register_helper("lower", Box::new(lower));
    hb.register_helper("json", Box::new(json));
    hb.register_helper("date", date_in(chrono_tz::UTC));
    hb.register_helper("duration", Box::new(duration));
    hb.register_helper("md", Box::new(md));
    hb.register_helper("promql", Box::new(promql));
    hb
}

/// `{{date t}}`: an RFC 3339 time shown in `tz`, e.g. `2026-11-29 14:30:00 CST`.
pub fn date_in(tz: chrono_tz::Tz) -> Box<dyn handlebars::HelperDef + Send + Sync> {
    Box::new(
        move |h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output| -> HelperResult {
            let raw = h.param(0).map(|p| plain(p.value())).unwrap_or_default();
            let text = match chrono::DateTime::parse_from_rfc3339(&raw) {
                Ok(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
                Err(_) => "—".to_string(),
            };
            out.write(&text)?;
            Ok(())
        },
    )
}

/// `{{duration secs}}`: `1h 15m`, `4m 05s`, `12s`.
fn duration(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let text = h
        .param(0)
        .and_then(|p| p.value().as_i64())
        .map_or_else(|| "—".to_string(), human_duration);
    out.write(&text)?;
    Ok(())
}

/// `{{md value}}`: the value with markdown syntax escaped.
fn md(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = h.param(0).map(|p| plain(p.value())).unwrap_or_default();
    out.write(&escape_markdown(&v))?;
    Ok(())
}

/// `{{promql value}}`: the value escaped for inside a double-quoted PromQL
/// string, so a label value fills a matcher (`up{job="{{promql
/// alert.labels.job}}"}`) and can never close it and add query of its own.
fn promql(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = h.param(0).map(|p| plain(p.value())).unwrap_or_default();
    out.write(&escape_promql(&v))?;
    Ok(())
}

/// Escapes `\`, `"` and line breaks as PromQL (Go) string escapes.
pub fn escape_promql(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes what markdown would read as syntax (emphasis, links, images,
/// HTML, headings, tables, code) and template braces, and folds line
/// breaks, so a value stays one inline piece of text. List markers are
/// escaped only where they would start a list: at the value's start.
pub fn escape_markdown(text: &str) -> String {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let special = |b: u8| {
        matches!(
            b,
            b'\\' | b'`' | b'*' | b'_' | b'{' | b'}' | b'[' | b']' | b'#' | b'|' | b'<' | b'>' | b'~' | b'\n' | b'\r'
        )
    };
    let marker_at_start = text.starts_with(['-', '+']) || (digits > 0 && text[digits..].starts_with(['.', ')']));
    if !marker_at_start && !text.bytes().any(special) {
        // Most values (names, times, numbers) need nothing: copy them whole.
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        let at_start_marker =
            (i == 0 && matches!(c, '-' | '+')) || (digits > 0 && i == digits && matches!(c, '.' | ')'));
        match c {
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '#' | '|' | '<' | '>' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ if at_start_marker => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Seconds as people say them: `1h 15m`, `4m 05s`, `12s`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h {m:02}m"),
    }
}

/// `{{coalesce a b c}}`: the first value that is present and not empty.
fn coalesce(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let first = h.params().iter().map(|p| p.value()).find(|v| match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    });
    if let Some(v) = first {
        out.write(&plain(v))?;
    }
    Ok(())
}

fn upper(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = h.param(0).map(|p| plain(p.value())).unwrap_or_default();
    out.write(&v.to_uppercase())?;
    Ok(())
}

fn lower(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = h.param(0).map(|p| plain(p.value())).unwrap_or_default();
    out.write(&v.to_lowercase())?;
    Ok(())
}

/// `{{json value}}`: the value as JSON text (for HTTP bodies).
fn json(h: &Helper, _: &Handlebars, _: &Context, _: &mut RenderContext, out: &mut dyn Output) -> HelperResult {
    let v = h
        .param(0)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    out.write(&v.value().to_string())?;
    Ok(())
}

/// A JSON value as plain text: strings without quotes.
pub fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// True when a string holds template syntax and must be rendered.
pub fn is_template(s: &str) -> bool {
    s.contains("{{")
}

/// A problem in a template; `line`/`col` are within the template text
/// (1-based), or 0 when the problem is about the template as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// What names a template may refer to. `None` means "not checked".
#[derive(Default)]
pub struct Scope<'a> {
    /// Allowed first segments of a path (`params`, `alert`, ...).
    pub roots: Option<&'a [&'a str]>,
    /// Declared runbook parameters, for `params.X`.
    pub params: Option<&'a [String]>,
    /// Steps that ran before this one, for `steps.X`.
    pub steps: Option<&'a [String]>,
    /// Templates a partial (`{{> name}}`) may name.
    pub partials: Option<&'a HashSet<String>>,
}

/// Compiles `source` and checks its references; returns every problem.
pub fn check(source: &str, scope: &Scope) -> Vec<TemplateProblem> {
    if !source.contains("{{") {
        // Plain text: nothing to compile or check.
        return Vec::new();
    }
    let template = match compiled(source) {
        Ok(t) => t,
        Err(e) => {
            let (line, col) = e.pos().unwrap_or((0, 0));
            let mut reason = e.reason().to_string();
            // The parser's own words list every token it could have taken.
            if reason.contains("expected escape, expression") {
                reason = "invalid Handlebars syntax here: is a `{{#block}}` left without its `{{/block}}`, or a `{{` without `}}`?".into();
            }
            return vec![TemplateProblem {
                line,
                col,
                message: format!("template does not compile: {reason}"),
            }];
        }
    };
    let mut problems = Vec::new();
    walk(&template, scope, true, &mut problems);
    problems
}

thread_local! {
    /// Templates compiled on this thread, by source: catalogs say the same
    /// things again and again (`{{params.namespace}}` in every runbook), and
    /// compiling is most of what loading a catalog costs.
    static COMPILED: std::cell::RefCell<HashMap<String, std::rc::Rc<Template>>> = Default::default();
}

fn compiled(source: &str) -> Result<std::rc::Rc<Template>, handlebars::TemplateError> {
    if let Some(t) = COMPILED.with(|c| c.borrow().get(source).cloned()) {
        return Ok(t);
    }
    let t = std::rc::Rc::new(Template::compile(source)?);
    COMPILED.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(source.to_string(), t.clone());
    });
    Ok(t)
}

fn walk(t: &Template, scope: &Scope, top_context: bool, out: &mut Vec<TemplateProblem>) {
    for (i, element) in t.elements.iter().enumerate() {
        let found_before = out.len();
        match element {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                helper_or_path(h, scope, top_context, out);
            }
            TemplateElement::HelperBlock(h) => {
                helper_or_path(h, scope, top_context, out);
                // `if`/`unless` keep the context; `each`/`with` change it, so
                // paths inside them are relative to something else.
                let keeps_context = matches!(&h.name, Parameter::Name(n) if n == "if" || n == "unless");
                for inner in [&h.template, &h.inverse].into_iter().flatten() {
                    walk(inner, scope, top_context && keeps_context, out);
                }
            }
            TemplateElement::PartialExpression(p) | TemplateElement::PartialBlock(p) => {
                if let (Parameter::Name(name), Some(known)) = (&p.name, scope.partials) {
                    if !known.contains(name) {
                        out.push(problem(format!(
                            "partial `{{{{> {name}}}}}` names no template; add templates/{name}.hbs or fix the name"
                        )));
                    }
                }
                if let Some(inner) = &p.template {
                    walk(inner, scope, false, out);
                }
            }
            TemplateElement::DecoratorExpression(_)
            | TemplateElement::DecoratorBlock(_)
            | TemplateElement::RawString(_)
            | TemplateElement::Comment(_) => {}
            _ => {}
        }
        // Problems found in this element point at where it starts.
        if let Some(m) = t.mapping.get(i) {
            for p in &mut out[found_before..] {
                if p.line == 0 {
                    (p.line, p.col) = (m.0, m.1);
                }
            }
        }
    }
}

fn helper_or_path(h: &HelperTemplate, scope: &Scope, top: bool, out: &mut Vec<TemplateProblem>) {
    let is_call = !h.params.is_empty() || !h.hash.is_empty() || h.block;
    match &h.name {
        Parameter::Name(name) if is_call && !is_helper(name) => {
            out.push(problem(format!(
                "unknown helper `{name}`; the helpers are {}",
                helper_names()
            )));
        }
        Parameter::Name(name) if !is_call && top && !is_helper(name) => check_path(name, scope, out),
        Parameter::Path(path) if top => check_path(path_text(path), scope, out),
        _ => {}
    }
    for p in h.params.iter().chain(h.hash.values()) {
        match p {
            Parameter::Path(path) if top => check_path(path_text(path), scope, out),
            Parameter::Name(name) if top => check_path(name, scope, out),
            Parameter::Subexpression(sub) => {
                if let TemplateElement::Expression(inner) = sub.element.as_ref() {
                    helper_or_path(inner, scope, top, out);
                }
            }
            _ => {}
        }
    }
}

fn path_text(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)) => raw,
    }
}

fn check_path(raw: &str, scope: &Scope, out: &mut Vec<TemplateProblem>) {
    if raw.starts_with('@') || raw.starts_with("this") || raw.starts_with("..") {
        return;
    }
    let mut segs = raw.split(['.', '/']);
    let root = segs.next().unwrap_or_default();
    if let Some(roots) = scope.roots {
        if !roots.contains(&root) {
            let hint = crate::diag::did_you_mean(root, roots)
                .map(|near| format!("did you mean `{near}`? "))
                .unwrap_or_default();
            out.push(problem(format!(
                "`{{{{{raw}}}}}` refers to `{root}`, which a step cannot see; {hint}values start with {}",
                crate::diag::one_of(roots)
            )));
            return;
        }
    }
    let second = segs.next();
    let (list, what) = match root {
        "params" => (scope.params, "parameter"),
        "steps" => (scope.steps, "earlier step"),
        _ => return,
    };
    let (Some(known), Some(name)) = (list, second) else {
        return;
    };
    if !known.iter().any(|k| k == name) {
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        let hint = crate::diag::did_you_mean(name, &names)
            .map(|near| format!("; did you mean `{root}.{near}`?"))
            .unwrap_or_default();
        let listing = if names.is_empty() {
            format!("there is no {what}")
        } else {
            format!("known: {}", crate::diag::one_of(&names))
        };
        out.push(problem(format!(
            "`{{{{{raw}}}}}` names no {what} `{name}`{hint} ({listing})"
        )));
    }
}

fn helper_names() -> String {
    crate::diag::one_of(HELPERS)
}

fn problem(message: String) -> TemplateProblem {
    TemplateProblem {
        line: 0,
        col: 0,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Vec<String> {
        vec!["namespace".into(), "deployment".into()]
    }

    #[test]
    fn references_to_undeclared_params_and_later_steps_are_found() {
        let p = params();
        let steps = vec!["notify".to_string()];
        let scope = Scope {
            roots: Some(STEP_ROOTS),
            params: Some(&p),
            steps: Some(&steps),
            partials: None,
        };
        let found = check(
            "{{params.namespce}} {{steps.verify.output}} {{alerts.labels.x}}",
            &scope,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].message.contains("did you mean `params.namespace`"));
        assert!(found[1].message.contains("no earlier step `verify`"));
        assert!(found[2].message.contains("did you mean `alert`"));
        assert!(check("{{coalesce alert.labels.deployment alert.labels.app}}", &scope).is_empty());
    }

    #[test]
    fn a_label_value_in_a_promql_matcher_cannot_close_it() {
        let hb = registry();
        let data = json!({"alert": {"labels": {"job": "api\"} or vector(1) or up{x=\"\\"}}});
        let query = hb
            .render_template(r#"up{job="{{promql alert.labels.job}}"} == 0"#, &data)
            .unwrap();
        assert_eq!(query, r#"up{job="api\"} or vector(1) or up{x=\"\\"} == 0"#);
    }

    #[test]
    fn unknown_helpers_and_partials_are_found() {
        let partials = HashSet::from(["header".to_string()]);
        let scope = Scope {
            partials: Some(&partials),
            ..Scope::default()
        };
        let found = check("{{> header}}{{> footer}}{{frobnicate x}}", &scope);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("footer"));
        assert!(found[1].message.contains("unknown helper `frobnicate`"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let found = check("ok\n{{#if x}}never closed", &Scope::default());
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("does not compile"), "{found:?}");
    }

    #[test]
    fn label_values_holding_template_syntax_render_as_text() {
        let hb = registry();
        let data = json!({"alert": {"labels": {"pod": "{{params.secret}}"}}});
        let out = hb.render_template("pod {{alert.labels.pod}}", &data).unwrap();
        assert_eq!(out, "pod {{params.secret}}");
    }

    #[test]
    fn coalesce_takes_the_first_non_empty_value() {
        let hb = registry();
        let data = json!({"alert": {"labels": {"app": "", "service": "api"}}});
        let out = hb
            .render_template(
                "{{coalesce alert.labels.deployment alert.labels.app alert.labels.service}}",
                &data,
            )
            .unwrap();
        assert_eq!(out, "api");
    }
}
