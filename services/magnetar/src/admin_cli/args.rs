//! The command line: global flags, the command groups, and the parsers of
//! argument values (names, sizes, durations, message ids).

use super::*;

pub(super) const OUTPUT_HELP: &str = "\
Output: tables or one-line confirmations; with --json, the server's JSON as it
was sent, and {} for operations that return nothing.
Exit codes: 0 success, 1 refused by the server (its reason on stderr) or
another error, 2 bad arguments, 3 the server could not be reached.
Topics may be given as persistent://tenant/ns/name, tenant/ns/name, or name
(= persistent://public/default/name).";

#[derive(Args)]
#[command(after_help = OUTPUT_HELP)]
pub struct AdminCli {
    /// A broker's HTTP address (any broker of the cluster: calls for a topic
    /// are redirected to its owner).
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = parse_base_url
    )]
    pub(super) url: String,
    /// Token for brokers with authentication on (sent as a bearer token).
    #[arg(long, global = true, env = "MAGNETAR_TOKEN", hide_env_values = true)]
    pub(super) token: Option<String>,
    /// CA certificates (PEM) an https:// broker's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, global = true, env = "MAGNETAR_TLS_TRUST_CERTS")]
    pub(super) tls_trust_certs: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for https:// (mutual TLS; with TLS
    /// authentication its subject CN is the role when no token is given).
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub(super) tls_cert_file: Option<std::path::PathBuf>,
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub(super) tls_key_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// Seconds to wait for each request (connect, redirects and answer).
    #[arg(long, global = true, default_value = "30", value_parser = parse_timeout)]
    pub(super) timeout: Duration,
    #[command(subcommand)]
    pub(super) group: Group,
}

#[derive(Subcommand)]
pub(super) enum Group {
    /// Clusters known to the brokers.
    #[command(subcommand)]
    Clusters(ClustersCmd),
    /// Tenants: list, get, create, update, delete.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Namespaces and their policies.
    #[command(subcommand)]
    Namespaces(NamespacesCmd),
    /// Persistent topics, their subscriptions and permissions.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Topics' schemas: get, upload, delete, compatibility.
    #[command(subcommand)]
    Schemas(schemas::SchemasCmd),
    /// Live brokers, the leader, what a broker owns.
    #[command(subcommand)]
    Brokers(BrokersCmd),
    /// Waits for the cluster, then creates the tenants and namespaces given
    /// that do not exist yet (the Helm chart's initialisation Job).
    Init(init::InitArgs),
}

/// `--enable` or `--disable`, exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(super) struct Toggle {
    #[arg(long, short = 'e')]
    pub(super) enable: bool,
    #[arg(long, short = 'd')]
    pub(super) disable: bool,
}

/// The URL without a trailing slash (http:// or https://).
pub(super) fn parse_base_url(s: &str) -> Result<String, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{s:?} is not an http:// or https:// URL")),
    }
    if uri.authority().is_none() {
        return Err(format!("{s:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?} must not have a query"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        // Duration::from_secs_f64 panics on NaN, negatives and overflow.
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

pub(super) fn parse_tenant(s: &str) -> Result<String, String> {
    check_segment("tenant", s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

pub(super) fn parse_namespace(s: &str) -> Result<NamespaceName, String> {
    NamespaceName::parse(s).map_err(|e| e.to_string())
}

pub(super) fn parse_topic(s: &str) -> Result<TopicName, String> {
    TopicName::parse(s).map_err(|e| e.to_string())
}

/// A subscription position, as pulsar-admin spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MessageId {
    Earliest,
    Latest,
    At {
        ledger: i64,
        entry: i64,
        partition: Option<i32>,
    },
}

impl MessageId {
    /// Pulsar's `MessageIdImpl` JSON.
    pub(super) fn to_json(self) -> Value {
        match self {
            // Pulsar's MessageId.earliest.
            MessageId::Earliest => json!({"ledgerId": -1, "entryId": -1}),
            MessageId::Latest => json!({"ledgerId": i64::MAX, "entryId": i64::MAX}),
            MessageId::At {
                ledger,
                entry,
                partition,
            } => {
                let mut v = json!({"ledgerId": ledger, "entryId": entry});
                if let Some(p) = partition {
                    v["partitionIndex"] = json!(p);
                }
                v
            }
        }
    }
}

pub(super) fn parse_message_id(s: &str) -> Result<MessageId, String> {
    let bad = || format!("{s:?} is not earliest, latest, or LEDGER:ENTRY[:PARTITION]");
    match s {
        "earliest" => return Ok(MessageId::Earliest),
        "latest" => return Ok(MessageId::Latest),
        _ => {}
    }
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| p.parse::<i64>().ok().filter(|n| *n >= 0);
    match parts.as_slice() {
        [l, e] | [l, e, _] => {
            let partition = match parts.get(2) {
                Some(p) => Some(p.parse::<i32>().map_err(|_| bad())?),
                None => None,
            };
            Ok(MessageId::At {
                ledger: num(l).ok_or_else(bad)?,
                entry: num(e).ok_or_else(bad)?,
                partition,
            })
        }
        _ => Err(bad()),
    }
}

/// `123` or `123x`: the number and the unit (possibly empty).
pub(super) fn number_and_unit(s: &str) -> Result<(u64, String), String> {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(at);
    let n = digits
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a number"))?;
    Ok((n, unit.to_ascii_lowercase()))
}

/// `s` as a number with one of `units` (lowercase; `""` = no unit),
/// scaled by the unit's factor. `-1` stays -1 when `minus_one` ("forever",
/// "no limit").
pub(super) fn with_units(s: &str, units: &[(&str, u64)], minus_one: bool) -> Result<i64, String> {
    if minus_one && s.trim() == "-1" {
        return Ok(-1);
    }
    let (n, unit) = number_and_unit(s)?;
    let Some((_, scale)) = units.iter().find(|(u, _)| *u == unit) else {
        let names: Vec<&str> = units
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| !u.is_empty())
            .collect();
        return Err(format!("{s:?}: units are {}", names.join(", ")));
    };
    n.checked_mul(*scale)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Retention time in minutes; -1 = forever.
pub(super) fn parse_minutes(s: &str) -> Result<i64, String> {
    let units = [
        ("", 1),
        ("m", 1),
        ("h", 60),
        ("d", 1440),
        ("w", 7 * 1440),
        ("y", 365 * 1440),
    ];
    with_units(s, &units, true)
}

/// Retention size in megabytes; -1 = no limit.
pub(super) fn parse_megabytes(s: &str) -> Result<i64, String> {
    with_units(s, &[("", 1), ("m", 1), ("g", 1024), ("t", 1 << 20)], true)
}

/// Bytes, with an optional binary unit; -1 stays -1 ("never" / "unset").
pub(super) fn parse_bytes(s: &str) -> Result<i64, String> {
    let units = [
        ("", 1),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("t", 1 << 40),
    ];
    with_units(s, &units, true)
}

pub(super) fn parse_seconds(s: &str) -> Result<u64, String> {
    let units = [
        ("", 1),
        ("s", 1),
        ("m", 60),
        ("h", 3600),
        ("d", 86_400),
        ("w", 7 * 86_400),
    ];
    Ok(with_units(s, &units, false)? as u64)
}

pub(super) fn parse_seconds_i64(s: &str) -> Result<i64, String> {
    i64::try_from(parse_seconds(s)?).map_err(|_| format!("{s:?} is too large"))
}
