//! Pulsar's `SchemaCompatibilityStrategy`.

use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// How a new schema must relate to the stored ones. `Undefined` (Pulsar's
/// unset value) means the broker's default, FULL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Strategy {
    #[default]
    Undefined,
    AlwaysIncompatible,
    AlwaysCompatible,
    /// The new schema reads data written with the latest.
    Backward,
    /// The latest schema reads data written with the new one.
    Forward,
    Full,
    BackwardTransitive,
    ForwardTransitive,
    FullTransitive,
}

pub(crate) enum Direction {
    Backward,
    Forward,
    Both,
}

impl Strategy {
    /// Undefined becomes the broker's default (FULL, as Pulsar).
    pub fn effective(self) -> Strategy {
        match self {
            Strategy::Undefined => Strategy::Full,
            s => s,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Undefined => "UNDEFINED",
            Strategy::AlwaysIncompatible => "ALWAYS_INCOMPATIBLE",
            Strategy::AlwaysCompatible => "ALWAYS_COMPATIBLE",
            Strategy::Backward => "BACKWARD",
            Strategy::Forward => "FORWARD",
            Strategy::Full => "FULL",
            Strategy::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Strategy::ForwardTransitive => "FORWARD_TRANSITIVE",
            Strategy::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// From Pulsar's name (case-insensitive).
    pub fn parse(s: &str) -> Result<Strategy, SchemaError> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_ascii_uppercase()))
            .map_err(|_| SchemaError::UnknownStrategy(s.to_string()))
    }

    pub(crate) fn transitive(self) -> bool {
        matches!(
            self,
            Strategy::BackwardTransitive | Strategy::ForwardTransitive | Strategy::FullTransitive
        )
    }

    pub(crate) fn direction(self) -> Direction {
        match self.effective() {
            Strategy::Backward | Strategy::BackwardTransitive => Direction::Backward,
            Strategy::Forward | Strategy::ForwardTransitive => Direction::Forward,
            _ => Direction::Both,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_pulsar_spells_them() {
        for s in [
            Strategy::Undefined,
            Strategy::AlwaysIncompatible,
            Strategy::AlwaysCompatible,
            Strategy::Backward,
            Strategy::Forward,
            Strategy::Full,
            Strategy::BackwardTransitive,
            Strategy::ForwardTransitive,
            Strategy::FullTransitive,
        ] {
            assert_eq!(Strategy::parse(s.name()), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).ok(),
                Some(format!("\"{}\"", s.name()))
            );
        }
        assert_eq!(
            Strategy::parse("backward_transitive"),
            Ok(Strategy::BackwardTransitive)
        );
        assert!(Strategy::parse("SIDEWAYS").is_err());
        assert_eq!(Strategy::Undefined.effective(), Strategy::Full);
    }
}
