//! `cmm-agent`: makes a Kubernetes cluster monitored from CMM's central Grafana.
//!
//! `main` is the one place that prints errors and picks the exit code; commands return
//! `anyhow::Result` and attach an [`exit::ExitCode`] when the failure class matters to scripts.

mod cli;
mod cmd;
mod exit;
mod interrupt;
mod layering;
mod logging;
mod ops;
mod output;
mod progress;
mod render;
mod settings;
mod version;

/// The static (musl) builds: musl's malloc is slow for the many small allocations of parsing
/// YAML and JSON (Cargo.toml has the figures); glibc builds keep glibc's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let settings::Startup {
        mut cli,
        matches,
        config,
    } = match settings::start(&argv) {
        Ok(s) => s,
        Err(settings::StartError::Clap { error, json }) => return bad_command_line(error, json),
        Err(settings::StartError::File {
            config,
            problems,
            json,
        }) => return cmd::config::refuse_to_start(&config, &problems, json),
    };
    cli.note_given(&matches);
    let json_output = cli.global.output == cli::Output::Json;
    let json_logs = cli.global.log_format == logging::LogFormat::Json;
    output::set_json_logs(json_logs);
    if let Err(err) = logging::init(cli.global.log_format, &cli.global.log_level) {
        eprintln!("cmm-agent: error: {err}");
        return exit::ExitCode::Usage.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cmm-agent: error: cannot start the async runtime: {err}");
            return exit::ExitCode::Internal.into();
        }
    };
    // Only bootstrap winds down on a stop request (helm, the lock, its waits); every other
    // command is safe to end at the first signal.
    let grace = match cli.command {
        cli::Command::Bootstrap(_) => interrupt::HARD_STOP,
        // check --repair may be holding the run lock around a helm rollback.
        cli::Command::Check(ref c) if c.repair.repair => interrupt::HARD_STOP,
        // self-update between copying the binary aside and putting the new one in place.
        cli::Command::SelfUpdate(_) => interrupt::HARD_STOP,
        _ => std::time::Duration::ZERO,
    };
    let is_check = matches!(cli.command, cli::Command::Check(_));
    let result = runtime.block_on(async {
        let hard_stop = interrupt::install(grace)
            .map_err(|e| anyhow::anyhow!("cannot install the SIGINT/SIGTERM handlers: {e}"))?;
        tokio::select! {
            r = cmd::run(cli, &config) => r,
            signal = hard_stop => {
                use exit::Classify;
                Err(cmm_installer::Error::Interrupted {
                    signal: signal.to_owned(),
                    detail: if grace.is_zero() {
                        "ended at once; this command changes nothing that needs winding down".to_owned()
                    } else {
                        format!(
                            "the run did not wind down within {}s (or a second signal came); ended at once",
                            grace.as_secs()
                        )
                    },
                })
                .classify(exit::ExitCode::for_signal(signal))
            }
        }
    });
    match result {
        Ok(()) => {
            if json_output {
                output::finish_json(None);
            }
            exit::ExitCode::Ok.into()
        }
        Err(err) => failed(&err, is_check, json_output, json_logs),
    }
}

/// Say why the run failed, once: the JSON document's `error`, a JSON log line, or plain
/// stderr lines (message, causes, the setting, what a stop left and what the next run does).
fn failed(
    err: &anyhow::Error,
    is_check: bool,
    json_output: bool,
    json_logs: bool,
) -> std::process::ExitCode {
    let mut code = exit::ExitCode::of(err);
    if is_check {
        code = code.for_check();
    }
    let stage = matches!(
        code,
        exit::ExitCode::Interrupted | exit::ExitCode::Terminated | exit::ExitCode::Locked
    )
    .then(interrupt::current_stage)
    .flatten();
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    let setting = exit::ExitCode::setting_of(err).map(settings::layers::named);
    if json_output {
        output::finish_json(Some(error_object(
            code,
            &err.to_string(),
            &causes,
            code.hint(),
            setting.as_deref(),
            stage.as_ref(),
        )));
    }
    // check's "degraded" is a verdict, not a failure (the unit counts it as success): said as
    // a warning, never as an error.
    let degraded = code == exit::ExitCode::CheckDegraded;
    if json_logs && degraded {
        tracing::warn!(code = code.name(), exit = code.status(), "{err}");
    } else if json_logs {
        tracing::error!(
            code = code.name(),
            exit = code.status(),
            causes = %causes.join("; "),
            setting = setting.as_deref().unwrap_or(""),
            state = stage.as_ref().map_or("", |s| s.left.as_str()),
            next_run = stage.as_ref().map_or("", |s| s.next.as_str()),
            "{err}"
        );
    } else if degraded {
        eprintln!("cmm-agent: degraded (exit 1, not a failure): {err}");
    } else {
        eprintln!("cmm-agent: error: {err}");
        for cause in &causes {
            eprintln!("  caused by: {cause}");
        }
        if let Some(s) = &setting {
            eprintln!("  the setting: {s}");
        }
        if let Some(stage) = stage {
            eprintln!("  state of the cluster: {}", stage.left);
            eprintln!("  the next run: {}", stage.next);
        }
    }
    code.into()
}

/// The command line itself is wrong (or asks for --help/--version). clap says why on stderr;
/// with `--output json` stdout also carries the one JSON document every other error path
/// prints, so a script reading stdout is never left with nothing.
fn bad_command_line(error: clap::Error, json: bool) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || informational {
        error.exit()
    }
    let _ = error.print();
    let code = exit::ExitCode::Usage;
    let message = error
        .to_string()
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad command line")
        .trim_start_matches("error: ")
        .to_owned();
    output::finish_json(Some(error_object(
        code,
        &message,
        &[],
        "fix the command line (see --help); nothing was changed",
        None,
        None,
    )));
    code.into()
}

/// The `error` object of the `--output json` document (docs/exit-codes.md), one shape for
/// every failure.
fn error_object(
    code: exit::ExitCode,
    message: &str,
    causes: &[String],
    hint: &str,
    setting: Option<&str>,
    stage: Option<&interrupt::Stage>,
) -> serde_json::Value {
    serde_json::json!({
        "code": code.name(),
        "exit": code.status(),
        "message": message,
        "causes": causes,
        "hint": hint,
        "setting": setting,
        "state": stage.map(|s| &s.left),
        "next_run": stage.map(|s| &s.next),
    })
}
