//! Validation and compatibility of schema definitions.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema as Avro;

use crate::strategy::Direction;
use crate::{keyvalue, protobuf, SchemaError, SchemaRef, SchemaType, Strategy};

fn avro(kind: SchemaType, data: &[u8]) -> Result<Avro, SchemaError> {
    let text = std::str::from_utf8(data).map_err(|e| SchemaError::invalid(kind, e))?;
    Avro::parse_str(text).map_err(|e| SchemaError::invalid(kind, e))
}

/// Refuses a definition its type's clients could not use (nothing is
/// stored for a schema that fails this).
pub fn validate(s: &SchemaRef<'_>) -> Result<(), SchemaError> {
    match s.kind {
        SchemaType::Avro | SchemaType::Protobuf => avro(s.kind, s.data).map(drop),
        SchemaType::Json => {
            // Avro-based (what Pulsar's clients generate) or a JSON Schema
            // document: either way a JSON object.
            let v: serde_json::Value = serde_json::from_slice(s.data)
                .map_err(|e| SchemaError::invalid(s.kind, format!("not JSON: {e}")))?;
            if !v.is_object() {
                return Err(SchemaError::invalid(s.kind, "not a JSON object"));
            }
            if looks_like_avro(&v) {
                avro(s.kind, s.data)?;
            }
            Ok(())
        }
        SchemaType::ProtobufNative => protobuf::parse(s.data).map(drop),
        SchemaType::KeyValue => {
            let (k, v) = keyvalue::parts(s)?;
            validate(&k.as_ref())?;
            validate(&v.as_ref())
        }
        // The type says it all; clients send "" or (Python's) "null".
        _ => Ok(()),
    }
}

/// The parsed Avro definition of an AVRO or PROTOBUF schema, or of a JSON
/// schema that is an Avro record (`None` for a JSON Schema document).
pub(crate) fn avro_definition(kind: SchemaType, data: &[u8]) -> Result<Option<Avro>, SchemaError> {
    if kind == SchemaType::Json {
        let v: serde_json::Value = serde_json::from_slice(data)
            .map_err(|e| SchemaError::invalid(kind, format!("not JSON: {e}")))?;
        if !looks_like_avro(&v) {
            return Ok(None);
        }
    }
    avro(kind, data).map(Some)
}

/// An Avro record definition (as opposed to a JSON Schema document).
fn looks_like_avro(v: &serde_json::Value) -> bool {
    v.get("type").and_then(|t| t.as_str()) == Some("record") && v.get("fields").is_some()
}

