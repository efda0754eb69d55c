//! Commands that need no server: `validate`, `schedules`, `actions`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::catalog;
use crate::script::Sandbox;

pub fn validate(dir: &Path, output: super::Output) -> ExitCode {
    if !dir.is_dir() {
        return super::usage(&format!("validate: {} is not a folder", dir.display()));
    }
    let mut loaded = match catalog::load(dir, &Sandbox::default()) {
        Ok(l) => l,
        Err(e @ catalog::RootError::Empty(_)) => return super::usage(&format!("validate: {e}")),
        Err(e) => {
            super::print_error(&format!("validate: {e}"));
            return ExitCode::from(super::exit::FAILED);
        }
    };
    // The test cases of `laojun test`, checked against the catalog.
    let cases = crate::testing::case::load(dir, &loaded.catalog, &mut loaded.problems).len();
    if output == super::Output::Json {
        let c = &loaded.catalog;
        let problems: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::json!({"problems": problems, "runbooks": c.runbooks.len(), "playbooks": c.playbooks.len(), "templates": c.templates.len(), "test_cases": cases})
        );
        return ExitCode::from(if problems.is_empty() {
            super::exit::DONE
        } else {
            super::exit::FAILED
        });
    }
    let mut out = std::io::stdout().lock();
    for p in &loaded.problems {
        let _ = writeln!(out, "{p}");
    }
    let c = &loaded.catalog;
    let mut counts = format!(
        "{} runbooks, {} playbooks, {} templates",
        c.runbooks.len(),
        c.playbooks.len(),
        c.templates.len()
    );
    if cases > 0 {
        counts.push_str(&format!(", {cases} test cases"));
    }
    if loaded.problems.is_empty() {
        let _ = writeln!(out, "ok: {counts} in {}", dir.display());
        ExitCode::SUCCESS
    } else {
        let n = loaded.problems.len();
        let _ = writeln!(out, "{n} problem{} found", if n == 1 { "" } else { "s" });
        ExitCode::from(1)
    }
}

pub fn schedules(dir: &Path, count: usize) -> ExitCode {
    let loaded = match catalog::load(dir, &Sandbox::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("laojun schedules: {e}");
            return ExitCode::from(2);
        }
    };
    for p in &loaded.problems {
        eprintln!("{p}");
    }
    let now = chrono::Utc::now();
    let mut any = false;
    for pb in &loaded.catalog.playbooks {
        if let crate::playbook::Trigger::Schedule(s) = &pb.trigger {
            any = true;
            let next: Vec<String> = crate::scheduler::next_fires(s, now, count)
                .iter()
                .map(|t| t.with_timezone(&s.timezone).format("%Y-%m-%d %H:%M %Z").to_string())
                .collect();
            println!(
                "{}  cron {:?} in {}{}\n  next: {}",
                pb.name,
                s.expression,
                s.timezone.name(),
                if s.catch_up {
                    ", catches up after downtime"
                } else {
                    ", skips missed runs"
                },
                next.join(", ")
            );
        }
    }
    if !any {
        println!("no scheduled playbooks in {}", dir.join("playbooks").display());
    }
    if loaded.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn actions() -> ExitCode {
    print!("{}", crate::actions::spec::reference_markdown());
    ExitCode::SUCCESS
}

pub fn rbac(dir: &Path, namespaces: &[String], service_account_namespace: &str) -> ExitCode {
    let loaded = match catalog::load(dir, &Sandbox::default()) {
        Ok(l) => l,
        Err(e) => return super::usage(&format!("rbac: {e}")),
    };
    if !loaded.problems.is_empty() {
        for p in &loaded.problems {
            eprintln!("{p}");
        }
        super::print_error("rbac: the catalog has problems; fix them first (`laojun validate` lists the same)");
        return ExitCode::from(super::exit::FAILED);
    }
    let plan = crate::rbac::plan(&loaded.catalog, namespaces);
    for w in &plan.warnings {
        eprintln!("laojun rbac: warning: {w}");
    }
    print!("{}", crate::rbac::to_yaml(&plan, "laojun", service_account_namespace));
    ExitCode::SUCCESS
}
