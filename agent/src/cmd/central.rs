//! `cmm-agent central …`: operations on the central Grafana itself.
//!
//! `central token` issues the token cluster agents register with: it finds or creates the
//! service account (role Admin, see cmm_central::token) and adds a token, which Grafana shows
//! once. The token goes to a new 0600 file (`--token-out`) or, in human output, to stdout
//! alone so `TOKEN_FILE=$(mktemp) …` style scripts can capture it; it is never logged.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cmm_central::secret::write_secret_file;
use cmm_central::token::issue_token;

use crate::cli::{GlobalArgs, Output};
use crate::cmd::register::{central_class, GrafanaArgs};
use crate::exit::{Classify, ExitCode};
use crate::output::outln;

#[derive(Debug, Args)]
pub struct CentralArgs {
    #[command(subcommand)]
    pub command: CentralCommand,
}

#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// Issue a registration token for cluster agents (service account with role Admin).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub grafana: GrafanaArgs,
    /// Log in as this Grafana user (an org admin, e.g. admin on a fresh install) instead of a
    /// token; the password comes from --grafana-password-file.
    #[arg(long, env = "CMM_GRAFANA_USER", requires = "grafana_password_file")]
    pub grafana_user: Option<String>,
    /// File holding that user's password.
    #[arg(long, env = "CMM_GRAFANA_PASSWORD_FILE", requires = "grafana_user")]
    pub grafana_password_file: Option<PathBuf>,
    /// Service account the token belongs to; created if missing.
    #[arg(long, env = "CMM_SERVICE_ACCOUNT")]
    pub service_account: String,
    /// Name of the new token (unique per Grafana org). Default: cmm-<unix time>.
    #[arg(long, env = "CMM_TOKEN_NAME")]
    pub token_name: Option<String>,
    /// Token lifetime in seconds; 0 = does not expire.
    #[arg(long, env = "CMM_TOKEN_TTL")]
    pub token_ttl: u64,
    /// Write the token to this new file (mode 0600; an existing file is never overwritten)
    /// instead of stdout.
    #[arg(long, env = "CMM_TOKEN_OUT")]
    pub token_out: Option<PathBuf>,
}

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
    let basic = args
        .grafana_user
        .clone()
        .zip(args.grafana_password_file.clone());
    if basic.is_none() && !token_given(&args.grafana) {
        return Err(Usage(format!(
            "central token must log in to Grafana first: pass --grafana-user USER and \
             --grafana-password-file FILE of an org admin (on a fresh central Grafana: user admin, \
             its password in Secret {ADMIN_SECRET}, e.g. `kubectl -n monitor get secret \
             {ADMIN_SECRET} -o jsonpath='{{.data.admin-password}}' | base64 -d > FILE`), or an \
             org admin's token with --grafana-token-file / CMM_GRAFANA_TOKEN"
        )))
        .classify(ExitCode::Usage);
    }
    let grafana = args.grafana.client(basic)?;
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

/// The Secret `values/central_monitor.yaml` takes Grafana's admin login from
/// (`grafana.admin.existingSecret`), keys `admin-user` and `admin-password`.
pub const ADMIN_SECRET: &str = "cmm-grafana-admin";

/// What `bootstrap --role central` does after helm: wait for Grafana, issue the token.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Central Grafana (--role central)")]
pub struct CentralBootstrapArgs {
    /// How long to wait for the new central Grafana's /api/health, e.g. 300s, 5m.
    #[arg(long, env = "CMM_GRAFANA_WAIT")]
    pub grafana_wait: String,
    /// Issue the cluster agents' registration token into this new file (mode 0600).
    #[arg(long = "registration-token-out", env = "CMM_REGISTRATION_TOKEN_OUT")]
    pub registration_token_out: Option<PathBuf>,
    /// Service account of that token; created if missing.
    #[arg(
        long = "registration-service-account",
        env = "CMM_REGISTRATION_SERVICE_ACCOUNT"
    )]
    pub registration_service_account: String,
}