fn json_eq(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The same schema: same type, same definition (JSON definitions compared
/// as JSON), and for KEY_VALUE the same part types and encoding.
pub fn same(a: &SchemaRef<'_>, b: &SchemaRef<'_>) -> bool {
    if a.kind != b.kind {
        return false;
    }
    if a.kind.is_primitive() {
        return true;
    }
    let data_eq = a.data == b.data
        || (matches!(
            a.kind,
            SchemaType::Avro | SchemaType::Json | SchemaType::Protobuf
        ) && json_eq(a.data, b.data));
    if !data_eq {
        return false;
    }
    if a.kind == SchemaType::KeyValue {
        let keys = ["key.schema.type", "value.schema.type"];
        return keys.iter().all(|k| a.property(k) == b.property(k))
            && keyvalue::encoding(a) == keyvalue::encoding(b);
    }
    true
}

/// Whether data written with `writer` can be read with `reader`.
fn can_read(writer: &SchemaRef<'_>, reader: &SchemaRef<'_>) -> Result<(), String> {
    if writer.kind != reader.kind {
        return Err(format!(
            "the schema type changed from {} to {}",
            writer.kind, reader.kind
        ));
    }
    if same(writer, reader) {
        return Ok(());
    }
    let avro_rule = |w: &SchemaRef<'_>, r: &SchemaRef<'_>| -> Result<(), String> {
        let w = avro(w.kind, w.data).map_err(|e| e.to_string())?;
        let r = avro(r.kind, r.data).map_err(|e| e.to_string())?;
        SchemaCompatibility::can_read(&w, &r).map_err(|e| e.to_string())
    };
    match writer.kind {
        SchemaType::Avro | SchemaType::Protobuf => avro_rule(writer, reader),
        SchemaType::Json => {
            let parsed = |s: &SchemaRef<'_>| {
                serde_json::from_slice::<serde_json::Value>(s.data)
                    .is_ok_and(|v| looks_like_avro(&v))
            };
            if parsed(writer) && parsed(reader) {
                avro_rule(writer, reader)
            } else {
                Err("JSON schema definitions that are not Avro must be equal".into())
            }
        }
        SchemaType::ProtobufNative => {
            let w = protobuf::parse(writer.data).map_err(|e| e.to_string())?;
            let r = protobuf::parse(reader.data).map_err(|e| e.to_string())?;
            protobuf::can_read(&w, &r)
        }
        SchemaType::KeyValue => {
            let (we, re) = (keyvalue::encoding(writer), keyvalue::encoding(reader));
            if we != re {
                return Err(format!("the key/value encoding changed from {we} to {re}"));
            }
            let (wk, wv) = keyvalue::parts(writer).map_err(|e| e.to_string())?;
            let (rk, rv) = keyvalue::parts(reader).map_err(|e| e.to_string())?;
            can_read(&wk.as_ref(), &rk.as_ref()).map_err(|e| format!("key: {e}"))?;
            can_read(&wv.as_ref(), &rv.as_ref()).map_err(|e| format!("value: {e}"))
        }
        kind => Err(format!("{kind} schemas differ")),
    }
}

fn check_pair(
    stored: &SchemaRef<'_>,
    new: &SchemaRef<'_>,
    direction: &Direction,
) -> Result<(), String> {
    match direction {
        Direction::Backward => can_read(stored, new),
        Direction::Forward => can_read(new, stored),
        Direction::Both => can_read(stored, new).and_then(|()| can_read(new, stored)),
    }
}

fn refused(strategy: Strategy, version: u64, why: String) -> SchemaError {
    SchemaError::Incompatible(format!(
        "{why} (strategy {strategy}, against version {version})"
    ))
}

/// Whether `new` may become the next version after `existing` (the live
/// versions, oldest first, with their numbers) under `strategy`.
pub fn check_new(
    existing: &[(u64, SchemaRef<'_>)],
    new: &SchemaRef<'_>,
    strategy: Strategy,
) -> Result<(), SchemaError> {
    let strategy = strategy.effective();
    let Some(latest) = existing.last() else {
        return Ok(());
    };
    match strategy {
        Strategy::AlwaysCompatible => return Ok(()),
        Strategy::AlwaysIncompatible => {
            return Err(SchemaError::Incompatible(format!(
                "the strategy is {strategy}: no new schema is accepted"
            )))
        }
        _ => {}
    }
    let targets = if strategy.transitive() {
        existing
    } else {
        std::slice::from_ref(latest)
    };
    let direction = strategy.direction();
    for (version, stored) in targets.iter().rev() {
        check_pair(stored, new, &direction).map_err(|why| refused(strategy, *version, why))?;
    }
    Ok(())
}

/// Whether a consumer with schema `reader` may read the topic: it must read
/// what the latest version wrote (all versions under a transitive
/// strategy), as Pulsar checks consumers.
pub fn check_reader(
    existing: &[(u64, SchemaRef<'_>)],
    reader: &SchemaRef<'_>,
    strategy: Strategy,
) -> Result<(), SchemaError> {
    let strategy = strategy.effective();
    let Some(latest) = existing.last() else {
        return Ok(());
    };
    if strategy == Strategy::AlwaysCompatible || existing.iter().any(|(_, s)| same(s, reader)) {
        return Ok(());
    }
    let (targets, direction) = match strategy {
        Strategy::AlwaysIncompatible => {
            return Err(SchemaError::Incompatible(format!(
                "the strategy is {strategy} and the consumer's schema is not a stored version"
            )))
        }
        Strategy::BackwardTransitive => (existing, Direction::Backward),
        Strategy::FullTransitive => (existing, Direction::Both),
        _ => (std::slice::from_ref(latest), Direction::Backward),
    };
    for (version, stored) in targets.iter().rev() {
        check_pair(stored, reader, &direction).map_err(|why| refused(strategy, *version, why))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::tests::{definition, field};
    use prost_types::field_descriptor_proto::{Label, Type};

    const V1: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"}]}"#;
    /// V1 plus a field with a default.
    const V2_DEFAULT: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"},
        {"name":"qty","type":"int","default":1}]}"#;
    /// V1 plus a field without a default.
    const V2_REQUIRED: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"},
        {"name":"qty","type":"int"}]}"#;
    /// V1 without `item`.
    const V2_DROPPED: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"}]}"#;
    /// `id` became a string.
    const V2_RETYPED: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"string"},{"name":"item","type":"string"}]}"#;

    fn s(kind: SchemaType, def: &str) -> SchemaRef<'_> {
        SchemaRef::new(kind, def.as_bytes(), &[])
    }

    fn new_ok(history: &[&str], new: &str, strategy: Strategy) -> bool {
        let existing: Vec<(u64, SchemaRef<'_>)> = history
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u64, s(SchemaType::Avro, d)))
            .collect();
        check_new(&existing, &s(SchemaType::Avro, new), strategy).is_ok()
    }

    #[test]
    fn avro_rules_per_strategy() {
        use Strategy::*;
        // (strategy, new schema after V1, accepted?)
        let table = [
            (Backward, V2_DEFAULT, true),
            (Backward, V2_REQUIRED, false),
            (Backward, V2_DROPPED, true),
            (Forward, V2_DEFAULT, true),
            (Forward, V2_REQUIRED, true),
            (Forward, V2_DROPPED, false),
            (Full, V2_DEFAULT, true),
            (Full, V2_REQUIRED, false),
            (Full, V2_DROPPED, false),
            (Undefined, V2_DEFAULT, true),
            (Undefined, V2_REQUIRED, false),
            (Full, V2_RETYPED, false),
            (AlwaysCompatible, V2_RETYPED, true),
            (AlwaysIncompatible, V2_DEFAULT, false),
        ];
        for (strategy, new, ok) in table {
            assert_eq!(new_ok(&[V1], new, strategy), ok, "{strategy} {new}");
        }
        // The same definition again is always "compatible" with itself.
        assert!(new_ok(&[V1], V1, Full));
        // The first schema needs no check, whatever the strategy.
        assert!(new_ok(&[], V1, AlwaysIncompatible));
    }

    #[test]
    fn transitive_strategies_check_every_version() {
        use Strategy::*;
        // V1 → V2_DEFAULT → V2_REQUIRED: the last one reads V2_DEFAULT's
        // data (qty is there) but not V1's.
        let history = [V1, V2_DEFAULT];
        assert!(new_ok(&history, V2_REQUIRED, Backward));
        assert!(!new_ok(&history, V2_REQUIRED, BackwardTransitive));
        // Forward: V1 cannot read data without `item`; V2_DEFAULT can't either.
        assert!(!new_ok(&history, V2_DROPPED, ForwardTransitive));
        let history = [V2_DROPPED, V1];
        // V2_DEFAULT reads V1 (latest) data but V2_DROPPED's data lacks item.
        assert!(new_ok(&history, V2_DEFAULT, Full));
        assert!(!new_ok(&history, V2_DEFAULT, FullTransitive));
    }

    #[test]
    fn type_changes_are_refused_unless_always_compatible() {
        let existing = [(0, s(SchemaType::Avro, V1))];
        let json = s(SchemaType::Json, V1);
        let err = check_new(&existing, &json, Strategy::Full);
        assert!(matches!(err, Err(SchemaError::Incompatible(m)) if m.contains("type changed")));
        assert!(check_new(&existing, &json, Strategy::AlwaysCompatible).is_ok());
    }

    #[test]
    fn json_with_avro_definitions_follows_avro_rules() {
        let existing = [(0, s(SchemaType::Json, V1))];
        assert!(check_new(&existing, &s(SchemaType::Json, V2_DEFAULT), Strategy::Full).is_ok());
        assert!(check_new(&existing, &s(SchemaType::Json, V2_REQUIRED), Strategy::Full).is_err());
        // JSON Schema documents: only an equal one (as JSON) is compatible.
        let a = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}"#;
        let a_spaced =
            r#"{ "type" : "object", "$schema":"http://json-schema.org/draft-07/schema#" }"#;
        let b = r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#;
        let existing = [(0, s(SchemaType::Json, a))];
        assert!(check_new(&existing, &s(SchemaType::Json, a_spaced), Strategy::Full).is_ok());
        assert!(check_new(&existing, &s(SchemaType::Json, b), Strategy::Full).is_err());
    }

    #[test]
    fn validation() {
        assert!(validate(&s(SchemaType::Avro, V1)).is_ok());
        for bad in [
            "{not json",
            r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nosuchtype"}]}"#,
            r#"{"type":"record","fields":[]}"#,
            r#"{"type":"record","name":"X","fields":[{"name":"a","type":"int","default":"x"}]}"#,
        ] {
            assert!(
                matches!(
                    validate(&s(SchemaType::Avro, bad)),
                    Err(SchemaError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(validate(&s(SchemaType::Json, "[1]")).is_err());
        assert!(validate(&s(SchemaType::Json, "{oops")).is_err());
        assert!(validate(&s(SchemaType::Json, r#"{"type":"object"}"#)).is_ok());
        assert!(validate(&s(SchemaType::String, "")).is_ok());
        // Primitive definitions carry nothing: "" and "null" are one schema.
        assert!(same(
            &s(SchemaType::String, ""),
            &s(SchemaType::String, "null")
        ));
        assert!(!same(&s(SchemaType::String, ""), &s(SchemaType::Int32, "")));
        assert!(validate(&SchemaRef::new(SchemaType::Avro, &[0xff, 0xfe], &[])).is_err());
    }

    fn kv_props(key: &str, value: &str) -> Vec<(String, String)> {
        vec![
            ("key.schema.type".into(), key.into()),
            ("value.schema.type".into(), value.into()),
            ("kv.encoding.type".into(), "SEPARATED".into()),
        ]
    }

    #[test]
    fn key_value_checks_each_part() {
        let props = kv_props("STRING", "AVRO");
        let v1 = keyvalue::join(b"", V1.as_bytes());
        let v2 = keyvalue::join(b"", V2_DEFAULT.as_bytes());
        let v3 = keyvalue::join(b"", V2_REQUIRED.as_bytes());
        let r1 = SchemaRef::new(SchemaType::KeyValue, &v1, &props);
        let r2 = SchemaRef::new(SchemaType::KeyValue, &v2, &props);
        let r3 = SchemaRef::new(SchemaType::KeyValue, &v3, &props);
        assert!(validate(&r1).is_ok());
        let existing = [(0, r1)];
        assert!(check_new(&existing, &r2, Strategy::Full).is_ok());
        assert!(check_new(&existing, &r3, Strategy::Full).is_err());
        // The key's type changing is a different schema.
        let other = kv_props("INT32", "AVRO");
        let r4 = SchemaRef::new(SchemaType::KeyValue, &v1, &other);
        assert!(!same(&r1, &r4));
        assert!(check_new(&existing, &r4, Strategy::Full).is_err());
        // A part that is not valid makes the whole invalid.
        let bad = keyvalue::join(b"", b"{nope");
        assert!(validate(&SchemaRef::new(SchemaType::KeyValue, &bad, &props)).is_err());
    }

    #[test]
    fn protobuf_native_by_descriptor() {
        let v1 = definition(vec![field("id", 1, Type::Int64, Label::Optional)]);
        let v2 = definition(vec![
            field("id", 1, Type::Int64, Label::Optional),
            field("note", 2, Type::String, Label::Optional),
        ]);
        let v3 = definition(vec![field("id", 1, Type::Double, Label::Optional)]);
        let r = |d| SchemaRef::new(SchemaType::ProtobufNative, d, &[]);
        assert!(validate(&r(&v1)).is_ok());
        let existing = [(0, r(&v1))];
        assert!(check_new(&existing, &r(&v2), Strategy::Full).is_ok());
        assert!(check_new(&existing, &r(&v3), Strategy::Full).is_err());
    }

    #[test]
    fn consumers_read_the_latest_or_every_version() {
        let existing = [
            (0, s(SchemaType::Avro, V1)),
            (1, s(SchemaType::Avro, V2_DEFAULT)),
        ];
        // An old version is fine; a reader needing a field the data lacks is not.
        assert!(check_reader(&existing, &s(SchemaType::Avro, V1), Strategy::Full).is_ok());
        assert!(check_reader(&existing, &s(SchemaType::Avro, V2_DROPPED), Strategy::Full).is_ok());
        assert!(check_reader(&existing, &s(SchemaType::Avro, V2_RETYPED), Strategy::Full).is_err());
        // V2_REQUIRED reads the latest (qty is there), not V1.
        let v2r = s(SchemaType::Avro, V2_REQUIRED);
        assert!(check_reader(&existing, &v2r, Strategy::Backward).is_ok());
        assert!(check_reader(&existing, &v2r, Strategy::BackwardTransitive).is_err());
        assert!(check_reader(&existing, &v2r, Strategy::AlwaysIncompatible).is_err());
        assert!(check_reader(&existing, &s(SchemaType::Json, V1), Strategy::Full).is_err());
        assert!(check_reader(&[], &v2r, Strategy::AlwaysIncompatible).is_ok());
    }
}
