//! Messages given as JSON text (the REST and WebSocket producers) for a
//! topic with a JSON or AVRO schema: checked against the schema's Avro
//! definition and, for AVRO, encoded as the Avro binary the clients read.

use apache_avro::types::Value as AvroValue;

use crate::{compat, SchemaError, SchemaType};

fn bad(reason: impl std::fmt::Display) -> SchemaError {
    SchemaError::Payload(reason.to_string())
}

/// The payload to store for `text` on a topic whose latest schema is
/// `kind`/`definition`: JSON text for JSON (checked against an Avro
/// definition when there is one), Avro binary for AVRO, `text` itself for
/// the other types.
pub fn encode_json_payload(
    kind: SchemaType,
    definition: &[u8],
    text: &str,
) -> Result<Vec<u8>, SchemaError> {
    match kind {
        SchemaType::Json | SchemaType::Avro => {}
        _ => return Ok(text.as_bytes().to_vec()),
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let schema = match compat::avro_definition(kind, definition)? {
        Some(schema) => schema,
        // A JSON Schema document: the payload only has to be JSON.
        None => return Ok(text.as_bytes().to_vec()),
    };
    let value = AvroValue::from(json).resolve(&schema).map_err(bad)?;
    if kind == SchemaType::Json {
        return Ok(text.as_bytes().to_vec());
    }
    apache_avro::to_avro_datum(&schema, value).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":["null","string"]},
        {"name":"qty","type":"int","default":1}]}"#;

    #[test]
    fn avro_payloads_are_encoded_and_checked() {
        let bin = encode_json_payload(
            SchemaType::Avro,
            ORDER.as_bytes(),
            r#"{"id": 3, "item": "x"}"#,
        )
        .expect("encode");
        // id=3 (zigzag 6), union branch 1 then "x", qty default 1 (zigzag 2).
        assert_eq!(bin, vec![6, 2, 2, b'x', 2]);
        for bad in [r#"{"item": "x"}"#, r#"{"id": "three"}"#, "[1]", "{oops"] {
            assert!(
                matches!(
                    encode_json_payload(SchemaType::Avro, ORDER.as_bytes(), bad),
                    Err(SchemaError::Payload(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_payloads_stay_text_once_checked() {
        let text = r#"{"id": 3, "item": null}"#;
        assert_eq!(
            encode_json_payload(SchemaType::Json, ORDER.as_bytes(), text).expect("ok"),
            text.as_bytes()
        );
        assert!(
            encode_json_payload(SchemaType::Json, ORDER.as_bytes(), r#"{"id": true}"#).is_err()
        );
        // Without an Avro definition any JSON goes; other types take the text.
        assert!(encode_json_payload(SchemaType::Json, br#"{"type":"object"}"#, "[1]").is_ok());
        assert!(encode_json_payload(SchemaType::Json, br#"{"type":"object"}"#, "{x").is_err());
        assert_eq!(
            encode_json_payload(SchemaType::String, b"", "plain").expect("ok"),
            b"plain"
        );
    }
}
