//! `magnetar admin ...`: a client for the brokers' admin REST v2, in the
//! spirit of `pulsar-admin` (same group and operation names, same paths and
//! JSON on the wire).
//!
//! The module has four parts: the command line (clap), the mapping of each
//! command to REST calls (`plan`), a small HTTP client (hyper) and the output
//! formatting (tables for people, the server's JSON with `--json`):
//!
//! - `args`: global flags, the command groups, parsers of argument values
//! - `clusters`, `tenants`, `namespaces`, `topics`, `brokers`, `schemas`:
//!   one command group each, its subcommands and their plans
//! - `plan`: `Plan`, `Call`, `Show` and the REST paths
//! - `init`: `admin init` (waits for the cluster, creates what is missing)
//! - `http`: the HTTP client and the failures behind each exit code
//! - `execute`: running a plan, and the commands that take several calls
//! - `render`: tables and documents for people
//!
//! Exit codes: 0 success, 1 the server refused (its reason on stderr) or any
//! other error, 2 bad arguments (clap), 3 the server could not be reached
//! (connection refused, timeout, broken exchange).

mod args;
mod brokers;
mod clusters;
mod execute;
mod http;
mod init;
mod namespaces;
mod plan;
mod render;
mod schemas;
mod tenants;
#[cfg(test)]
mod tests;
mod topics;

use std::fmt::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use clap::{ArgGroup, Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use magnetar_common::names::{check_segment, NamespaceName, TopicName};
use serde_json::{json, Map, Value};

// Each part uses the others' items by name, as when they were one file.
use args::*;
use brokers::*;
use clusters::*;
use execute::*;
use http::*;
use namespaces::*;
use plan::*;
use render::*;
use tenants::*;
use topics::*;

pub use args::AdminCli;

pub async fn run(cli: AdminCli) -> ExitCode {
    let tls = magnetar_tls::ClientTlsConfig {
        trust_file: cli.tls_trust_certs.clone(),
        cert_file: cli.tls_cert_file.clone(),
        key_file: cli.tls_key_file.clone(),
    };
    let result = match cli.group {
        Group::Init(args) => match init::token(&args) {
            Ok(token) => {
                let http = Http::new(cli.url, token.or(cli.token), cli.timeout).with_tls(tls);
                init::run(&http, &args).await
            }
            Err(f) => Err(f),
        },
        group => {
            let http = Http::new(cli.url, cli.token, cli.timeout).with_tls(tls);
            match plan(group) {
                Ok(p) => execute(&http, cli.json, p).await,
                Err(e) => Err(Failure::Other(e)),
            }
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}
