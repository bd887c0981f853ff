//! PROTOBUF_NATIVE schemas: a JSON document carrying a serialized
//! `FileDescriptorSet` (base64) and the root message's name, as Pulsar's
//! clients write it. Compatibility is judged on the descriptors: the root
//! message keeps its name; a field number present on both sides keeps its
//! type (message and enum types by name) and whether it is repeated; a
//! reader's required field must exist in the writer.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde::Deserialize;

use crate::{SchemaError, SchemaType};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    file_descriptor_set: String,
    root_message_type_name: String,
    #[serde(default)]
    #[allow(dead_code)]
    root_file_descriptor_name: Option<String>,
}

/// The messages of a descriptor set by full name (no leading dot).
pub(crate) struct Descriptors {
    root: String,
    messages: HashMap<String, DescriptorProto>,
}

fn invalid(reason: impl std::fmt::Display) -> SchemaError {
    SchemaError::invalid(SchemaType::ProtobufNative, reason)
}

fn add_messages(
    prefix: &str,
    list: &[DescriptorProto],
    out: &mut HashMap<String, DescriptorProto>,
) {
    for m in list {
        let name = m.name.as_deref().unwrap_or_default();
        let full = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        add_messages(&full, &m.nested_type, out);
        out.insert(full, m.clone());
    }
}

pub(crate) fn parse(data: &[u8]) -> Result<Descriptors, SchemaError> {
    let env: Envelope = serde_json::from_slice(data).map_err(|e| {
        invalid(format!(
            "expected {{\"fileDescriptorSet\", \"rootMessageTypeName\"}}: {e}"
        ))
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(env.file_descriptor_set.trim())
        .map_err(|e| invalid(format!("fileDescriptorSet is not base64: {e}")))?;
    let set = FileDescriptorSet::decode(raw.as_slice())
        .map_err(|e| invalid(format!("fileDescriptorSet does not decode: {e}")))?;
    let mut messages = HashMap::new();
    for f in &set.file {
        add_messages(
            f.package.as_deref().unwrap_or_default(),
            &f.message_type,
            &mut messages,
        );
    }
    let root = env
        .root_message_type_name
        .trim_start_matches('.')
        .to_string();
    if !messages.contains_key(&root) {
        return Err(invalid(format!(
            "root message {root} is not in the descriptor set"
        )));
    }
    Ok(Descriptors { root, messages })
}

fn strip(name: Option<&str>) -> &str {
    name.unwrap_or_default().trim_start_matches('.')
}

/// Whether data written with `writer` reads with `reader`.
pub(crate) fn can_read(writer: &Descriptors, reader: &Descriptors) -> Result<(), String> {
    if writer.root != reader.root {
        return Err(format!(
            "the root message changed from {} to {}",
            writer.root, reader.root
        ));
    }
    let mut seen = HashSet::new();
    check_message(writer, reader, &writer.root, &reader.root, &mut seen)
}

fn check_message(
    w: &Descriptors,
    r: &Descriptors,
    w_name: &str,
    r_name: &str,
    seen: &mut HashSet<(String, String)>,
) -> Result<(), String> {
    if !seen.insert((w_name.to_string(), r_name.to_string())) {
        return Ok(());
    }
    let (Some(wm), Some(rm)) = (w.messages.get(w_name), r.messages.get(r_name)) else {
        return Err(format!("message {r_name} is not defined on both sides"));
    };
    for rf in &rm.field {
        let field = rf.name.as_deref().unwrap_or_default();
        let Some(wf) = wm.field.iter().find(|f| f.number == rf.number) else {
            if rf.label == Some(Label::Required as i32) {
                return Err(format!(
                    "{r_name}.{field} is required but the writer has no field {}",
                    rf.number.unwrap_or_default()
                ));
            }
            continue;
        };
        if wf.r#type != rf.r#type {
            return Err(format!(
                "{r_name}.{field} (number {}) changed type",
                rf.number.unwrap_or_default()
            ));
        }
        let repeated = |l: Option<i32>| l == Some(Label::Repeated as i32);
        if repeated(wf.label) != repeated(rf.label) {
            return Err(format!(
                "{r_name}.{field} changed between repeated and single"
            ));
        }
        let named = [Type::Message as i32, Type::Enum as i32, Type::Group as i32];
        if rf.r#type.is_some_and(|t| named.contains(&t)) {
            let (wt, rt) = (
                strip(wf.type_name.as_deref()),
                strip(rf.type_name.as_deref()),
            );
            if rf.r#type == Some(Type::Enum as i32) {
                if wt != rt {
                    return Err(format!("{r_name}.{field} changed enum type {wt} to {rt}"));
                }
            } else {
                check_message(w, r, wt, rt, seen)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost_types::{FieldDescriptorProto, FileDescriptorProto};

    pub(crate) fn field(name: &str, number: i32, ty: Type, label: Label) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(ty as i32),
            label: Some(label as i32),
            ..Default::default()
        }
    }

    /// A PROTOBUF_NATIVE definition with one message `demo.Order`.
    pub(crate) fn definition(fields: Vec<FieldDescriptorProto>) -> Vec<u8> {
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("order.proto".into()),
                package: Some("demo".into()),
                message_type: vec![DescriptorProto {
                    name: Some("Order".into()),
                    field: fields,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        serde_json::json!({
            "fileDescriptorSet": base64::engine::general_purpose::STANDARD.encode(set.encode_to_vec()),
            "rootMessageTypeName": "demo.Order",
            "rootFileDescriptorName": "order.proto",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn descriptor_rules() {
        let v1 = parse(&definition(vec![field(
            "id",
            1,
            Type::Int64,
            Label::Optional,
        )]))
        .expect("v1");
        let added = parse(&definition(vec![
            field("id", 1, Type::Int64, Label::Optional),
            field("note", 2, Type::String, Label::Optional),
        ]))
        .expect("v2");
        assert!(can_read(&v1, &added).is_ok());
        assert!(can_read(&added, &v1).is_ok());
        let retyped = parse(&definition(vec![field(
            "id",
            1,
            Type::String,
            Label::Optional,
        )]))
        .expect("v3");
        assert!(can_read(&v1, &retyped).is_err());
        let repeated = parse(&definition(vec![field(
            "id",
            1,
            Type::Int64,
            Label::Repeated,
        )]))
        .expect("v4");
        assert!(can_read(&v1, &repeated).is_err());
        let required = parse(&definition(vec![
            field("id", 1, Type::Int64, Label::Optional),
            field("must", 3, Type::Int32, Label::Required),
        ]))
        .expect("v5");
        // The new required field cannot be read from old data; the other way is fine.
        assert!(can_read(&v1, &required).is_err());
        assert!(can_read(&required, &v1).is_ok());
    }

    #[test]
    fn bad_definitions_are_invalid() {
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"fileDescriptorSet":"!!","rootMessageTypeName":"a.B"}"#).is_err());
        let mut missing_root: serde_json::Value =
            serde_json::from_slice(&definition(vec![])).expect("json");
        missing_root["rootMessageTypeName"] = "demo.Nope".into();
        assert!(parse(missing_root.to_string().as_bytes()).is_err());
    }
}
