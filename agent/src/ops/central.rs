//! The central side as a cluster's agent and the central bootstrap reach it: the CMM CA and
//! Grafana's client certificate read from the central cluster, and the central role's last
//! step (wait for the new Grafana, issue the agents' registration token).

use anyhow::Context;
use cmm_central::secret::write_secret_file;
use cmm_central::token::issue_token;
use cmm_installer::kube::Connected;
use cmm_installer::tls::CentralPki;

use crate::exit::{central_class, installer_class, Classify, ExitCode};
use crate::settings::{BadInput, CentralRole, CentralSide, GrafanaSettings};

/// The Secret `values/central_monitor.yaml` takes Grafana's admin login from
/// (`grafana.admin.existingSecret`), keys `admin-user` and `admin-password`; the central
/// bootstrap makes it unless it exists (cmm_installer::grafana_secrets).
pub const ADMIN_SECRET: &str = cmm_core::naming::GRAFANA_ADMIN_SECRET;

/// Read the central material (CA, trust bundle, Grafana's client certificate) through the
/// central cluster's kubeconfig context. Reads only.
pub async fn central_pki(side: &CentralSide) -> anyhow::Result<CentralPki> {
    let Some(context) = &side.context else {
        return Err(BadInput(
            "--central-context / CMM_CENTRAL_CONTEXT is needed for a cluster served over mutual \
             TLS: give the central cluster's kubeconfig context (where Secret cmm-ca is)"
                .into(),
        ))
        .classify(ExitCode::Usage);
    };
    let conn = central_connection(side).await?;
    let ns = &side.namespace;
    cmm_installer::tls::load_central(&conn, ns, std::time::SystemTime::now())
        .await
        .classify_by(installer_class)?
        .ok_or_else(|| {
            BadInput(format!(
                    "--central-context: context {context} has no Secret {ns}/{} yet: install the central Grafana \
                     first (`cmm-agent bootstrap --role central` makes the CMM CA), or pass \
                     --central-namespace",
                    cmm_installer::tls::CA_SECRET
                ))
        })
        .classify(ExitCode::Usage)
}

/// The central cluster, through its kubeconfig context.
pub async fn central_connection(side: &CentralSide) -> anyhow::Result<Connected> {
    let Some(target) = side.target() else {
        return Err(BadInput(
            "the central cluster is not reachable from here: set central-context \
             (--central-context / CMM_CENTRAL_CONTEXT)"
                .into(),
        ))
        .classify(ExitCode::Usage);
    };
    cmm_installer::kube::connect(&target)
        .await
        .classify_by(installer_class)
        .context("connecting to the central cluster (--central-context)")
}

/// Bootstrap's last step for the central role. `Ok(false)` when no `--grafana-url` was given.
/// Without a token source the admin login is read from [`ADMIN_SECRET`] in `namespace`.
pub async fn after_install(
    grafana: &GrafanaSettings,
    args: &CentralRole,
    kube: &Connected,
    namespace: &str,
) -> anyhow::Result<bool> {
    if grafana.url.is_none() {
        return Ok(false);
    }
    // Inputs were checked when the settings were resolved, before the install; the token file
    // is still created new (write_secret_file never overwrites), should one appear meanwhile.
    let creds = if grafana.token.is_given() {
        grafana.token_credentials()?
    } else {
        admin_login(kube, namespace).await?
    };
    let client = grafana.client(creds)?;
    let version = client
        .wait_healthy(args.grafana_wait)
        .await
        .classify_by(central_class)?;
    tracing::info!(%version, url = %client.base_url(), "central Grafana answers");
    if let Some(out) = &args.token_out {
        let issued = issue_token(&client, &args.service_account, &default_token_name(), None)
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

pub(crate) async fn admin_login(
    kube: &Connected,
    namespace: &str,
) -> anyhow::Result<cmm_central::Credentials> {
    let secrets: Vec<k8s_openapi::api::core::v1::Secret> =
        kube.list_in(namespace).await.classify_by(installer_class)?;
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
        _ => Err(BadInput(format!(
            "no Grafana token given and Secret {namespace}/{ADMIN_SECRET} has no admin-user and \
             admin-password: create it (docs/values.md) or pass --grafana-token-file"
        )))
        .classify(ExitCode::Usage),
    }
}

pub fn default_token_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("cmm-{now}")
}
