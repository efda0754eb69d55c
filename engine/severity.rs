//! Incident severity P0 (worst) to P3, and the default mapping from an
//! alert's `severity` label.

use std::fmt;

/// P0 is the most severe; `Ord` sorts P0 first, so the worst of several is
/// their minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

impl Severity {
    pub const NAMES: &'static [&'static str] = &["P0", "P1", "P2", "P3"];

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "P0" | "p0" => Severity::P0,
            "P1" | "p1" => Severity::P1,
            "P2" | "p2" => Severity::P2,
            "P3" | "p3" => Severity::P3,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }

    /// The default mapping from an alert's `severity` label: `critical` → P1,
    /// `warning` → P2, anything else or none → P3. A label that already says
    /// `P0`..`P3` is taken as it is.
    pub fn from_label(label: Option<&str>) -> Self {
        Self::from_label_or(label, Severity::P3)
    }

    /// As `from_label`, with `missing` for an alert that has no `severity`
    /// label (`intake.default_severity`).
    pub fn from_label_or(label: Option<&str>, missing: Severity) -> Self {
        match label.map(str::trim) {
            Some(l) if l.eq_ignore_ascii_case("critical") => Severity::P1,
            Some(l) if l.eq_ignore_ascii_case("warning") => Severity::P2,
            Some(l) => Severity::parse(l).unwrap_or(Severity::P3),
            None => missing,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_severity_label_maps_to_the_documented_classes() {
        assert_eq!(Severity::from_label(Some("critical")), Severity::P1);
        assert_eq!(Severity::from_label(Some("warning")), Severity::P2);
        assert_eq!(Severity::from_label(Some("info")), Severity::P3);
        assert_eq!(Severity::from_label(None), Severity::P3);
        assert_eq!(Severity::from_label(Some("P0")), Severity::P0);
    }

    #[test]
    fn the_worst_severity_is_the_minimum() {
        assert_eq!(
            [Severity::P2, Severity::P0, Severity::P3].into_iter().min(),
            Some(Severity::P0)
        );
    }
}
