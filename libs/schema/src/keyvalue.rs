//! KEY_VALUE schemas: the key's and the value's definitions in one blob
//! (`[len][key][len][value]`, lengths big-endian i32, -1 = empty), their
//! types and properties in the schema's properties (`key.schema.type`,
//! `value.schema.properties`, `kv.encoding.type`), as Pulsar's clients
//! write them. The admin REST shows the blob as `{"key": …, "value": …}`.

use crate::{SchemaError, SchemaRef, SchemaType};

/// The key or the value schema of a KEY_VALUE schema.
pub(crate) struct Part {
    pub kind: SchemaType,
    pub data: Vec<u8>,
    pub properties: Vec<(String, String)>,
}

impl Part {
    pub fn as_ref(&self) -> SchemaRef<'_> {
        SchemaRef::new(self.kind, &self.data, &self.properties)
    }
}

fn invalid(reason: impl std::fmt::Display) -> SchemaError {
    SchemaError::invalid(SchemaType::KeyValue, reason)
}

/// Splits the blob into its two definitions.
fn split(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SchemaError> {
    let mut rest = data;
    let mut take = || -> Result<Vec<u8>, SchemaError> {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("truncated length"))?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            rest = tail;
            return Ok(Vec::new());
        }
        let len = len as usize;
        if tail.len() < len {
            return Err(invalid(format!(
                "a part of {len} bytes is longer than what is left ({})",
                tail.len()
            )));
        }
        let (part, tail) = tail.split_at(len);
        rest = tail;
        Ok(part.to_vec())
    };
    let key = take()?;
    let value = take()?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "{} bytes after the value schema",
            rest.len()
        )));
    }
    Ok((key, value))
}

pub(crate) fn join(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + value.len());
    out.extend_from_slice(&(key.len() as i32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as i32).to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn part_properties(s: &SchemaRef<'_>, which: &str) -> Result<Vec<(String, String)>, SchemaError> {
    match s.property(&format!("{which}.schema.properties")) {
        None => Ok(Vec::new()),
        Some(raw) if raw.trim().is_empty() => Ok(Vec::new()),
        Some(raw) => {
            let map: std::collections::BTreeMap<String, String> = serde_json::from_str(raw)
                .map_err(|e| invalid(format!("{which}.schema.properties: {e}")))?;
            Ok(map.into_iter().collect())
        }
    }
}

/// The key and value schemas of a KEY_VALUE schema.
pub(crate) fn parts(s: &SchemaRef<'_>) -> Result<(Part, Part), SchemaError> {
    let (key, value) = split(s.data)?;
    let kind = |which: &str| match s.property(&format!("{which}.schema.type")) {
        None => Ok(SchemaType::None),
        Some(name) => SchemaType::parse(name)
            .map_err(|_| invalid(format!("{which}.schema.type {name:?} is not a schema type"))),
    };
    let key = Part {
        kind: kind("key")?,
        data: key,
        properties: part_properties(s, "key")?,
    };
    let value = Part {
        kind: kind("value")?,
        data: value,
        properties: part_properties(s, "value")?,
    };
    if key.kind == SchemaType::KeyValue || value.kind == SchemaType::KeyValue {
        return Err(invalid("a KEY_VALUE part cannot itself be KEY_VALUE"));
    }
    Ok((key, value))
}

/// `INLINE` (the default) or `SEPARATED`.
pub(crate) fn encoding(s: &SchemaRef<'_>) -> String {
    s.property("kv.encoding.type")
        .unwrap_or("INLINE")
        .to_ascii_uppercase()
}

fn to_json(data: &[u8]) -> serde_json::Value {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) if v.is_object() || v.is_array() => v,
        _ => serde_json::Value::String(String::from_utf8_lossy(data).into_owned()),
    }
}

/// The definition as the admin REST shows it: text for most types,
/// `{"key": …, "value": …}` for KEY_VALUE.
pub fn to_rest_data(kind: SchemaType, data: &[u8]) -> String {
    if kind == SchemaType::KeyValue {
        if let Ok((k, v)) = split(data) {
            return serde_json::json!({"key": to_json(&k), "value": to_json(&v)}).to_string();
        }
    }
    String::from_utf8_lossy(data).into_owned()
}

/// The stored definition from the admin REST's text (see [`to_rest_data`]).
pub fn from_rest_data(kind: SchemaType, text: &str) -> Result<Vec<u8>, SchemaError> {
    if kind != SchemaType::KeyValue {
        return Ok(text.as_bytes().to_vec());
    }
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("expected {{\"key\": …, \"value\": …}}: {e}")))?;
    let part = |name: &str| -> Result<Vec<u8>, SchemaError> {
        match v.get(name) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
            Some(other) => Ok(other.to_string().into_bytes()),
        }
    };
    Ok(join(&part("key")?, &part("value")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_truncation_is_refused() {
        let blob = join(b"{\"type\":\"string\"}", b"");
        let (k, v) = split(&blob).expect("split");
        assert_eq!(k, b"{\"type\":\"string\"}");
        assert!(v.is_empty());
        assert!(split(&blob[..blob.len() - 1]).is_err());
        assert!(split(&[0, 0, 0, 9, 1]).is_err());
        // -1 stands for an empty part.
        let mut neg = (-1i32).to_be_bytes().to_vec();
        neg.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(split(&neg).expect("split"), (vec![], vec![]));
    }

    #[test]
    fn rest_form_round_trips() {
        let blob = join(b"{\"type\":\"string\"}", b"plain");
        let text = to_rest_data(SchemaType::KeyValue, &blob);
        let back = from_rest_data(SchemaType::KeyValue, &text).expect("parse");
        let (k, v) = split(&back).expect("split");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&k).ok(),
            Some(serde_json::json!({"type": "string"}))
        );
        assert_eq!(v, b"plain");
        assert!(from_rest_data(SchemaType::KeyValue, "not json").is_err());
    }
}
