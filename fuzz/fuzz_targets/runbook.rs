//! The runbook and playbook loaders take any text without panicking, and
//! report problems with positions inside the text.
#![no_main]
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sandbox = laojun::script::Sandbox::default();
    let tools = laojun::runbook::load::Tools { sandbox: &sandbox, templates: None };
    let mut found = Vec::new();
    let _ = laojun::runbook::load(Path::new("runbooks/fuzz.yaml"), text, &tools, &mut found);
    let _ = laojun::playbook::load(Path::new("playbooks/fuzz.yaml"), text, &mut found);
    let lines = text.lines().count().max(1) + 1;
    for d in &found {
        assert!(d.pos.line <= lines || d.path.ends_with(".rhai"), "{d} is past the end of the text");
    }
});
