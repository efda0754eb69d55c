//! A runbook's parameters as a run gets them: checked against the
//! declarations, typed ("3" → 3 for an `int`), defaults filled in.

use serde_json::{json, Map, Value};

use super::{ParamType, Runbook};

/// Checks parameters against the runbook's declarations and fills defaults.
pub fn check(runbook: &Runbook, given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if runbook.param(name).is_none() {
            let known: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            problems.push(format!(
                "runbook `{}` has no parameter `{name}` (its parameters: {})",
                runbook.name,
                known.join(", ")
            ));
        }
    }
    let mut out = Map::new();
    for p in &runbook.params {
        let value = match given.get(&p.name) {
            Some(Value::String(s)) if p.kind != super::ParamType::String => match parse_typed(p.kind, s) {
                Some(v) => v,
                None => {
                    problems.push(format!("parameter `{}` must be a {}, got {s:?}", p.name, p.kind.name()));
                    continue;
                }
            },
            Some(v) => v.clone(),
            None => match &p.default {
                Some(d) => d.clone(),
                None if p.required => {
                    problems.push(format!("parameter `{}` is required", p.name));
                    continue;
                }
                None => continue,
            },
        };
        if !p.kind.accepts(&value) {
            problems.push(format!(
                "parameter `{}` must be a {}, got {value}",
                p.name,
                p.kind.name()
            ));
        } else if !p.allowed.is_empty() && !p.allowed.contains(&value) {
            let allowed: Vec<String> = p.allowed.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "parameter `{}` must be one of {}, got {value}",
                p.name,
                allowed.join(", ")
            ));
        } else {
            out.insert(p.name.clone(), value);
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

fn parse_typed(kind: super::ParamType, s: &str) -> Option<Value> {
    match kind {
        ParamType::Int => s.trim().parse::<i64>().ok().map(|i| json!(i)),
        ParamType::Float => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| json!(f)),
        ParamType::Bool => s.trim().parse::<bool>().ok().map(|b| json!(b)),
        ParamType::List => Some(
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_array)
                .unwrap_or_else(|| {
                    json!(s
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>())
                }),
        ),
        ParamType::String => Some(json!(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(src: &str) -> Runbook {
        let sandbox = crate::script::Sandbox::default();
        let tools = super::super::load::Tools {
            sandbox: &sandbox,
            templates: None,
        };
        let mut found = Vec::new();
        let rb = super::super::load(std::path::Path::new("runbooks/rb.yaml"), src, &tools, &mut found);
        assert!(found.is_empty(), "{found:?}");
        rb.expect("the runbook loads")
    }

    #[test]
    fn text_from_the_command_line_becomes_the_declared_type_and_defaults_fill_in() {
        let rb = runbook(
            "name: rb\nparams:\n  n: {type: int, default: 2}\n  on: {type: bool}\n  names: {type: list}\n  ratio: {type: float}\nsteps:\n  - id: w\n    action: wait\n    with: {secs: 1}\n",
        );
        let given: Map<String, Value> = [
            ("on".to_string(), json!("true")),
            ("names".to_string(), json!("a, b")),
            ("ratio".to_string(), json!("0.5")),
        ]
        .into_iter()
        .collect();
        let out = check(&rb, &given).unwrap();
        assert_eq!(out["n"], json!(2));
        assert_eq!(out["on"], json!(true));
        assert_eq!(out["names"], json!(["a", "b"]));
        assert_eq!(out["ratio"], json!(0.5));
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let rb = runbook(
            "name: rb\nparams:\n  ns: {type: string, required: true}\n  n: {type: int, allowed: [1, 2]}\nsteps:\n  - id: w\n    action: wait\n    with: {secs: 1}\n",
        );
        let given: Map<String, Value> = [("n".to_string(), json!("3")), ("x".to_string(), json!("1"))]
            .into_iter()
            .collect();
        let e = check(&rb, &given).unwrap_err();
        assert!(e.contains("no parameter `x`"), "{e}");
        assert!(e.contains("`ns` is required"), "{e}");
        assert!(e.contains("`n` must be one of 1, 2, got 3"), "{e}");
    }
}
