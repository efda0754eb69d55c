//! `script`: Rhai in the sandbox. Its last value becomes the step's output,
//! `throw "why"` fails the step. The script was compiled when the runbook
//! loaded; the arguments only say where its source came from.

use serde::Deserialize;
use serde_json::json;

use super::spec::{opt, ActionSpec, ArgKind};
use super::{Act, ActionError, Context, Outcome};

pub struct RunScript;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    #[allow(dead_code)] // compiled at load time; kept so the arguments are checked
    source: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    file: Option<String>,
}

impl Act for RunScript {
    const SPEC: ActionSpec = ActionSpec {
        name: "script",
        summary: "Run Rhai in the sandbox; its value becomes the output, `throw \"why\"` fails the step.",
        args: &[
            opt("source", ArgKind::Str, None, "inline Rhai"),
            opt("file", ArgKind::Str, None, "a `.rhai` file beside the runbook"),
        ],
        exactly_one_of: &[&["source", "file"]],
        idempotent: false,
        output: "the script's value; `log` holds what it printed",
        kube: &[],
    };
    type Args = Args;

    async fn run(_args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let script = cx
            .script
            .cloned()
            .ok_or_else(|| ActionError::fatal("the script did not compile"))?;
        let sandbox = cx.sandbox.clone();
        let values = cx.values.clone();
        let out = tokio::task::spawn_blocking(move || sandbox.eval(&script, &values))
            .await
            .map_err(|e| ActionError::fatal(format!("the script panicked: {e}")))?
            .map_err(|e| ActionError::fatal(e.message))?;
        let mut output = out.value;
        if !out.log.is_empty() {
            if let serde_json::Value::Object(m) = &mut output {
                m.entry("log").or_insert(json!(out.log));
            }
        }
        Ok(Outcome {
            output,
            summary: "script ran".into(),
        })
    }
}
