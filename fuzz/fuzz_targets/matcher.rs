//! The AlertManager matcher parser takes any text without panicking, and a
//! matcher that parses can be applied to any labels.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(matchers) = laojun::matcher::parse_matchers(text) {
        let labels = [("alertname".to_string(), text.to_string())].into_iter().collect();
        for m in &matchers {
            let _ = m.matches(&labels);
        }
    }
});