/// A token file is always a new file: refuse an existing path up front, naming the flag.
fn refuse_existing(path: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    Err(Usage(format!(
        "{flag} {} exists; CMM never overwrites a token file: choose a new path",
        path.display()
    )))
    .classify(ExitCode::Usage)
}

/// Whether any token source is configured (file, variable, systemd credential).
fn token_given(grafana: &GrafanaArgs) -> bool {
    grafana.grafana_token_file.is_some()
        || std::env::var_os("CMM_GRAFANA_TOKEN").is_some()
        || std::env::var_os("CREDENTIALS_DIRECTORY")
            .is_some_and(|d| PathBuf::from(d).join("grafana-token").exists())
}

/// The central role's Grafana inputs, checked before bootstrap changes anything. The central
/// Grafana is what is being installed, so it is not asked; only what can be known is checked.
pub fn validate_inputs(grafana: &GrafanaArgs, args: &CentralBootstrapArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.registration_token_out {
        refuse_existing(out, "--registration-token-out")?;
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(Usage(format!(
                "--registration-token-out {}: its directory does not exist; create it first",
                out.display()
            )))
            .classify(ExitCode::Usage);
        }
    }
    crate::settings::DurationSetting::GrafanaWait.parse(&args.grafana_wait)?;
    // The URL, CA file, retries and timeout, with a placeholder credential: the real one may
    // only exist once the central Grafana's admin Secret does.
    grafana.client_with(cmm_central::Credentials::Token(cmm_central::Secret::new(
        "-",
    )))?;
    Ok(())
}

/// Bootstrap's last step for the central role. `Ok(false)` when no `--grafana-url` was given.
/// Without a token source the admin login is read from [`ADMIN_SECRET`] in `namespace`.
pub async fn after_install(
    grafana: &GrafanaArgs,
    args: &CentralBootstrapArgs,
    kube: &cmm_installer::kube::Connected,
    namespace: &str,
) -> anyhow::Result<bool> {
    if grafana.grafana_url.is_none() {
        return Ok(false);
    }
    // Inputs were checked by `validate_inputs` before the install; the token file is still
    // created new (write_secret_file never overwrites), should one appear meanwhile.
    let wait = crate::settings::DurationSetting::GrafanaWait.parse(&args.grafana_wait)?;
    let creds = if token_given(grafana) {
        grafana.credentials(None)?
    } else {
        admin_login(kube, namespace).await?
    };
    let client = grafana.client_with(creds)?;
    let version = client.wait_healthy(wait).await.classify_by(central_class)?;
    tracing::info!(%version, url = %client.base_url(), "central Grafana answers");
    if let Some(out) = &args.registration_token_out {
        let issued = issue_token(
            &client,
            &args.registration_service_account,
            &default_token_name(),
            None,
        )
        .await
        .classify_by(central_class)?;
        write_secret_file(
            out,
            &issued.token,
            "the registration token (--registration-token-out)",
        )
        .classify(ExitCode::Internal)?;
        eprintln!(
            "Registration token of service account {} written to {} (mode 0600)",
            issued.service_account,
            out.display()
        );
    }
    Ok(true)
}

async fn admin_login(
    kube: &cmm_installer::kube::Connected,
    namespace: &str,
) -> anyhow::Result<cmm_central::Credentials> {
    let secrets: Vec<k8s_openapi::api::core::v1::Secret> = kube
        .list_in(namespace)
        .await
        .classify_by(crate::exit::installer_class)?;
    let secret = secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(ADMIN_SECRET));
    let field = |k: &str| {
        secret
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|v| !v.trim().is_empty())
    };
    match (field("admin-user"), field("admin-password")) {
        (Some(user), Some(password)) => Ok(cmm_central::Credentials::Basic {
            user: user.trim().to_owned(),
            password: cmm_central::Secret::new(password.trim()),
        }),
        _ => Err(Usage(format!(
            "no Grafana token given and Secret {namespace}/{ADMIN_SECRET} has no admin-user and \
             admin-password: create it (docs/values.md) or pass --grafana-token-file"
        )))
        .classify(ExitCode::Usage),
    }
}

fn default_token_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("cmm-{now}")
}
