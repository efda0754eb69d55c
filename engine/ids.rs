//! Typed ids: `IncidentId` (`INC-42`) and `RunId` (`RUN-7`). They print,
//! parse and serialize as that text, so the API, the CLI, the store and
//! the timeline all spell them one way, and a bad one is an error where it
//! is parsed, never a silent 0.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A text that is not an id of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not {article} {kind} id; {kind} ids look like {example}")]
pub struct BadId {
    pub given: String,
    pub article: &'static str,
    pub kind: &'static str,
    pub example: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $article:literal, $kind:literal, $example:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub const fn new(number: u64) -> Self {
                $name(number)
            }

            /// The number after the prefix.
            pub const fn number(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = BadId;

            /// Only the prefix and 1 to 19 ASCII digits: no signs, spaces or
            /// path tricks.
            fn from_str(text: &str) -> Result<Self, BadId> {
                let bad = || BadId {
                    given: text.chars().take(64).collect(),
                    article: $article,
                    kind: $kind,
                    example: $example,
                };
                let digits = text.strip_prefix($prefix).ok_or_else(bad)?;
                if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                digits.parse().map($name).map_err(|_| bad())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An incident: `INC-42`.
    IncidentId,
    "INC-",
    "an",
    "incident",
    "INC-42"
);
id_type!(
    /// A run: `RUN-7`.
    RunId,
    "RUN-",
    "a",
    "run",
    "RUN-7"
);

/// Serde for an `IncidentId` kept as a bare number, as the store's own
/// index records have always held it.
pub mod as_number {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::IncidentId;

    pub fn serialize<S: Serializer>(id: &IncidentId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(id.number())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IncidentId, D::Error> {
        u64::deserialize(d).map(IncidentId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_anything_else() {
        let id: IncidentId = "INC-42".parse().unwrap();
        assert_eq!(id.number(), 42);
        assert_eq!(id.to_string(), "INC-42");
        assert_eq!("RUN-7".parse::<RunId>().unwrap(), RunId::new(7));
        for bad in [
            "",
            "INC-",
            "../INC-1",
            "INC-x",
            "INC--1",
            "INC-+1",
            "inc-1",
            "INC-1/../2",
            "INC-12345678901234567890",
            "RUN-1",
        ] {
            assert!(bad.parse::<IncidentId>().is_err(), "{bad}");
        }
        let e = "RUN-x".parse::<RunId>().unwrap_err().to_string();
        assert_eq!(e, "\"RUN-x\" is not a run id; run ids look like RUN-7");
    }

    #[test]
    fn ids_serialize_as_their_text() {
        assert_eq!(serde_json::to_string(&RunId::new(3)).unwrap(), "\"RUN-3\"");
        let back: IncidentId = serde_json::from_str("\"INC-9\"").unwrap();
        assert_eq!(back, IncidentId::new(9));
        assert!(serde_json::from_str::<IncidentId>("\"INC-9x\"").is_err());
    }
}
