//! A hostile label value renders as itself (never as template syntax), and
//! in a postmortem it cannot open a link, an image or HTML.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let hb = laojun::template::registry();
    let context = serde_json::json!({"alert": {"labels": {"x": value}}});
    let out = hb.render_template("{{alert.labels.x}}", &context).expect("a fixed template renders");
    assert_eq!(out, value, "a label value was interpreted");
    // Every bracket, angle bracket and backtick left must be escaped.
    let escaped = laojun::template::escape_markdown(value);
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' | ']' | '<' | '>' | '`' | '\n' => panic!("unescaped {c:?} in {escaped:?}"),
            _ => {}
        }
    }
});
