//! Running a plan: the calls it makes, and the commands that take more than
//! one call (tenant create/update, offload, peek).

use super::*;

/// Runs a plan; returns what to print.
pub(super) async fn execute(http: &Http, json: bool, plan: Plan) -> Result<String, Failure> {
    match plan {
        Plan::One(c) => {
            let reply = http.call(&c.method, &c.path, c.body.as_ref()).await?;
            if json {
                return Ok(raw_json(&reply.body));
            }
            Ok(render(&c.show, &reply.json()?))
        }
        Plan::CreateTenant {
            tenant,
            admin_roles,
            mut allowed_clusters,
        } => {
            if allowed_clusters.is_empty() {
                allowed_clusters = string_list(&http.get_json("/admin/v2/clusters").await?);
            }
            let body = json!({"adminRoles": admin_roles, "allowedClusters": allowed_clusters});
            let path = format!("/admin/v2/tenants/{}", enc(&tenant));
            let reply = http.call(&Method::PUT, &path, Some(&body)).await?;
            Ok(confirm(json, &reply, format!("Created tenant {tenant}")))
        }
        Plan::UpdateTenant {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let path = format!("/admin/v2/tenants/{}", enc(&tenant));
            let current = http.get_json(&path).await?;
            let body = json!({
                "adminRoles": admin_roles.unwrap_or_else(|| string_list(&current["adminRoles"])),
                "allowedClusters": allowed_clusters
                    .unwrap_or_else(|| string_list(&current["allowedClusters"])),
            });
            let reply = http.call(&Method::POST, &path, Some(&body)).await?;
            Ok(confirm(json, &reply, format!("Updated tenant {tenant}")))
        }
        Plan::Peek {
            topic,
            subscription,
            count,
        } => peek(http, json, &topic, &subscription, count).await,
        Plan::Offload { topic, threshold } => offload(http, json, &topic, threshold).await,
        Plan::OffloadWait { topic } => offload_wait(http, json, &topic).await,
    }
}

/// The first ledger to keep so that the newest ledgers kept hold at most
/// `threshold` bytes (as pulsar-admin computes it); `None`: nothing to move.
pub(super) fn offload_boundary(stats: &Value, threshold: u64) -> Option<u64> {
    let ledgers = stats["ledgers"].as_array()?;
    let mut kept = 0u64;
    // The newest ledger (the one being written) stays whatever its size.
    let mut keep_from = ledgers.last()?["ledgerId"].as_u64();
    for l in ledgers.iter().rev() {
        kept = kept.saturating_add(l["size"].as_u64().unwrap_or(0));
        if kept > threshold {
            return keep_from;
        }
        keep_from = l["ledgerId"].as_u64();
    }
    None
}

pub(super) async fn offload(
    http: &Http,
    json: bool,
    topic: &TopicName,
    threshold: u64,
) -> Result<String, Failure> {
    let path = topic_path(topic);
    let stats = http.get_json(&format!("{path}/internalStats")).await?;
    let Some(ledger) = offload_boundary(&stats, threshold) else {
        return Ok(format!(
            "Nothing to offload: {topic} holds at most {threshold} bytes\n"
        ));
    };
    let id = json!({"ledgerId": ledger, "entryId": 0, "partitionIndex": -1});
    let reply = http
        .call(&Method::PUT, &format!("{path}/offload"), Some(&id))
        .await?;
    let msg = format!("Offload triggered for {topic} for messages before {ledger}:0:-1");
    Ok(confirm(json, &reply, msg))
}

pub(super) async fn offload_wait(
    http: &Http,
    json: bool,
    topic: &TopicName,
) -> Result<String, Failure> {
    let path = format!("{}/offload", topic_path(topic));
    loop {
        let status = http.get_json(&path).await?;
        match status["status"].as_str() {
            Some("RUNNING") => tokio::time::sleep(Duration::from_millis(500)).await,
            _ if json => return Ok(format!("{status}\n")),
            Some("ERROR") => {
                return Err(Failure::Refused {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: format!("Error in offload: {}", status["lastError"]),
                })
            }
            Some(s) => return Ok(format!("Offload status: {s}\n")),
            None => return Err(Failure::Other(format!("unexpected answer: {status}"))),
        }
    }
}

pub(super) fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The answer to an operation that returns nothing, or little.
pub(super) fn confirm(json: bool, reply: &Reply, msg: String) -> String {
    if json {
        raw_json(&reply.body)
    } else {
        format!("{msg}\n")
    }
}

/// `--json`: the body as the server sent it; `{}` when there is none.
pub(super) fn raw_json(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "{}\n".into()
    } else {
        format!("{text}\n")
    }
}

/// One message read by `peek-messages`.
pub(super) struct Peeked {
    /// `LEDGER:ENTRY`, or `LEDGER:ENTRY:INDEX` for a message of a batch.
    pub(super) message_id: String,
    /// The entry's `X-Pulsar-*` headers, prefix removed (lowercase: HTTP/1
    /// names are case-insensitive and hyper lowercases them).
    pub(super) headers: Vec<(String, String)>,
    pub(super) properties: Vec<(String, String)>,
    pub(super) payload: Bytes,
}

