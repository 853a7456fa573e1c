//! `cmm-agent central …`: operations on the central Grafana itself.
//!
//! `central token` issues the token cluster agents register with: it finds or creates the
//! service account (role Admin, see cmm_central::token) and adds a token, which Grafana shows
//! once. The token goes to a new 0600 file (`--token-out`) or, in human output, to stdout
//! alone so `TOKEN_FILE=$(mktemp) …` style scripts can capture it; it is never logged.

use cmm_central::secret::write_secret_file;
use cmm_central::token::issue_token;

use crate::cli::{CentralArgs, CentralCommand, GlobalArgs, Output, TokenArgs};
use crate::exit::{central_class, Classify, ExitCode};
use crate::ops::central::{default_token_name, ADMIN_SECRET};
use crate::output::outln;
use crate::settings::{refuse_existing, GrafanaSettings};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

pub async fn run(global: &GlobalArgs, args: CentralArgs) -> anyhow::Result<()> {
    match args.command {
        CentralCommand::Token(t) => token(global, t).await,
    }
}

async fn token(global: &GlobalArgs, args: TokenArgs) -> anyhow::Result<()> {
    if global.output == Output::Json && args.token_out.is_none() {
        return Err(Usage(
            "--output json prints the token as *** (secrets are never in JSON output): pass \
             --token-out FILE to receive it"
                .into(),
        ))
        .classify(ExitCode::Usage);
    }
    if let Some(out) = &args.token_out {
        refuse_existing(out, "--token-out")?;
    }
    let grafana = GrafanaSettings::resolve(&args.grafana)?;
    let basic = args
        .grafana_user
        .clone()
        .zip(args.grafana_password_file.clone());
    if basic.is_none() && !grafana.token.is_given() {
        return Err(Usage(format!(
            "central token must log in to Grafana first: pass --grafana-user USER and \
             --grafana-password-file FILE of an org admin (on a fresh central Grafana: user admin, \
             its password in Secret {ADMIN_SECRET}, e.g. `kubectl -n monitor get secret \
             {ADMIN_SECRET} -o jsonpath='{{.data.admin-password}}' | base64 -d > FILE`), or an \
             org admin's token with --grafana-token-file / CMM_GRAFANA_TOKEN"
        )))
        .classify(ExitCode::Usage);
    }
    let creds = match basic {
        Some((user, password_file)) => cmm_central::Credentials::Basic {
            user,
            password: cmm_central::secret::read_secret_file(
                &password_file,
                "the Grafana password (--grafana-password-file)",
            )
            .classify(ExitCode::Usage)?,
        },
        None => grafana.token_credentials()?,
    };
    let grafana = grafana.client(creds)?;
    // Grafana takes any positive number; more than ten years is a typo, not a lifetime.
    const MAX_TTL: u64 = 10 * 365 * 86_400;
    if args.token_ttl > MAX_TTL {
        return Err(Usage(format!(
            "--token-ttl / CMM_TOKEN_TTL {} is more than ten years ({MAX_TTL} s): give seconds \
             up to that, or 0 for a token that does not expire",
            args.token_ttl
        )))
        .classify(ExitCode::Usage);
    }
    let name = args.token_name.clone().unwrap_or_else(default_token_name);
    let ttl = (args.token_ttl > 0).then_some(args.token_ttl);
    let issued = issue_token(&grafana, &args.service_account, &name, ttl)
        .await
        .classify_by(central_class)?;
    tracing::info!(service_account = %issued.service_account, id = issued.service_account_id, created = issued.service_account_created, token_name = %issued.token_name, "token issued");
    match &args.token_out {
        Some(path) => {
            write_secret_file(path, &issued.token, "the Grafana token (--token-out)")
                .classify(ExitCode::Internal)?;
            match global.output {
                Output::Json => crate::output::json(&issued)?,
                Output::Human => outln!(
                    "Token {} of service account {} written to {} (mode 0600)",
                    issued.token_name,
                    issued.service_account,
                    path.display()
                ),
            }
        }
        // The one place a token is printed: stdout, alone, once.
        None => outln!("{}", issued.token.expose()),
    }
    Ok(())
}
