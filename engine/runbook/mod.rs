//! Runbooks: named, typed parameters and an ordered list of steps, each an
//! action with `with:` arguments. `load` reads one from YAML and reports
//! every problem at its `file:line:col`.

mod args;
pub mod load;
pub mod params;

use std::path::PathBuf;
use std::time::Duration;

pub use load::load;

use crate::script::Script;
use crate::yaml::Pos;

/// A runbook as loaded from `runbooks/NAME.yaml`.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    /// A successful (non-dry) run of it fixes what its incident is about,
    /// so the incident becomes `mitigated`; notify-only runbooks say false.
    pub mitigates: bool,
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
    pub path: PathBuf,
}

impl Runbook {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    List,
}

impl ParamType {
    pub const NAMES: &'static [&'static str] = &["string", "int", "float", "bool", "list"];

    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "float" => ParamType::Float,
            "bool" => ParamType::Bool,
            "list" => ParamType::List,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::List => "list",
        }
    }

    /// Whether a JSON value has this type.
    pub fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Int => v.is_i64(),
            ParamType::Float => v.is_number(),
            ParamType::Bool => v.is_boolean(),
            ParamType::List => v.is_array(),
        }
    }
}

/// One declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    /// When not empty, the only values the parameter may take.
    pub allowed: Vec<serde_json::Value>,
    pub description: String,
}

/// How often a failing step is tried and how long to wait in between.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    /// Total attempts, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; it doubles each time (with jitter).
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 1,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What a failed step does to its run.
#[derive(Debug, Clone)]
pub enum OnFailure {
    /// Stop the run; it ends failed.
    Abort,
    /// Go on with the next step; the run can still succeed.
    Continue,
    /// Run these steps, then stop the run as failed.
    Steps(Vec<Step>),
}

/// A `when:` condition with its source, for the timeline.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub script: Script,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: crate::actions::Action,
    /// The `with:` arguments as written; strings are rendered as templates
    /// when the step runs.
    pub with: serde_json::Map<String, serde_json::Value>,
    pub when: Option<Condition>,
    pub timeout: Option<Duration>,
    pub retries: Retries,
    pub on_failure: OnFailure,
    pub idempotent: bool,
    /// Its output goes on the incident's timeline and into the postmortem
    /// (`evidence: true`): what an assessment saw is part of the record.
    pub evidence: bool,
    /// The compiled script of a `script` step.
    pub script: Option<Script>,
    pub pos: Pos,
}
