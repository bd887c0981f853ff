//! `magnetar tokens`: keys and tokens for token authentication, like
//! `pulsar tokens`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use magnetar_auth::{create_key_pair, create_secret_key, now_secs, secret_key_base64, Signer};

#[derive(Subcommand, Debug)]
pub enum TokensCli {
    /// A new HS256 secret key: raw bytes to --output, else base64 on stdout.
    CreateSecretKey {
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// A new ES256 key pair (PEM): sign with the private key, give brokers
    /// the public one.
    CreateKeyPair {
        #[arg(long)]
        output_private_key: PathBuf,
        #[arg(long)]
        output_public_key: PathBuf,
    },
    /// A token for a role, signed with a secret key or a private key.
    Create {
        /// The role (`sub` claim).
        #[arg(long)]
        subject: String,
        #[arg(
            long,
            conflicts_with = "private_key",
            required_unless_present = "private_key"
        )]
        secret_key: Option<PathBuf>,
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// Lifetime: seconds, or with a unit (30m, 12h, 7d); none = forever.
        #[arg(long)]
        expiry_time: Option<String>,
    },
}

/// `90`, `30s`, `15m`, `12h`, `7d` → seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid expiry time {s:?}"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "y" => 365 * 86_400,
        _ => return Err(format!("invalid expiry unit in {s:?} (s, m, h, d, y)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("expiry time {s:?} is too large"))
}

fn run_inner(cmd: TokensCli) -> Result<(), String> {
    match cmd {
        TokensCli::CreateSecretKey { output } => {
            let key = create_secret_key();
            match output {
                Some(path) => std::fs::write(&path, &key)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?,
                None => println!("{}", secret_key_base64(&key)),
            }
        }
        TokensCli::CreateKeyPair {
            output_private_key,
            output_public_key,
        } => {
            let (private, public) = create_key_pair().map_err(|e| e.to_string())?;
            std::fs::write(&output_private_key, private)
                .map_err(|e| format!("writing {}: {e}", output_private_key.display()))?;
            std::fs::write(&output_public_key, public)
                .map_err(|e| format!("writing {}: {e}", output_public_key.display()))?;
        }
        TokensCli::Create {
            subject,
            secret_key,
            private_key,
            expiry_time,
        } => {
            let read =
                |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
            let signer = match (secret_key, private_key) {
                (Some(s), _) => Signer::Secret(magnetar_auth::read_secret_key(&read(&s)?)),
                (None, Some(p)) => Signer::PrivatePem(read(&p)?),
                (None, None) => return Err("give --secret-key or --private-key".into()),
            };
            let expires_at = expiry_time
                .map(|t| parse_duration(&t).map(|secs| now_secs() + secs))
                .transpose()?;
            println!(
                "{}",
                signer
                    .token(&subject, expires_at)
                    .map_err(|e| e.to_string())?
            );
        }
    }
    Ok(())
}

pub fn run(cmd: TokensCli) -> ExitCode {
    match run_inner(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
