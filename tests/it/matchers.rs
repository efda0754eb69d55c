//! Matchers mean what AlertManager makes of them: a table of matcher
//! strings goes through Debian's `amtool` (0.25, its `pkg/labels` parser)
//! and through laojun; the verdicts must agree, and for every string both
//! accept, the same label sets must match.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support;

/// Written as playbook authors (and AlertManager configs) write them.
const TABLE: &[&str] = &[
    r#"alertname="ServiceDown""#,
    r#"alertname = "ServiceDown""#,
    "alertname=ServiceDown",
    r#"env!="dev""#,
    r#"severity=~"critical|page""#,
    r#"severity!~"info|none""#,
    r#"pod=~"api-\d+""#,
    r#"env=="prod""#,
    "env==prod",
    "env=prod extra",
    r#"team="""#,
    "team=",
    r#"team!="""#,
    r#"{env="prod"}"#,
    r#"{env="prod""#,
    r#"env="prod"}"#,
    r#"env="prod", team="db""#,
    r#"env="prod","#,
    r#",env="prod""#,
    r#"msg="say \"hi\"""#,
    r#"msg="unclosed"#,
    r#"msg="a"b""#,
    r#"msg="x\""#,
    r#"msg=a"b"#,
    r#"path="C:\dir""#,
    r#"path="C:\\dir""#,
    r#"note="line\nbreak""#,
    r#"a:b="colon""#,
    r#"9lives="x""#,
    r#"-x="y""#,
    r#"="x""#,
    "alertname",
    r#"sev=~"(crit""#,
    r#"sev=~"crit""#,
    r#"sev=~"crit.*""#,
    r#"region=~"ap-(east|southeast)-1""#,
    r#"text="a, b""#,
    r#"x=~"""#,
];

/// Label sets to try each accepted matcher on.
fn label_sets() -> Vec<BTreeMap<String, String>> {
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vec![
        set(&[
            ("alertname", "ServiceDown"),
            ("env", "prod"),
            ("severity", "critical"),
            ("team", "db"),
        ]),
        set(&[
            ("alertname", "HighCPU"),
            ("env", "=prod"),
            ("severity", "info"),
            ("pod", "api-12"),
        ]),
        set(&[
            ("env", "dev"),
            ("sev", "crit"),
            ("region", "ap-east-1"),
            ("msg", "say \"hi\""),
        ]),
        set(&[
            ("env", "prod extra"),
            ("sev", "critical"),
            ("a:b", "colon"),
            ("text", "a, b"),
        ]),
        set(&[("path", "C:\\dir"), ("note", "line\nbreak"), ("team", "")]),
    ]
}

fn config(matcher: &str) -> String {
    // YAML single quotes keep the matcher as written ('' is a quote).
    format!(
        "route:\n  receiver: miss\n  routes:\n    - receiver: hit\n      matchers: ['{}']\nreceivers:\n  - name: miss\n  - name: hit\n",
        matcher.replace('\'', "''")
    )
}

/// `name="value"` as amtool reads a label on its command line.
fn label_arg(name: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("{name}=\"{escaped}\"")
}

#[test]
fn matchers_get_the_same_verdict_and_meaning_as_from_amtool() {
    let Some(amtool) = support::require("amtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    let mut agreed = 0;
    let mut compared = 0;
    for matcher in TABLE {
        std::fs::write(&file, config(matcher)).unwrap();
        let check = Command::new(&amtool).arg("check-config").arg(&file).output().unwrap();
        let amtool_accepts = check.status.success();
        let ours = laojun::matcher::parse_matchers(matcher);
        assert_eq!(
            ours.is_ok(),
            amtool_accepts,
            "{matcher:?}: amtool {} ({}), laojun {:?}",
            if amtool_accepts { "accepts" } else { "rejects" },
            String::from_utf8_lossy(&check.stdout).trim(),
            ours.as_ref()
                .map(|m| m.iter().map(ToString::to_string).collect::<Vec<_>>())
        );
        agreed += 1;
        let Ok(ours) = ours else { continue };
        for labels in label_sets() {
            let mut routes = Command::new(&amtool);
            routes.args(["config", "routes", "test", "--config.file"]).arg(&file);
            routes.args(labels.iter().map(|(k, v)| label_arg(k, v)));
            let out = routes.output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let amtool_matches = String::from_utf8_lossy(&out.stdout).trim() == "hit";
            let laojun_matches = ours.iter().all(|m| m.matches(&labels));
            assert_eq!(laojun_matches, amtool_matches, "{matcher:?} on {labels:?}");
            compared += 1;
        }
    }
    println!("{agreed} matcher strings, all verdicts as amtool's; {compared} label-set matches compared");
    assert_eq!(agreed, TABLE.len());
}
