//! `cmm-agent config validate | show`: the settings file as the agent reads it.

use std::path::PathBuf;

use crate::cli::{ConfigArgs, ConfigCommand, GlobalArgs};
use crate::exit::ExitCode;
use crate::render::{self, Document};
use crate::settings::file::{self, Problem};
use crate::settings::layers::{self, Origin, Resolved};
use crate::settings::ConfigLocation;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

pub fn run(global: &GlobalArgs, args: ConfigArgs, config: &ConfigLocation) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Validate { file } => {
            let (path, explicit) = match file {
                Some(p) => (p, true),
                None => (config.path.clone(), true),
            };
            validate(global, &path, explicit)
        }
        ConfigCommand::Show { command } => show(global, config, &command),
    }
}

fn validate(global: &GlobalArgs, path: &std::path::Path, explicit: bool) -> anyhow::Result<()> {
    use crate::exit::Classify;
    let cli = layers::defaults_only();
    match file::load(path, explicit, &cli) {
        Ok(f) => {
            let n = f.map_or(0, |f| f.entries.len());
            let json = serde_json::json!({
                "file": path.display().to_string(), "valid": true, "settings": n, "problems": [],
            });
            let line = format!("{}: valid ({n} settings)", path.display());
            render::emit(global.output, &Document::lines(json, &[line]))
        }
        Err(problems) => {
            let json = serde_json::json!({
                "file": path.display().to_string(), "valid": false, "problems": problems,
            });
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            render::emit(global.output, &Document::lines(json, &lines))?;
            Err(Invalid(format!(
                "{} has {} problem(s); nothing was run",
                path.display(),
                problems.len()
            )))
            .classify(ExitCode::Usage)
        }
    }
}

/// A broken settings file stops every command before anything is read or changed.
pub fn refuse_to_start(
    config: &ConfigLocation,
    problems: &[Problem],
    json: bool,
) -> std::process::ExitCode {
    let message = format!(
        "the settings file {} has {} problem(s); nothing was run (check it with `cmm-agent \
         config validate`)",
        config.path.display(),
        problems.len()
    );
    if json {
        let doc = serde_json::json!({"error": {
            "code": ExitCode::Usage.name(), "exit": ExitCode::Usage as u8, "message": message,
            "causes": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "hint": ExitCode::Usage.hint(),
        }});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        eprintln!("cmm-agent: error: {message}");
        for p in problems {
            eprintln!("  {p}");
        }
    }
    ExitCode::Usage.into()
}

fn show(global: &GlobalArgs, config: &ConfigLocation, command: &[String]) -> anyhow::Result<()> {
    use crate::exit::Classify;
    let path: Vec<String> = if command.is_empty() {
        vec!["check".into()]
    } else {
        command.to_vec()
    };
    let base = layers::defaults_only();
    let Some(target) = file::command_at(&base, &path) else {
        return Err(Invalid(format!(
            "no command `{}`: name one of cmm-agent's commands, e.g. check or bootstrap",
            path.join(" ")
        )))
        .classify(ExitCode::Usage);
    };
    if target.get_subcommands().any(|s| s.get_name() != "help") {
        return Err(Invalid(format!(
            "`{}` has subcommands: name one, e.g. `config show {} {}`",
            path.join(" "),
            path.join(" "),
            target
                .get_subcommands()
                .next()
                .map(|s| s.get_name())
                .unwrap_or_default()
        )))
        .classify(ExitCode::Usage);
    }
    let loaded = match file::load(&config.path, config.explicit, &base) {
        Ok(f) => f,
        Err(problems) => {
            let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Invalid(format!(
                "{} has problems: {}",
                config.path.display(),
                shown.join("; ")
            )))
            .classify(ExitCode::Usage);
        }
    };
    let cmd = layers::layered(base, loaded.as_ref());
    let mut argv = vec!["cmm-agent".to_owned()];
    argv.extend(path.iter().cloned());
    // Nothing but the layers below the command line: required flags may be missing here.
    let matches = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .map_err(|e| Invalid(e.to_string()))
        .classify(ExitCode::Usage)?;
    let mut resolved = layers::resolve(&cmd, &matches, loaded.as_ref());
    // The rows in the order --help lists the flags (the layering moves the ones with a
    // default), without the hidden ones (test seams such as host-proc-version) or --config.
    let declared = <crate::cli::Cli as clap::CommandFactory>::command();
    let order: Vec<String> = file::command_at(&declared, &path)
        .map(|c| {
            c.get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    resolved.retain(|r| r.key != "config" && order.contains(&r.key));
    resolved.sort_by_key(|r| order.iter().position(|k| *k == r.key));
    let token = resolved
        .iter()
        .find(|r| r.key == "grafana-token-file")
        .map(|file| {
            let path = file.values.first().map(PathBuf::from);
            crate::settings::token::source(path.as_deref()).describe(&file.origin.to_string())
        });
    let file_state = match (&loaded, config.explicit) {
        (Some(_), _) => format!("{} (read)", config.path.display()),
        (None, _) => format!("{} (absent: built-in defaults)", config.path.display()),
    };
    let mut lines = vec![format!(
        "Settings of `cmm-agent {}`; file: {file_state}",
        path.join(" ")
    )];
    let width = resolved.iter().map(|r| r.key.len()).max().unwrap_or(0);
    for r in &resolved {
        lines.push(format!(
            "  {:width$}  {:24}  {}",
            r.key,
            shown_value(r),
            r.origin
        ));
    }
    if let Some(t) = &token {
        lines.push(format!(
            "  {:width$}  {:24}  {t}",
            "grafana token", "(secret)"
        ));
    }
    let json = serde_json::json!({
        "command": path.join(" "), "file": file_state, "settings": resolved,
        "grafana_token": token,
    });
    render::emit(global.output, &Document::lines(json, &lines))
}

fn shown_value(r: &Resolved) -> String {
    match (&r.origin, r.values.as_slice()) {
        (Origin::Unset, _) | (_, []) => "-".into(),
        (_, [one]) => one.clone(),
        (_, many) => many.join(", "),
    }
}