pub(super) const BATCH_HEADER: &str = "x-pulsar-num-batch-message";

/// The messages of one entry. The REST API returns an entry as stored: a
/// batch stays a batch (the header says how many), and, as pulsar-admin
/// does, it is split here into its messages with their own properties.
pub(super) fn peeked_messages(reply: &Reply) -> Vec<Peeked> {
    let mut entry_id = String::new();
    let mut headers = Vec::new();
    let mut properties = Vec::new();
    for (name, value) in &reply.headers {
        let Some(rest) = name.as_str().strip_prefix("x-pulsar-") else {
            continue;
        };
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if rest == "message-id" {
            entry_id = value;
        } else if let Some(key) = rest.strip_prefix("property-") {
            properties.push((key.to_string(), value));
        } else {
            headers.push((rest.to_string(), value));
        }
    }
    let batch_size = reply
        .headers
        .get(BATCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let split = batch_size.and_then(|n| magnetar_wire::batch::split(&reply.body, n).ok());
    let Some(batch) = split else {
        // Not a batch, or one this client cannot read: the entry as it is.
        return vec![Peeked {
            message_id: entry_id,
            headers,
            properties,
            payload: reply.body.clone(),
        }];
    };
    batch
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut headers: Vec<(String, String)> = headers
                .iter()
                .filter(|(k, _)| format!("x-pulsar-{k}") != BATCH_HEADER)
                .cloned()
                .collect();
            let md = &m.metadata;
            if let Some(key) = &md.partition_key {
                headers.retain(|(k, _)| k != "partition-key");
                headers.push(("partition-key".into(), key.clone()));
            }
            if let Some(seq) = md.sequence_id {
                headers.retain(|(k, _)| k != "sequence-id");
                headers.push(("sequence-id".into(), seq.to_string()));
            }
            let mut props = properties.clone();
            props.extend(
                md.properties
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone())),
            );
            Peeked {
                message_id: format!("{entry_id}:{i}"),
                headers,
                properties: props,
                payload: m.payload,
            }
        })
        .collect()
}

impl Peeked {
    pub(super) fn to_json(&self) -> Value {
        let obj = |pairs: &[(String, String)]| {
            Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        json!({
            "messageId": self.message_id,
            "headers": obj(&self.headers),
            "properties": obj(&self.properties),
            "payload": std::str::from_utf8(&self.payload).ok(),
            "payloadBase64": base64::engine::general_purpose::STANDARD.encode(&self.payload),
        })
    }

    pub(super) fn render(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .headers
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        rows.extend(
            self.properties
                .iter()
                .map(|(k, v)| vec![format!("property {k}"), v.clone()]),
        );
        let mut out = format!("Message ID: {}\n", self.message_id);
        out.push_str(&indent(&table(&[], &rows)));
        let _ = writeln!(out, "  payload ({} bytes):", self.payload.len());
        match std::str::from_utf8(&self.payload) {
            Ok(text)
                if !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t') =>
            {
                out.push_str(&indent(&indent(text)));
            }
            _ => out.push_str(&indent(&indent(&hex_dump(&self.payload)))),
        }
        out
    }
}

/// The next `count` messages of a subscription, one entry (position) per
/// call, as pulsar-admin reads them.
pub(super) async fn peek(
    http: &Http,
    json: bool,
    topic: &TopicName,
    subscription: &str,
    count: u32,
) -> Result<String, Failure> {
    let count = count as usize;
    let mut messages = Vec::new();
    let mut position = 1u32;
    while messages.len() < count {
        let sub = format!("{}/subscription/{}", topic_path(topic), enc(subscription));
        let reply = http
            .send(&Method::GET, &format!("{sub}/position/{position}"), None)
            .await?;
        if !reply.status.is_success() {
            if reply.status != StatusCode::NOT_FOUND || reply.is_no_such_endpoint() {
                return Err(reply.refused());
            }
            // 404: past the end of the backlog, or no such topic or
            // subscription; only the latter is an error.
            if position == 1 {
                let subs = http
                    .get_json(&format!("{}/subscriptions", topic_path(topic)))
                    .await?;
                if !string_list(&subs).iter().any(|s| s == subscription) {
                    return Err(reply.refused());
                }
            }
            break;
        }
        let mut entry = peeked_messages(&reply);
        entry.truncate(count - messages.len());
        messages.extend(entry);
        position += 1;
    }
    if json {
        let all: Vec<Value> = messages.iter().map(Peeked::to_json).collect();
        return Ok(format!("{}\n", Value::Array(all)));
    }
    if messages.is_empty() {
        return Ok("(no messages)\n".into());
    }
    Ok(messages
        .iter()
        .map(Peeked::render)
        .collect::<Vec<_>>()
        .join("\n"))
}
