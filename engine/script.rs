//! The one place a Rhai engine is built. Scripts (`when:` conditions and
//! `script` steps) run with bounded operations, call depth, data sizes and
//! wall-clock time; they have no file, network, process or module access;
//! the alert, incident, parameters and step outputs they see are constants.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope, AST};

/// The bounds every script runs within.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_len: usize,
    pub max_map_len: usize,
    pub max_expr_depth: usize,
    pub wall_clock: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_depth: 32,
            max_string_bytes: 1 << 20,
            max_array_len: 100_000,
            max_map_len: 10_000,
            max_expr_depth: 64,
            wall_clock: Duration::from_secs(5),
        }
    }
}

/// A script problem with where it happened in the script (1-based; 0 when
/// Rhai does not know).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A compiled script or condition.
#[derive(Debug, Clone)]
pub struct Script {
    ast: AST,
}

/// What a script run produced: its value and what it printed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptOutput {
    pub value: serde_json::Value,
    pub log: Vec<String>,
}

thread_local! {
    // Scripts run synchronously on the calling thread, so the deadline and
    // the print log of the current run can live here and the engine can be
    // shared.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static PRINTED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// How many printed lines a script may leave; more are dropped.
const MAX_LOG_LINES: usize = 200;

/// A Rhai engine with laojun's limits.
pub struct Sandbox {
    engine: Engine,
    limits: Limits,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new(Limits::default())
    }
}

impl Sandbox {
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_depth)
            .set_max_string_size(limits.max_string_bytes)
            .set_max_array_size(limits.max_array_len)
            .set_max_map_size(limits.max_map_len)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            // `eval` would let a script build code from strings (and strings
            // may hold alert labels).
            .disable_symbol("eval")
            .on_print(|text| record_print(text.to_string()))
            .on_debug(|text, _, _| record_print(text.to_string()))
            .on_progress(|_| {
                let expired = DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() >= at));
                expired.then(|| Dynamic::from("wall-clock limit"))
            });
        Sandbox { engine, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a `when:` condition (a single expression).
    pub fn compile_condition(&self, source: &str) -> Result<Script, ScriptError> {
        self.engine
            .compile_expression(source)
            .map(|ast| Script { ast })
            .map_err(|e| from_position(e.1, format!("does not compile: {}", e.0)))
    }

    /// Compiles a script (statements; the last expression is its value).
    pub fn compile_script(&self, source: &str) -> Result<Script, ScriptError> {
        self.engine
            .compile(source)
            .map(|ast| Script { ast })
            .map_err(|e| from_position(e.1, format!("does not compile: {}", e.0)))
    }

    /// Evaluates a condition; anything but a boolean is an error, so a typo
    /// never silently becomes "true".
    pub fn eval_condition(&self, script: &Script, context: &serde_json::Value) -> Result<bool, ScriptError> {
        let out = self.eval(script, context)?;
        match out.value {
            serde_json::Value::Bool(b) => Ok(b),
            other => Err(ScriptError {
                line: 0,
                col: 0,
                message: format!("a `when:` condition must give true or false, it gave {other}"),
            }),
        }
    }

    /// Runs a script with `context`'s top-level keys as read-only variables.
    /// A script fails its step with `throw "message"`.
    pub fn eval(&self, script: &Script, context: &serde_json::Value) -> Result<ScriptOutput, ScriptError> {
        let mut scope = Scope::new();
        if let serde_json::Value::Object(vars) = context {
            for (name, value) in vars {
                let value = rhai::serde::to_dynamic(value).map_err(|e| from_eval(&e))?;
                scope.push_constant(name.as_str(), value);
            }
        }
        PRINTED.with(|p| p.borrow_mut().clear());
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.wall_clock)));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast);
        DEADLINE.with(|d| d.set(None));
        let log = PRINTED.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let value = result.map_err(|e| self.explain(&e))?;
        let value = rhai::serde::from_dynamic::<serde_json::Value>(&value).map_err(|e| ScriptError {
            line: 0,
            col: 0,
            message: format!("the script's result cannot be used as step output: {e}"),
        })?;
        Ok(ScriptOutput { value, log })
    }

    fn explain(&self, err: &EvalAltResult) -> ScriptError {
        let limits = &self.limits;
        let message = match err {
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "the script went over its limit of {} operations (an endless loop?)",
                limits.max_operations
            ),
            EvalAltResult::ErrorTerminated(..) => format!(
                "the script ran longer than its wall-clock limit of {:?}",
                limits.wall_clock
            ),
            EvalAltResult::ErrorStackOverflow(_) => {
                format!("the script went deeper than {} nested calls", limits.max_call_depth)
            }
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                format!("the script built data that is too large: {what}")
            }
            EvalAltResult::ErrorRuntime(value, _) => format!("the script failed: {value}"),
            other => format!("the script failed: {other}"),
        };
        from_position(err.position(), message)
    }
}

