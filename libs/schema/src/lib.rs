//! Schemas as Pulsar's schema registry knows them: the types, their
//! definitions (validated before anything is stored), and the compatibility
//! rules a namespace's strategy applies when a producer, a consumer or an
//! admin brings a new one.
//!
//! - AVRO, JSON (Avro-based definitions) and PROTOBUF (the Avro definition
//!   Pulsar's Java client generates) follow Avro schema resolution
//!   (`apache-avro`'s `SchemaCompatibility`);
//! - PROTOBUF_NATIVE compares the descriptors (root message, field numbers,
//!   types and labels);
//! - KEY_VALUE checks its key and value schemas each by its own type;
//! - every other type is compatible only with an equal definition.
//!
//! Nothing here does I/O: the broker keeps the versions and asks.

mod compat;
mod keyvalue;
mod payload;
mod protobuf;
mod strategy;

pub use compat::{check_new, check_reader, same, validate};
pub use keyvalue::{from_rest_data, to_rest_data};
pub use payload::encode_json_payload;
pub use strategy::Strategy;

/// Pulsar's schema types, with the binary protocol's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaType {
    None,
    String,
    Json,
    Protobuf,
    Avro,
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Float,
    Double,
    Date,
    Time,
    Timestamp,
    KeyValue,
    Instant,
    LocalDate,
    LocalTime,
    LocalDateTime,
    ProtobufNative,
}

const TYPES: [(SchemaType, i32, &str); 21] = [
    (SchemaType::None, 0, "NONE"),
    (SchemaType::String, 1, "STRING"),
    (SchemaType::Json, 2, "JSON"),
    (SchemaType::Protobuf, 3, "PROTOBUF"),
    (SchemaType::Avro, 4, "AVRO"),
    (SchemaType::Boolean, 5, "BOOLEAN"),
    (SchemaType::Int8, 6, "INT8"),
    (SchemaType::Int16, 7, "INT16"),
    (SchemaType::Int32, 8, "INT32"),
    (SchemaType::Int64, 9, "INT64"),
    (SchemaType::Float, 10, "FLOAT"),
    (SchemaType::Double, 11, "DOUBLE"),
    (SchemaType::Date, 12, "DATE"),
    (SchemaType::Time, 13, "TIME"),
    (SchemaType::Timestamp, 14, "TIMESTAMP"),
    (SchemaType::KeyValue, 15, "KEY_VALUE"),
    (SchemaType::Instant, 16, "INSTANT"),
    (SchemaType::LocalDate, 17, "LOCAL_DATE"),
    (SchemaType::LocalTime, 18, "LOCAL_TIME"),
    (SchemaType::LocalDateTime, 19, "LOCAL_DATE_TIME"),
    (SchemaType::ProtobufNative, 20, "PROTOBUF_NATIVE"),
];

impl SchemaType {
    /// From the binary protocol's `Schema.Type` number.
    pub fn from_code(code: i32) -> Result<SchemaType, SchemaError> {
        TYPES
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(t, _, _)| *t)
            .ok_or_else(|| SchemaError::UnknownType(code.to_string()))
    }

    pub fn code(self) -> i32 {
        TYPES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or(0, |(_, c, _)| *c)
    }

    /// Pulsar's name (`AVRO`, `KEY_VALUE`, ...).
    pub fn name(self) -> &'static str {
        TYPES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or("NONE", |(_, _, n)| n)
    }

    /// From Pulsar's name, as the admin REST carries it (case-insensitive;
    /// `BYTES` is stored as NONE, as Pulsar does).
    pub fn parse(name: &str) -> Result<SchemaType, SchemaError> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "BYTES" {
            return Ok(SchemaType::None);
        }
        TYPES
            .iter()
            .find(|(_, _, n)| *n == upper)
            .map(|(t, _, _)| *t)
            .ok_or_else(|| SchemaError::UnknownType(name.to_string()))
    }

    /// Types whose definition is empty (the type says it all).
    pub fn is_primitive(self) -> bool {
        !matches!(
            self,
            SchemaType::Json
                | SchemaType::Protobuf
                | SchemaType::Avro
                | SchemaType::KeyValue
                | SchemaType::ProtobufNative
        )
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One schema: its type, definition and properties (KEY_VALUE keeps its
/// parts' types there).
#[derive(Clone, Copy, Debug)]
pub struct SchemaRef<'a> {
    pub kind: SchemaType,
    pub data: &'a [u8],
    pub properties: &'a [(String, String)],
}

impl<'a> SchemaRef<'a> {
    pub fn new(kind: SchemaType, data: &'a [u8], properties: &'a [(String, String)]) -> Self {
        SchemaRef {
            kind,
            data,
            properties,
        }
    }

    fn property(&self, key: &str) -> Option<&'a str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("unknown schema type {0:?}")]
    UnknownType(String),
    #[error("unknown schema compatibility strategy {0:?}")]
    UnknownStrategy(String),
    #[error("invalid {kind} schema definition: {reason}")]
    Invalid { kind: SchemaType, reason: String },
    #[error("incompatible schema: {0}")]
    Incompatible(String),
    #[error("the message does not match the topic's schema: {0}")]
    Payload(String),
}

impl SchemaError {
    fn invalid(kind: SchemaType, reason: impl std::fmt::Display) -> SchemaError {
        SchemaError::Invalid {
            kind,
            reason: reason.to_string(),
        }
    }
}
