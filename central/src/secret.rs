//! Secrets (Grafana tokens, passwords) travel in [`Secret`], whose Debug, Display and Serialize
//! print `***`, so a stray `{:?}`, a tracing field or `--output json` cannot leak one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// How CMM authenticates to Grafana: a service-account token (normal case), or an org admin's
/// login, needed once on a fresh central Grafana to issue the first token.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(Secret),
    Basic { user: String, password: Secret },
}

/// Where a secret came from; reported (never the value) so an operator can tell which of
/// several configured sources won.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretOrigin {
    File(PathBuf),
    Env(&'static str),
    SystemdCredential(PathBuf),
}

/// The systemd credential name the unit passes with `LoadCredential=grafana-token:…`.
pub const SYSTEMD_TOKEN_CREDENTIAL: &str = "grafana-token";

/// Resolve the Grafana token: `--grafana-token-file` > `CMM_GRAFANA_TOKEN` >
/// `$CREDENTIALS_DIRECTORY/grafana-token`. Inputs are passed in so this stays testable without
/// touching the process environment.
pub fn resolve_token(
    file: Option<&Path>,
    env_value: Option<&str>,
    credentials_directory: Option<&Path>,
) -> Result<Option<(Secret, SecretOrigin)>> {
    if let Some(path) = file {
        let secret = read_secret_file(path, "the Grafana token (grafana-token-file)")?;
        return Ok(Some((secret, SecretOrigin::File(path.to_owned()))));
    }
    if let Some(value) = env_value {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid(
                "CMM_GRAFANA_TOKEN",
                "is set but empty: unset it or put the service-account token in it",
            ));
        }
        check_printable(trimmed, "CMM_GRAFANA_TOKEN", "the variable")?;
        return Ok(Some((
            Secret::new(trimmed),
            SecretOrigin::Env("CMM_GRAFANA_TOKEN"),
        )));
    }
    if let Some(dir) = credentials_directory {
        let path = dir.join(SYSTEMD_TOKEN_CREDENTIAL);
        // Empty is the unit's SetCredential= fallback for /etc/cmm/grafana-token not written
        // yet: no token, said as such by the caller, rather than "the token is empty".
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            let secret = read_secret_file(&path, "the systemd credential grafana-token")?;
            return Ok(Some((secret, SecretOrigin::SystemdCredential(path))));
        }
    }
    Ok(None)
}

/// A token or password goes into an HTTP header: a newline or other control character inside
/// it would be refused by the HTTP library (and looks like "Grafana unreachable"), or, worse,
/// split the header. Refused here as bad input naming its source.
fn check_printable(value: &str, what: &'static str, source: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            what,
            format!(
                "{source} holds a control character ({}) inside the secret: it must be a single \
                 line; write only the secret, e.g. `printf %s \"$TOKEN\" > FILE`",
                if c == '\n' || c == '\r' {
                    "a line break".to_owned()
                } else {
                    format!("U+{:04X}", c as u32)
                }
            ),
        ));
    }
    Ok(())
}

/// Read a secret file: trailing newline stripped, empty refused. A file others can read is
/// allowed (a Kubernetes Secret mount is 0644) but logged, without the value.
pub fn read_secret_file(path: &Path, what: &'static str) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Error::invalid(
            what,
            format!("{} is empty: write the secret into it", path.display()),
        ));
    }
    check_printable(value, what, &path.display().to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "secret file is readable by other users; chmod 600 it");
            }
        }
    }
    Ok(Secret::new(value))
}

/// Write a secret to a new file readable by its owner only. Refuses to overwrite, so a token is
/// never silently replaced by another.
pub fn write_secret_file(path: &Path, secret: &Secret, what: &'static str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| Error::Write {
        what,
        path: path.to_owned(),
        source,
    })?;
    file.write_all(format!("{}\n", secret.expose()).as_bytes())
        .map_err(|source| Error::Write {
            what,
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("glsa_supersecret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        let c = Credentials::Basic {
            user: "admin".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_file_wins_over_env_and_systemd() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "glsa_from_file\n").unwrap();
        std::fs::write(dir.path().join(SYSTEMD_TOKEN_CREDENTIAL), "glsa_systemd").unwrap();
        let (s, o) = resolve_token(Some(&file), Some("glsa_env"), Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "glsa_from_file");
        assert_eq!(o, SecretOrigin::File(file));
        let (s, _) = resolve_token(None, Some("glsa_env"), Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "glsa_env");
        let (s, o) = resolve_token(None, None, Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "glsa_systemd");
        assert!(matches!(o, SecretOrigin::SystemdCredential(_)));
        assert!(resolve_token(None, None, None).unwrap().is_none());
    }

    #[test]
    fn empty_or_missing_sources_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = resolve_token(Some(&empty), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grafana-token-file") && e.contains("empty"),
            "{e}"
        );
        let e = resolve_token(None, Some("  "), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CMM_GRAFANA_TOKEN"), "{e}");
        let e = resolve_token(Some(&dir.path().join("nope")), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn written_secrets_are_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        write_secret_file(&path, &Secret::new("glsa_x"), "token").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "glsa_x\n");
        assert!(write_secret_file(&path, &Secret::new("glsa_y"), "token").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "glsa_x\n");
    }
}
