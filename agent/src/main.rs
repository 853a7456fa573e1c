//! `cmm-agent`: makes a Kubernetes cluster monitored from CMM's central Grafana.
//!
//! `main` is the one place that prints errors and picks the exit code; commands return
//! `anyhow::Result` and attach an [`exit::ExitCode`] when the failure class matters to scripts.

mod cli;
mod cmd;
mod exit;
mod interrupt;
mod logging;
mod output;
mod progress;
mod settings;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
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
    let result = runtime.block_on(async {
        let hard_stop = interrupt::install()
            .map_err(|e| anyhow::anyhow!("cannot install the SIGINT/SIGTERM handlers: {e}"))?;
        tokio::select! {
            r = cmd::run(cli) => r,
            signal = hard_stop => {
                use exit::Classify;
                Err(cmm_installer::Error::Interrupted {
                    signal: signal.to_owned(),
                    detail: format!(
                        "the run did not wind down within {}s (or a second signal came); ended at once",
                        interrupt::HARD_STOP.as_secs()
                    ),
                })
                .classify(exit::ExitCode::for_signal(signal))
            }
        }
    });
    match result {
        Ok(()) => exit::ExitCode::Ok.into(),
        Err(err) => {
            let code = exit::ExitCode::of(&err);
            eprintln!("cmm-agent: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if matches!(
                code,
                exit::ExitCode::Interrupted | exit::ExitCode::Terminated | exit::ExitCode::Locked
            ) {
                if let Some(stage) = interrupt::current_stage() {
                    eprintln!("  state of the cluster: {}", stage.left);
                    eprintln!("  the next run: {}", stage.next);
                }
            }
            code.into()
        }
    }
}
