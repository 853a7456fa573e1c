//! Precedence, in one place: flag > `CMM_*` variable > agent.toml > built-in default.
//!
//! clap already orders the first two and applies a default last. So the file's value (or the
//! built-in default when the file has none) is handed to clap as the flag's default: clap then
//! resolves every layer in the documented order, and its `ValueSource` plus what this module
//! handed over tell each value's origin. The built-in defaults live in [`DEFAULTS`], not in
//! clap attributes, so `--help`, `config show` and the run agree on them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use super::file::{ConfigFile, Entry};

/// The default config file, read when it exists.
pub const DEFAULT_CONFIG: &str = "/etc/cmm/agent.toml";

/// Built-in defaults, by long flag. A flag not listed has no default (unset unless given).
pub const DEFAULTS: &[(&str, &[&str])] = &[
    ("log-format", &["human"]),
    ("log-level", &["info"]),
    ("output", &["human"]),
    ("helm", &["helm"]),
    ("namespace", &[cmm_core::naming::DEFAULT_NAMESPACE]),
    ("role", &["cluster"]),
    ("timeout", &["10m"]),
    ("pending-grace", &["15m"]),
    ("host-proc-version", &["/proc/version"]),
    ("claim-wait", &["30s"]),
    ("grafana-retries", &["5"]),
    ("grafana-timeout", &["10s"]),
    ("first-scrape-wait", &["2m"]),
    ("rules", &["provisioned"]),
    (
        "service-account",
        &[cmm_central::token::DEFAULT_SERVICE_ACCOUNT],
    ),
    ("token-ttl", &["0"]),
    ("grafana-wait", &["5m"]),
    (
        "registration-service-account",
        &[cmm_central::token::DEFAULT_SERVICE_ACCOUNT],
    ),
    ("subject", &["Group:cmm-agents"]),
    ("storage-warn", &["80"]),
    ("every", &["15m"]),
    ("unit", &["cmm-agent-schedule"]),
    // GitHub's releases API; the repository is CMM's release repository (the name to publish
    // under when one exists: nothing is released there yet).
    ("update-feed", &["https://api.github.com"]),
    ("update-repo", &["cmm-dev/cmm-agent"]),
    ("update-timeout", &["5m"]),
    ("central-namespace", &[cmm_core::naming::DEFAULT_NAMESPACE]),
    ("topology", &["pull"]),
    ("cert-renew-before", &["30d"]),
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum Origin {
    Flag,
    Env { variable: String },
    File { path: PathBuf, line: usize },
    Default,
    Unset,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => write!(f, "command line"),
            Origin::Env { variable } => write!(f, "environment {variable}"),
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Default => write!(f, "built-in default"),
            Origin::Unset => write!(f, "not set"),
        }
    }
}

/// One resolved setting of the command that runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resolved {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub values: Vec<String>,
    pub origin: Origin,
}

fn file_entry<'a>(file: Option<&'a ConfigFile>, path: &[String], key: &str) -> Option<&'a Entry> {
    let file = file?;
    file.entries
        .iter()
        .find(|e| e.section == path && e.key == key)
        .or_else(|| {
            file.entries
                .iter()
                .find(|e| e.section.is_empty() && e.key == key)
        })
}

fn builtin(key: &str) -> Option<&'static [&'static str]> {
    DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The command tree with the built-in defaults only: what the file is checked against, and
/// the command line is first read with (to find the file).
pub fn defaults_only() -> Command {
    use clap::CommandFactory;
    layered(
        crate::cli::Cli::command().long_version(crate::version::long()),
        None,
    )
}

/// The command tree with each flag's lowest layers (file, else built-in) as its default.
pub fn layered(cmd: Command, file: Option<&ConfigFile>) -> Command {
    layer(cmd, &[], file)
}

fn layer(mut cmd: Command, path: &[String], file: Option<&ConfigFile>) -> Command {
    let args: Vec<(String, String, bool)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let switch = matches!(a.get_action(), clap::ArgAction::SetTrue);
            Some((a.get_id().to_string(), a.get_long()?.to_owned(), switch))
        })
        .collect();
    for (id, long, switch) in args {
        if switch {
            // A switch's CMM_* variable (and its file value) takes what people write for a
            // yes or no: 1/0, yes/no, on/off, true/false (clap's Boolish), not only true/false.
            cmd = cmd.mut_arg(&id, |a| {
                a.value_parser(clap::builder::BoolishValueParser::new())
            });
        }
        let values: Option<Vec<String>> = match file_entry(file, path, &long) {
            Some(e) => Some(e.values.clone()),
            None => builtin(&long).map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
        };
        if let Some(values) = values {
            cmd = cmd.mut_arg(id, |a| a.default_values(values).required(false));
        }
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subs {
        let mut p = path.to_vec();
        p.push(name.clone());
        cmd = cmd.mut_subcommand(name, |sc| layer(sc, &p, file));
    }
    cmd
}

/// Every long flag of the deepest matched command, with its value and origin.
pub fn resolve(cmd: &Command, matches: &ArgMatches, file: Option<&ConfigFile>) -> Vec<Resolved> {
    let (mut c, mut m, mut path) = (cmd, matches, Vec::<String>::new());
    while let Some((name, sub)) = m.subcommand() {
        let Some(next) = c.find_subcommand(name) else {
            break;
        };
        path.push(name.to_owned());
        (c, m) = (next, sub);
    }
    let mut out = Vec::new();
    for arg in c.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let id = arg.get_id().as_str();
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let values: Vec<String> = m
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let origin = match m.value_source(id) {
            Some(ValueSource::CommandLine) => Origin::Flag,
            Some(ValueSource::EnvVariable) => Origin::Env {
                variable: env.clone().unwrap_or_default(),
            },
            Some(ValueSource::DefaultValue) => match file_entry(file, &path, long) {
                Some(e) => Origin::File {
                    path: file.map(|f| f.path.clone()).unwrap_or_default(),
                    line: e.line,
                },
                None => Origin::Default,
            },
            _ => Origin::Unset,
        };
        out.push(Resolved {
            key: long.to_owned(),
            env,
            values,
            origin,
        });
    }
    out
}

static ORIGINS: OnceLock<BTreeMap<String, Resolved>> = OnceLock::new();

/// Remember the run's origins, for messages that name a setting (set once, by `main`).
pub fn remember(resolved: Vec<Resolved>) {
    let _ = ORIGINS.set(resolved.into_iter().map(|r| (r.key.clone(), r)).collect());
}

/// How to name setting `key` in a message: the way it was given (`--timeout`, `CMM_TIMEOUT`,
/// `timeout (/etc/cmm/agent.toml line 4)`), or every way to give it when it was not.
pub fn named(key: &str) -> String {
    let known = ORIGINS.get().and_then(|o| o.get(key));
    let env = known
        .and_then(|r| r.env.clone())
        .unwrap_or_else(|| format!("CMM_{}", key.replace('-', "_").to_ascii_uppercase()));
    match known.map(|r| &r.origin) {
        Some(Origin::Flag) => format!("--{key}"),
        Some(Origin::Env { variable }) => variable.clone(),
        Some(Origin::File { path, line }) => {
            format!("{key} ({} line {line})", path.display())
        }
        _ => format!("--{key} / {env}"),
    }
}
