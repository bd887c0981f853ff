//! `magnetar`: the all-in-one binary. `standalone` runs the services in one
//! process for a laptop; the other subcommands are clients.

mod admin_cli;
mod client_cli;
mod ledger_cli;
mod meta_cli;
mod perf;
mod standalone;
mod tokens_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "magnetar",
    version,
    about = "Magnetar: a Pulsar-compatible messaging system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process with one data directory.
    Standalone(Box<standalone::StandaloneArgs>),
    /// Administer clusters, tenants, namespaces, topics and brokers over the
    /// admin REST API (like pulsar-admin).
    Admin(admin_cli::AdminCli),
    /// Talk to the metadata service (like etcdctl).
    Meta(meta_cli::MetaCli),
    /// Ledger tools: simpletest, read, recover, delete, list.
    Ledger(ledger_cli::LedgerCli),
    /// The ledger service's bookies.
    Bookies(ledger_cli::BookiesCli),
    /// Send messages to a topic (any Pulsar-protocol broker).
    Produce(client_cli::ProduceArgs),
    /// Receive (and acknowledge) messages from a subscription.
    Consume(client_cli::ConsumeArgs),
    /// Load generator: `perf produce` / `perf consume`, like pulsar-perf.
    #[command(subcommand)]
    Perf(perf::PerfCli),
    /// Keys and tokens for token authentication.
    #[command(subcommand)]
    Tokens(tokens_cli::TokensCli),
}

fn main() -> ExitCode {
    if let Err(e) = magnetar_common::config::load_config_file(standalone::ENV_PREFIX) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let cli = Cli::parse();
    // Metadata and bookie RPC over TLS when MAGNETAR_INTERNAL_TLS_* say so.
    if let Err(e) = magnetar_tls::internal::init_from_env() {
        eprintln!("error: internal TLS: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Standalone(args) => match runtime.block_on(standalone::run(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Admin(cmd) => runtime.block_on(admin_cli::run(cmd)),
        Command::Meta(cmd) => runtime.block_on(meta_cli::run(cmd)),
        Command::Ledger(cmd) => runtime.block_on(ledger_cli::run_ledger(cmd)),
        Command::Bookies(cmd) => runtime.block_on(ledger_cli::run_bookies(cmd)),
        Command::Produce(args) => runtime.block_on(client_cli::produce(args)),
        Command::Consume(args) => runtime.block_on(client_cli::consume(args)),
        Command::Perf(cmd) => runtime.block_on(perf::run(cmd)),
        Command::Tokens(cmd) => tokens_cli::run(cmd),
    }
}
