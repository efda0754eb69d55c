//! An error with its causes in one line: drivers and clients (the
//! PostgreSQL pool, kube's HTTP stack) stop their own text at "error
//! performing TLS handshake" or "client error (Connect)"; the causes say
//! why.

/// `e`, then each cause not already in the text, joined by ": ".
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}
