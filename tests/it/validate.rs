//! `laojun validate` and the other offline commands, run as a user runs
//! them: the real binary, its output and its exit code.

use std::path::Path;
use std::process::{Command, Output};

fn laojun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the laojun binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_shipped_runbooks_playbooks_and_templates_validate_clean() {
    let out = laojun(&["validate", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "ok: 11 runbooks, 8 playbooks, 4 templates, 18 test cases in .\n"
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_fault_in_the_broken_folder_gets_exactly_its_expected_message() {
    let out = laojun(&["validate", "tests/fixtures/broken"]);
    assert_eq!(out.status.code(), Some(1));
    let expected = std::fs::read_to_string("tests/fixtures/broken/expected.txt").unwrap();
    assert_eq!(stdout(&out), expected);
}

#[test]
fn the_broken_folder_has_one_message_per_faulty_file() {
    let out = stdout(&laojun(&["validate", "tests/fixtures/broken"]));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut faulty = Vec::new();
    for dir in ["runbooks", "playbooks", "templates"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.starts_with("ok.") {
                faulty.push(format!("tests/fixtures/broken/{dir}/{name}:"));
            }
        }
    }
    for file in &faulty {
        let hits = out.lines().filter(|l| l.starts_with(file.as_str())).count();
        assert_eq!(hits, 1, "{file} should have exactly one message:\n{out}");
    }
    assert!(!out.contains("/ok."), "the fault-free files got a message:\n{out}");
    assert!(out.ends_with(&format!("{} problems found\n", faulty.len())));
}

#[test]
fn a_folder_without_runbooks_is_bad_usage() {
    let empty = tempfile::tempdir().unwrap();
    let out = laojun(&["validate", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of runbooks/, playbooks/ or templates/"));
    let out = laojun(&["validate", "/no/such/folder"]);
    assert_eq!(out.status.code(), Some(2));
    let out = laojun(&["validate", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_is_printed_for_every_command_with_exit_zero() {
    let out = laojun(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for command in ["validate", "actions"] {
        assert!(text.contains(command), "{command} missing from --help:\n{text}");
        let sub = laojun(&[command, "--help"]);
        assert_eq!(sub.status.code(), Some(0));
        assert!(stdout(&sub).contains("Usage: laojun"), "{}", stdout(&sub));
    }
}

#[test]
fn the_action_reference_in_docs_matches_the_code() {
    let out = laojun(&["actions"]);
    let doc = std::fs::read_to_string("docs/ACTIONS.md").unwrap();
    assert_eq!(
        stdout(&out),
        doc,
        "docs/ACTIONS.md is stale: run `cargo run -- actions > docs/ACTIONS.md`"
    );
}
