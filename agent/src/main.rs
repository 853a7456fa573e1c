//! `cmm-agent`: makes a Kubernetes cluster monitored from CMM's central Grafana.
//!
//! `main` is the one place that prints errors and picks the exit code; commands return
//! `anyhow::Result` and attach an [`exit::ExitCode`] when the failure class matters to scripts.

mod cli;
mod cmd;
mod exit;
mod logging;
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
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => exit::ExitCode::Ok.into(),
        Err(err) => {
            let code = exit::ExitCode::of(&err);
            eprintln!("cmm-agent: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            code.into()
        }
    }
}
