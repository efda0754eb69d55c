//! `laojun test`'s output: a table for people (failures with their
//! timeline), JSON for scripts, JUnit XML for CI systems.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::Outcome;

/// The table: one line per case, each failure under its case with the
/// timeline of what happened, and a total.
pub fn table(outcomes: &[Outcome], took: Duration) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    for o in outcomes {
        let verdict = if o.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{verdict}  {:<width$}  {}:{}  {}",
            o.name,
            o.file.display(),
            o.pos,
            seconds(o.took)
        );
        if !o.passed() {
            for f in &o.failures {
                let _ = writeln!(out, "      {f}");
            }
            if !o.timeline.is_empty() {
                let _ = writeln!(out, "      what happened:");
                for line in &o.timeline {
                    let _ = writeln!(out, "        {line}");
                }
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        out,
        "{} cases: {} passed, {failed} failed in {}",
        outcomes.len(),
        outcomes.len() - failed,
        seconds(took)
    );
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub fn json(outcomes: &[Outcome], took: Duration) -> serde_json::Value {
    let cases: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "file": o.file.display().to_string(),
                "line": o.pos.line,
                "passed": o.passed(),
                "seconds": o.took.as_secs_f64(),
                "failures": o.failures.iter().map(|f| json!({
                    "at": format!("{}:{}", f.file.display(), f.pos),
                    "expected": f.expected,
                    "got": f.got,
                })).collect::<Vec<_>>(),
                "timeline": if o.passed() { Vec::new() } else { o.timeline.clone() },
            })
        })
        .collect();
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    json!({
        "cases": cases,
        "passed": outcomes.len() - failed,
        "failed": failed,
        "seconds": took.as_secs_f64(),
    })
}

/// JUnit XML: one `testsuite` per test file, one `testcase` per case.
pub fn junit(outcomes: &[Outcome], took: Duration) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"laojun test\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">",
        outcomes.len(),
        took.as_secs_f64()
    );
    let mut files: Vec<&std::path::Path> = outcomes.iter().map(|o| o.file.as_path()).collect();
    files.dedup();
    for file in files {
        let in_file: Vec<&Outcome> = outcomes.iter().filter(|o| o.file == file).collect();
        let file_failed = in_file.iter().filter(|o| !o.passed()).count();
        let time: f64 = in_file.iter().map(|o| o.took.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{file_failed}\" time=\"{time:.3}\">",
            xml(&file.display().to_string()),
            in_file.len()
        );
        for o in in_file {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
                xml(&o.name),
                xml(&file.display().to_string()),
                xml(&file.display().to_string()),
                o.pos.line,
                o.took.as_secs_f64()
            );
            if o.passed() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for f in &o.failures {
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"expectation\">{}</failure>",
                    xml(&format!("expected {}", f.expected)),
                    xml(&f.to_string())
                );
            }
            if !o.timeline.is_empty() {
                let _ = writeln!(out, "      <system-out>{}</system-out>", xml(&o.timeline.join("\n")));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text for an XML attribute or element: the five specials escaped, and
/// characters XML 1.0 cannot carry dropped.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_cannot_open_a_tag_or_end_an_attribute() {
        assert_eq!(xml("a<b>&\"c\"\u{1}"), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