fn record_print(text: String) {
    PRINTED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < MAX_LOG_LINES {
            p.push(text);
        }
    });
}

fn from_eval(err: &EvalAltResult) -> ScriptError {
    from_position(err.position(), err.to_string())
}

fn from_position(pos: Position, message: String) -> ScriptError {
    ScriptError {
        line: pos.line().unwrap_or(0),
        col: pos.position().unwrap_or(0),
        message,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_condition_on_a_missing_label_is_false_not_an_error() {
        let sandbox = Sandbox::default();
        let cond = sandbox
            .compile_condition(r#"alert.labels.severity == "critical""#)
            .unwrap();
        let no_label = serde_json::json!({"alert": {"labels": {}, "annotations": {}}});
        assert_eq!(sandbox.eval_condition(&cond, &no_label), Ok(false));
        let critical = serde_json::json!({"alert": {"labels": {"severity": "critical"}}});
        assert_eq!(sandbox.eval_condition(&cond, &critical), Ok(true));
        let negated = sandbox
            .compile_condition(r#"alert.labels.severity != "critical""#)
            .unwrap();
        assert_eq!(sandbox.eval_condition(&negated, &no_label), Ok(true));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn a_condition_sees_the_alert_and_gives_a_boolean() {
        let sb = Sandbox::default();
        let c = sb
            .compile_condition(r#"alert.labels.severity == "critical" && params.replicas > 2"#)
            .unwrap();
        let ctx = json!({"alert": {"labels": {"severity": "critical"}}, "params": {"replicas": 3}});
        assert!(sb.eval_condition(&c, &ctx).unwrap());
    }

    #[test]
    fn a_condition_that_is_not_boolean_is_an_error() {
        let sb = Sandbox::default();
        let c = sb.compile_condition("1 + 1").unwrap();
        let e = sb.eval_condition(&c, &json!({})).unwrap_err();
        assert!(e.message.contains("true or false"), "{e}");
    }

    #[test]
    fn an_endless_loop_stops_at_the_operation_limit() {
        let sb = Sandbox::new(Limits {
            max_operations: 10_000,
            ..Limits::default()
        });
        let s = sb.compile_script("loop { }").unwrap();
        let e = sb.eval(&s, &json!({})).unwrap_err();
        assert!(e.message.contains("10000 operations"), "{e}");
    }

    #[test]
    fn an_endless_loop_stops_at_the_wall_clock_limit() {
        let sb = Sandbox::new(Limits {
            max_operations: 0, // unlimited: only the clock stops it
            wall_clock: Duration::from_millis(100),
            ..Limits::default()
        });
        let s = sb.compile_script("let x = 0; loop { x += 1; }").unwrap();
        let e = sb.eval(&s, &json!({})).unwrap_err();
        assert!(e.message.contains("wall-clock limit"), "{e}");
    }

    #[test]
    fn unbounded_allocation_is_stopped() {
        let sb = Sandbox::default();
        let s = sb.compile_script(r#"let s = "x"; loop { s += s; }"#).unwrap();
        let e = sb.eval(&s, &json!({})).unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn context_values_are_read_only() {
        let sb = Sandbox::default();
        let s = sb.compile_script(r#"alert.labels.severity = "none"; 1"#).unwrap();
        let ctx = json!({"alert": {"labels": {"severity": "critical"}}});
        assert!(sb.eval(&s, &ctx).is_err());
    }

    #[test]
    fn eval_and_modules_are_not_available() {
        let sb = Sandbox::default();
        assert!(sb.compile_script(r#"eval("1")"#).is_err());
        assert!(sb.compile_script(r#"import "std" as s;"#).is_err());
    }

    #[test]
    fn throw_fails_with_the_message_and_prints_are_kept() {
        let sb = Sandbox::default();
        let s = sb
            .compile_script("print(\"checking\");\nthrow \"replicas too low\";")
            .unwrap();
        let e = sb.eval(&s, &json!({})).unwrap_err();
        assert!(e.message.contains("replicas too low"), "{e}");
        assert_eq!(e.line, 2);
        let s = sb.compile_script(r#"print("hi"); #{ok: true}"#).unwrap();
        let out = sb.eval(&s, &json!({})).unwrap();
        assert_eq!(out.value, json!({"ok": true}));
        assert_eq!(out.log, vec!["hi".to_string()]);
    }

    #[test]
    fn compile_errors_carry_line_and_column() {
        let sb = Sandbox::default();
        let e = sb.compile_script("let x = 1;\nlet = 2;").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.col > 0);
    }
}
