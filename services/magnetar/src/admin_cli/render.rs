//! Output for people: tables, documents and hex dumps (`--json` prints the
//! server's JSON instead).

use super::*;

pub(super) fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A value in one table cell or after a key: nested data shortened.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) if items.iter().all(is_scalar) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        // e.g. a subscription's consumers: how many.
        Value::Array(items) => items.len().to_string(),
        Value::Object(m) if m.is_empty() => "-".into(),
        // e.g. a partition's subscriptions: their names.
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Aligned columns, two spaces apart; no header line when `headers` is
/// empty; no trailing blanks.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; columns];
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let all = std::iter::once(&header_row)
        .filter(|h| !h.is_empty())
        .chain(rows);
    for row in all.clone() {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".into()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

/// Rows of objects under `key_header`; a column per field seen, in the
/// order first seen.
pub(super) fn object_table(key_header: &str, rows: &[(String, &Map<String, Value>)]) -> String {
    let mut fields: Vec<&String> = Vec::new();
    for (_, obj) in rows {
        for k in obj.keys() {
            if !fields.contains(&k) {
                fields.push(k);
            }
        }
    }
    let mut headers = vec![key_header];
    headers.extend(fields.iter().map(|f| f.as_str()));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(key, obj)| {
            std::iter::once(key.clone())
                .chain(
                    fields
                        .iter()
                        .map(|f| obj.get(*f).map(cell).unwrap_or_default()),
                )
                .collect()
        })
        .collect();
    table(&headers, &cells)
}

/// Records keyed by name (subscriptions, partitions, cursors, quotas):
/// objects with plain fields that share one at least, so that columns make
/// sense (unlike maps of maps such as `auth_policies`).
pub(super) fn is_map_of_objects(m: &Map<String, Value>) -> bool {
    let Some(records) = m.values().map(Value::as_object).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let Some(first) = records.first() else {
        return false;
    };
    records.iter().all(|r| r.values().any(is_scalar))
        && first
            .keys()
            .any(|k| records.iter().all(|r| r.contains_key(k)))
}

pub(super) fn is_list_of_objects(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

/// Any document: its plain fields as key/value lines, then each nested
/// part as a titled section (a table when it is a collection of objects).
pub(super) fn render_doc(v: &Value) -> String {
    match v {
        Value::Object(m) => render_object(m),
        Value::Array(items) if is_list_of_objects(items) => {
            let rows: Vec<(String, &Map<String, Value>)> = items
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.as_object().map(|o| (i.to_string(), o)))
                .collect();
            object_table("#", &rows)
        }
        Value::Array(items) => items.iter().map(|x| format!("{}\n", cell(x))).collect(),
        other => format!("{}\n", cell(other)),
    }
}

pub(super) fn render_object(m: &Map<String, Value>) -> String {
    let nested = |v: &Value| match v {
        Value::Object(o) => !o.is_empty(),
        Value::Array(items) => is_list_of_objects(items),
        _ => false,
    };
    let flat: Vec<Vec<String>> = m
        .iter()
        .filter(|(_, v)| !nested(v))
        .map(|(k, v)| vec![k.clone(), cell(v)])
        .collect();
    let mut out = table(&[], &flat);
    for (k, v) in m.iter().filter(|(_, v)| nested(v)) {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{k}:");
        let body = match v {
            Value::Object(o) if is_map_of_objects(o) => {
                let rows: Vec<(String, &Map<String, Value>)> = o
                    .iter()
                    .filter_map(|(name, x)| x.as_object().map(|x| (name.clone(), x)))
                    .collect();
                object_table("name", &rows)
            }
            other => render_doc(other),
        };
        out.push_str(&indent(&body));
    }
    out
}

/// A human rendering of a successful answer.
pub(super) fn render(show: &Show, v: &Value) -> String {
    match (show, v) {
        (Show::Done(msg), Value::Null) => format!("{msg}\n"),
        (Show::Done(msg), other) => format!("{msg}\n{}", render_doc(other)),
        (Show::List(_), Value::Array(items)) if items.is_empty() => "(none)\n".into(),
        (Show::List(header), Value::Array(items)) if items.iter().all(is_scalar) => {
            let rows: Vec<Vec<String>> = items.iter().map(|x| vec![cell(x)]).collect();
            table(&[header], &rows)
        }
        (Show::Map(..), Value::Object(m)) if m.is_empty() => "(none)\n".into(),
        (Show::Map(key, _), Value::Object(m)) if is_map_of_objects(m) => {
            let rows: Vec<(String, &Map<String, Value>)> = m
                .iter()
                .filter_map(|(k, x)| x.as_object().map(|x| (k.clone(), x)))
                .collect();
            object_table(key, &rows)
        }
        (Show::Map(key, value), Value::Object(m)) => {
            let rows: Vec<Vec<String>> = m.iter().map(|(k, x)| vec![k.clone(), cell(x)]).collect();
            table(&[key, value], &rows)
        }
        (Show::Value, Value::Null) => "not set\n".into(),
        (Show::Value, other) if is_scalar(other) => format!("{}\n", cell(other)),
        (Show::Bundles, Value::Object(m)) => match m.get("boundaries").and_then(Value::as_array) {
            Some(bounds) if bounds.len() >= 2 => {
                let rows: Vec<Vec<String>> = bounds
                    .windows(2)
                    .map(|w| vec![format!("{}_{}", cell(&w[0]), cell(&w[1]))])
                    .collect();
                table(&["BUNDLE"], &rows)
            }
            _ => render_doc(v),
        },
        // Anything else, or a shape the broker did not use to send.
        _ => render_doc(v),
    }
}

/// 16 bytes a line: offset, hex, printable ASCII.
pub(super) fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", i * 16);
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        out.extend(std::iter::repeat_n(' ', 3 * (16 - chunk.len())));
        out.push_str("  ");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}
