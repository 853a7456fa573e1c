//! Errors of the Grafana side. Each variant says what failed and what to do about it; the agent
//! maps [`ErrorClass`] to its exit codes.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The failure classes a caller (a script, the bootstrap) wants to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input; nothing was changed.
    Usage,
    /// Grafana did not answer (down, 5xx, timeout) after the retries.
    GrafanaUnreachable,
    /// Grafana refused the credentials (401) or the permission (403).
    GrafanaAuth,
    /// An object CMM would write belongs to someone else.
    GrafanaConflict,
    /// The cluster's Prometheus did not answer or its series lack the cluster label.
    PrometheusCheck,
    /// Grafana answers but refuses or fails this request (a persistent 500 on a write).
    GrafanaRejected,
    /// Grafana answered something its API does not document; a bug on one side.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },

    #[error("reading {what} from {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("writing {what} to {}: {source}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "Grafana at {url} did not answer {method} {path} after {attempts} attempt(s): {last}; \
         check that Grafana is running and reachable from here (--grafana-url)"
    )]
    GrafanaUnreachable {
        url: String,
        method: String,
        path: String,
        attempts: u32,
        last: String,
    },

    #[error(
        "Grafana at {url} answered {status} to {method} {path} on all {attempts} attempt(s): \
         {message} — {}",
        if *write {
            "Grafana is up but fails this request: it may refuse the payload (Grafana 11 \
             answers a provenance mismatch with 500); see Grafana's server log for this path"
        } else {
            "Grafana is up but cannot serve this read (its database?); see Grafana's server log"
        }
    )]
    GrafanaFailing {
        url: String,
        method: String,
        path: String,
        attempts: u32,
        status: u16,
        message: String,
        write: bool,
    },

    #[error(
        "Grafana rejected the credentials (401 Unauthorized) on {method} {path}: {message}. {}",
        match login {
            Some(user) => format!(
                "The password of Grafana user {user:?} was refused: check the `grafana-password-file` setting \
                 (a fresh central Grafana's admin password is key admin-password of Secret \
                 cmm-grafana-admin in its namespace)"
            ),
            None => "The token is wrong, expired, revoked or from another org: issue a new one with \
                     `cmm-agent central token` and pass it with the `grafana-token-file` setting or \
                     CMM_GRAFANA_TOKEN"
                .to_owned(),
        }
    )]
    GrafanaUnauthorized {
        method: String,
        path: String,
        message: String,
        /// The user of a password login; `None` for a token.
        login: Option<String>,
    },

    #[error(
        "Grafana accepted the credentials but denied the permission (403 Forbidden) on {method} \
         {path}: {message}. Give the service account the role Admin (the least built-in role \
         holding datasources:create and alert.provisioning:write)"
    )]
    GrafanaForbidden {
        method: String,
        path: String,
        message: String,
        /// The permissions Grafana named, from "Permissions needed: …".
        permissions: Option<String>,
    },

    #[error("{what}: {fix}")]
    GrafanaConflict { what: String, fix: String },

    #[error("Grafana answered {status} to {method} {path}: {message}")]
    GrafanaStatus {
        method: String,
        path: String,
        status: u16,
        message: String,
    },

    #[error("Grafana's answer to {method} {path} does not have the documented shape: {detail}")]
    GrafanaProtocol {
        method: String,
        path: String,
        detail: String,
    },

    #[error("Prometheus at {url}: {problem}")]
    Prometheus { url: String, problem: String },

    #[error("no Prometheus endpoint for the cluster: {problem}")]
    Discovery { problem: String },

    #[error(
        "the central Grafana has no datasource {uid}, which topology {topology} provisions: \
         install the central release with the same topology first (`cmm-agent bootstrap --role \
         central --topology {topology}`), then register again"
    )]
    SharedDatasourceMissing { uid: String, topology: String },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Invalid { .. }
            | Error::Read { .. }
            | Error::Discovery { .. }
            | Error::SharedDatasourceMissing { .. } => ErrorClass::Usage,
            Error::Write { .. } => ErrorClass::Internal,
            Error::GrafanaUnreachable { .. } => ErrorClass::GrafanaUnreachable,
            // A gateway's 502/503/504 is Grafana (or what is in front of it) being down.
            Error::GrafanaFailing {
                status: 502..=504, ..
            } => ErrorClass::GrafanaUnreachable,
            Error::GrafanaFailing { .. } => ErrorClass::GrafanaRejected,
            Error::GrafanaUnauthorized { .. } | Error::GrafanaForbidden { .. } => {
                ErrorClass::GrafanaAuth
            }
            Error::GrafanaConflict { .. } => ErrorClass::GrafanaConflict,
            Error::Prometheus { .. } => ErrorClass::PrometheusCheck,
            Error::GrafanaStatus { status, .. } if *status >= 500 => ErrorClass::GrafanaUnreachable,
            Error::GrafanaStatus { .. } | Error::GrafanaProtocol { .. } => ErrorClass::Internal,
        }
    }

    /// The setting (its key, the long flag's name) an input error is about, for the agent
    /// to say where that value came from.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// `field` is the setting's key (`grafana-url`), never a flag spelling: the agent adds how
    /// it was given.
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            problem: problem.into(),
        }
    }
}
