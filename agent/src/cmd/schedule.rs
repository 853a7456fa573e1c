//! `cmm-agent schedule`: a transient systemd timer (`systemd-run`) that runs `check` every N
//! minutes, as the design card says — for a host without the packaged timer. It lives until
//! the next reboot; `systemctl enable --now cmm-agent-check.timer` is the lasting way.

use std::process::Command;

use crate::cli::{GlobalArgs, ScheduleArgs};
use crate::exit::{Classify, ExitCode};
use crate::output::outln;
use crate::settings::{layers, BadInput, ConfigLocation};

pub fn run(
    _global: &GlobalArgs,
    args: ScheduleArgs,
    config: &ConfigLocation,
) -> anyhow::Result<()> {
    let unit = &args.unit;
    if unit.is_empty()
        || !unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(BadInput(format!(
            "{} {unit:?}: a unit name of letters, digits, '-', '_' or '.'",
            layers::named("unit")
        )))
        .classify(ExitCode::Usage);
    }
    if args.status {
        let out = systemctl(&[
            "list-timers",
            "--all",
            "--no-pager",
            &format!("{unit}.timer"),
        ])?;
        outln!("{}", out.trim_end());
        return Ok(());
    }
    if args.remove {
        // Stopping a transient unit removes it; a failed one is reset so its name is free.
        let _ = systemctl(&["stop", &format!("{unit}.timer"), &format!("{unit}.service")]);
        let _ = systemctl(&[
            "reset-failed",
            &format!("{unit}.timer"),
            &format!("{unit}.service"),
        ]);
        outln!("removed the transient timer {unit}.timer (if it existed)");
        return Ok(());
    }
    let every = crate::settings::DurationSetting::Every.parse(&args.every)?;
    let exe = std::env::current_exe()
        .map_err(|e| BadInput(format!("cannot find the agent's own path ({e})")))
        .classify(ExitCode::Internal)?;
    let secs = every.as_secs().to_string() + "s";
    let mut cmd = vec![
        format!("--unit={unit}"),
        format!("--on-active={secs}"),
        format!("--on-unit-active={secs}"),
        "--timer-property=AccuracySec=30s".to_owned(),
        format!(
            "--description=CMM check every {}",
            cmm_core::duration::show(every)
        ),
        format!("--setenv=CMM_CONFIG={}", config.path.display()),
        "--property=Type=oneshot".to_owned(),
        "--property=SuccessExitStatus=1".to_owned(),
        "--property=TimeoutStartSec=20min".to_owned(),
        "--property=KillMode=control-group".to_owned(),
    ];
    // The token and kubeconfig the packaged unit loads (LoadCredential=) are handed over the
    // same way, so a scheduled check sees what the timer's does.
    for (id, file) in [
        (
            cmm_central::secret::SYSTEMD_TOKEN_CREDENTIAL,
            TOKEN_CREDENTIAL_FILE,
        ),
        (
            cmm_installer::kube::KUBECONFIG_CREDENTIAL,
            KUBECONFIG_CREDENTIAL_FILE,
        ),
    ] {
        if std::path::Path::new(file).exists() {
            cmd.push(format!("--property=LoadCredential={id}:{file}"));
        }
    }
    cmd.extend([
        "--".to_owned(),
        exe.display().to_string(),
        "check".to_owned(),
        "--log-format".to_owned(),
        "json".to_owned(),
    ]);
    if args.repair.repair {
        cmd.push("--repair".into());
    }
    let run = Command::new("systemd-run")
        .args(&cmd)
        .output()
        .map_err(|e| {
            BadInput(format!(
                "cannot run systemd-run ({e}): is this a systemd host?"
            ))
        })
        .classify(ExitCode::Tool)?;
    if !run.status.success() {
        return Err(BadInput(format!(
            "systemd-run failed: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        )))
        .classify(ExitCode::Tool);
    }
    outln!(
        "scheduled: {unit}.timer runs `cmm-agent check{}` every {} (settings {}).\n\
         This transient timer does NOT survive a reboot: for a lasting one, \
         `systemctl enable --now cmm-agent-check.timer`. Remove it with `cmm-agent schedule --remove`.",
        if args.repair.repair { " --repair" } else { "" },
        cmm_core::duration::show(every),
        config.path.display()
    );
    Ok(())
}

/// Where the packaged unit loads the Grafana token and the kubeconfig from (systemd/cmm-agent-check.service).
const TOKEN_CREDENTIAL_FILE: &str = "/etc/cmm/grafana-token";
const KUBECONFIG_CREDENTIAL_FILE: &str = "/etc/cmm/kubeconfig";

fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| {
            BadInput(format!(
                "cannot run systemctl ({e}): is this a systemd host?"
            ))
        })
        .classify(ExitCode::Tool)?;
    if !out.status.success() {
        // Not a systemd host (or no bus): say so, never an empty answer with exit 0.
        return Err(BadInput(format!(
            "systemctl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
        .classify(ExitCode::Tool);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
