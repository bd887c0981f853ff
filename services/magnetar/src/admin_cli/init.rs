//! `magnetar admin init`: brings a cluster to a declared set of tenants and
//! namespaces, creating what is missing and leaving what exists as it is.
//!
//! The Helm chart's post-install Job runs it. It is a command, not a shell
//! script, because the images carry no shell. The steps:
//! 1. wait (up to `--wait-seconds`) until a broker serves the cluster's record:
//!    unreachable, 404 (not created yet) and 503 (no metadata session yet) are
//!    retried; anything else (401/403 with a wrong token) fails at once;
//! 2. create each tenant, then its namespaces; 409 means "exists already";
//! 3. check that `public/default`, which the brokers bootstrap, is readable.
//!
//! Every line it prints starts with `magnetar-init:`; a failure names the step.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use hyper::{Method, StatusCode};
use magnetar_common::names::{check_segment, NamespaceName};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{enc, Failure, Http};

#[derive(Args)]
pub(super) struct InitArgs {
    /// The cluster the tenants are allowed in; its record must be served
    /// before anything is created.
    #[arg(long)]
    cluster: String,
    /// The tenants and namespaces, as JSON: `[{"name": "acme", "adminRoles":
    /// ["acme-admin"], "namespaces": [{"name": "orders", "bundles": 4}]}]`.
    #[arg(long, default_value = "[]", value_parser = parse_tenants)]
    tenants_json: Tenants,
    /// Seconds to wait for a broker to serve the cluster's record.
    #[arg(long, default_value = "600")]
    wait_seconds: u64,
    /// Seconds between two tries while waiting.
    #[arg(long, default_value = "5")]
    retry_seconds: u64,
    /// Sign a token for --superuser with this HS256 secret key file.
    #[arg(long, requires = "superuser", conflicts_with = "token_file")]
    secret_key_file: Option<PathBuf>,
    /// The role the signed token is for.
    #[arg(long)]
    superuser: Option<String>,
    /// Read the token from this file (e.g. a mounted secret).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Tenants(Vec<Tenant>);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Tenant {
    name: String,
    #[serde(default)]
    admin_roles: Vec<String>,
    #[serde(default)]
    namespaces: Vec<Namespace>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Namespace {
    name: String,
    bundles: Option<u32>,
}

/// Parses and checks every name up front: a bad spec changes nothing.
fn parse_tenants(s: &str) -> Result<Tenants, String> {
    let tenants: Tenants =
        serde_json::from_str(s).map_err(|e| format!("--tenants-json is not valid: {e}"))?;
    for t in &tenants.0 {
        check_segment("tenant", &t.name).map_err(|e| format!("tenant {:?}: {e}", t.name))?;
        for ns in &t.namespaces {
            NamespaceName::new(&t.name, &ns.name)
                .map_err(|e| format!("namespace {}/{}: {e}", t.name, ns.name))?;
            if ns.bundles.is_some_and(|b| !(1..=4096).contains(&b)) {
                return Err(format!(
                    "namespace {}/{}: bundles must be 1..=4096",
                    t.name, ns.name
                ));
            }
        }
    }
    Ok(tenants)
}

fn say(line: &str) {
    println!("magnetar-init: {line}");
}

/// The token to send: signed here, read from a file, or none (then the
/// global `--token` / `MAGNETAR_TOKEN` applies).
pub(super) fn token(args: &InitArgs) -> Result<Option<String>, Failure> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Failure::Other(format!("reading {}: {e}", p.display())))
    };
    if let (Some(key), Some(role)) = (&args.secret_key_file, &args.superuser) {
        let signer = magnetar_auth::Signer::Secret(magnetar_auth::read_secret_key(&read(key)?));
        let token = signer.token(role, None).map_err(|e| {
            Failure::Other(format!(
                "cannot sign a token for {role} with {}: {e}",
                key.display()
            ))
        })?;
        return Ok(Some(token));
    }
    if let Some(file) = &args.token_file {
        let text = String::from_utf8(read(file)?)
            .map_err(|_| Failure::Other(format!("{} is not text", file.display())))?;
        return Ok(Some(text.trim().to_string()));
    }
    Ok(None)
}

pub(super) async fn run(http: &Http, args: &InitArgs) -> Result<String, Failure> {
    wait_for_cluster(http, args).await?;
    for t in &args.tenants_json.0 {
        let body = json!({"adminRoles": t.admin_roles, "allowedClusters": [args.cluster]});
        let path = format!("/admin/v2/tenants/{}", enc(&t.name));
        create(http, &format!("tenant {}", t.name), &path, Some(body)).await?;
        for ns in &t.namespaces {
            let path = format!("/admin/v2/namespaces/{}/{}", enc(&t.name), enc(&ns.name));
            let body = ns.bundles.map(|n| json!({"bundles": {"numBundles": n}}));
            create(
                http,
                &format!("namespace {}/{}", t.name, ns.name),
                &path,
                body,
            )
            .await?;
        }
    }
    http.get_json("/admin/v2/namespaces/public/default")
        .await
        .map_err(|f| Failure::Other(format!("namespace public/default is not readable: {f}")))?;
    Ok("magnetar-init: done\n".into())
}

async fn wait_for_cluster(http: &Http, args: &InitArgs) -> Result<(), Failure> {
    let path = format!("/admin/v2/clusters/{}", enc(&args.cluster));
    let deadline = Instant::now() + Duration::from_secs(args.wait_seconds);
    loop {
        let last = match http.send(&Method::GET, &path, None).await {
            Ok(r) if r.status.is_success() => {
                say(&format!("cluster {} is served", args.cluster));
                return Ok(());
            }
            Ok(r)
                if matches!(
                    r.status,
                    StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
                ) =>
            {
                r.refused()
            }
            Ok(r) => {
                return Err(Failure::Other(format!(
                    "asking for cluster {}: {}",
                    args.cluster,
                    r.refused()
                )))
            }
            Err(f @ Failure::Unreachable(_)) => f,
            Err(f) => return Err(f),
        };
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "no broker served cluster {} within {} s; last answer: {last}",
                args.cluster, args.wait_seconds
            )));
        }
        tokio::time::sleep(Duration::from_secs(args.retry_seconds)).await;
    }
}

/// PUT `path`; a 409 means it exists, which is left as it is.
async fn create(http: &Http, what: &str, path: &str, body: Option<Value>) -> Result<(), Failure> {
    let reply = http.send(&Method::PUT, path, body.as_ref()).await?;
    if reply.status.is_success() {
        say(&format!("created {what}"));
    } else if reply.status == StatusCode::CONFLICT {
        say(&format!("{what} exists; left as it is"));
    } else {
        return Err(Failure::Other(format!(
            "creating {what}: {}",
            reply.refused()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_specs_are_checked_before_anything_is_sent() {
        let ok = parse_tenants(
            r#"[{"name":"acme","adminRoles":["a"],"namespaces":[{"name":"orders","bundles":4}]}]"#,
        )
        .unwrap();
        assert_eq!(ok.0[0].namespaces[0].bundles, Some(4));
        assert!(parse_tenants("[]").unwrap().0.is_empty());
        for bad in [
            "{",
            r#"[{"nam":"acme"}]"#,
            r#"[{"name":"a/b"}]"#,
            r#"[{"name":"acme","namespaces":[{"name":"x","bundles":0}]}]"#,
            r#"[{"name":"acme","namespaces":[{"name":"x y"}]}]"#,
        ] {
            assert!(parse_tenants(bad).is_err(), "{bad} accepted");
        }
    }
}
