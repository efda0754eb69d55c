//! The runbook and playbook loaders take any text without panicking, and
//! report problems with positions inside the text.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

/// One sandbox for all inputs: building a Rhai engine per input would be
/// most of the work.
static SANDBOX: OnceLock<laojun::script::Sandbox> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sandbox = SANDBOX.get_or_init(laojun::script::Sandbox::default);
    let tools = laojun::runbook::load::Tools { sandbox, templates: None };
    let mut found = Vec::new();
    let _ = laojun::runbook::load(Path::new("runbooks/fuzz.yaml"), text, &tools, &mut found);
    let _ = laojun::playbook::load(Path::new("playbooks/fuzz.yaml"), text, &mut found);
    // Lines as YAML counts them: `\r\n`, `\r` and `\n` each end one.
    let lines = text.replace("\r\n", "\n").chars().filter(|c| *c == '\n' || *c == '\r').count() + 2;
    for d in &found {
        assert!(d.pos.line <= lines || d.path.ends_with(".rhai"), "{d} is past the end of the text");
    }
});
