//! Where the Grafana token comes from: the one statement of the order, used by every command
//! that logs in to Grafana and by `config show`. The order is `grafana-token-file` >
//! `CMM_GRAFANA_TOKEN` > the systemd credential `$CREDENTIALS_DIRECTORY/grafana-token`
//! (`LoadCredential=`; an empty one is the unit's `SetCredential=` fallback and counts as none).

use std::path::{Path, PathBuf};

use cmm_central::secret::{resolve_token, SYSTEMD_TOKEN_CREDENTIAL};
use cmm_central::Secret;

use crate::exit::{Classify, ExitCode};

/// The environment variable that may hold the token itself.
pub const TOKEN_ENV: &str = "CMM_GRAFANA_TOKEN";

/// The source that wins, decided without reading the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
    Credential(PathBuf),
    None,
}

/// What the process sees of the token's sources (the environment, read once by [`source`]).
#[derive(Debug, Clone, Default)]
pub struct Seen<'a> {
    pub file: Option<&'a Path>,
    pub env_set: bool,
    pub credentials_directory: Option<PathBuf>,
}

/// The source of the Grafana token for this process, given the `grafana-token-file` setting.
pub fn source(file: Option<&Path>) -> TokenSource {
    decide(&Seen {
        file,
        env_set: std::env::var_os(TOKEN_ENV).is_some(),
        credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    })
}

/// The order itself, over what was seen (a credential counts only when its file is not
/// empty, so that one is looked at): each case is a unit test.
pub fn decide(seen: &Seen<'_>) -> TokenSource {
    if let Some(path) = seen.file {
        return TokenSource::File(path.to_owned());
    }
    if seen.env_set {
        return TokenSource::Env;
    }
    if let Some(dir) = &seen.credentials_directory {
        let path = dir.join(SYSTEMD_TOKEN_CREDENTIAL);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            return TokenSource::Credential(path);
        }
    }
    TokenSource::None
}

impl TokenSource {
    pub fn is_given(&self) -> bool {
        *self != TokenSource::None
    }

    /// Where the token comes from, for `config show` (never the value).
    pub fn describe(&self, file_origin: &str) -> String {
        match self {
            TokenSource::File(p) => format!("from the file {} ({file_origin})", p.display()),
            TokenSource::Env => format!("from environment {TOKEN_ENV} (value hidden)"),
            TokenSource::Credential(p) => format!("from the systemd credential {}", p.display()),
            TokenSource::None => format!(
                "none found: give grafana-token-file, {TOKEN_ENV} or LoadCredential=grafana-token"
            ),
        }
    }

    /// Read the token from the winning source (checked as `cmm_central::secret` checks it).
    pub fn read(&self) -> anyhow::Result<Option<Secret>> {
        let env = match self {
            TokenSource::Env => std::env::var(TOKEN_ENV).ok(),
            _ => None,
        };
        let (file, dir) = match self {
            TokenSource::File(p) => (Some(p.as_path()), None),
            TokenSource::Credential(p) => (None, p.parent()),
            _ => (None, None),
        };
        let got = resolve_token(file, env.as_deref(), dir).classify(ExitCode::Usage)?;
        Ok(got.map(|(secret, origin)| {
            tracing::debug!(?origin, "Grafana token source");
            secret
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_wins_then_the_variable_then_a_non_empty_credential() {
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join(SYSTEMD_TOKEN_CREDENTIAL);
        let file = Path::new("/etc/cmm/grafana-token");
        let seen = |file, env_set, creds: bool| Seen {
            file,
            env_set,
            credentials_directory: creds.then(|| dir.path().to_owned()),
        };
        std::fs::write(&cred, "glsa_x").unwrap();
        assert_eq!(
            decide(&seen(Some(file), true, true)),
            TokenSource::File(file.to_owned())
        );
        assert_eq!(decide(&seen(None, true, true)), TokenSource::Env);
        assert_eq!(
            decide(&seen(None, false, true)),
            TokenSource::Credential(cred.clone())
        );
        assert_eq!(decide(&seen(None, false, false)), TokenSource::None);
        // The unit's SetCredential= fallback: an empty credential is no token.
        std::fs::write(&cred, "").unwrap();
        assert_eq!(decide(&seen(None, false, true)), TokenSource::None);
        std::fs::remove_file(&cred).unwrap();
        assert_eq!(decide(&seen(None, false, true)), TokenSource::None);
    }

    #[test]
    fn a_credential_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join(SYSTEMD_TOKEN_CREDENTIAL);
        std::fs::write(&cred, "glsa_secret\n").unwrap();
        let src = TokenSource::Credential(cred.clone());
        assert_eq!(src.read().unwrap().unwrap().expose(), "glsa_secret");
        let shown = src.describe("-");
        assert!(shown.contains(&cred.display().to_string()) && !shown.contains("glsa"));
        assert!(TokenSource::None.describe("-").contains("none found"));
        assert!(TokenSource::None.read().unwrap().is_none());
    }
}
