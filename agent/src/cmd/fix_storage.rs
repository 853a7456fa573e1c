//! `cmm-agent fix-storage`: the seed's recipe for volumes stuck in Terminating, made safe
//! (`ops::storage`). Dry run by default; `--yes` acts.

use cmm_installer::kube::connect;

use crate::cli::{FixStorageArgs, GlobalArgs};
use crate::exit::{installer_class, Classify, ExitCode};
use crate::ops::storage::{carry_out, StorageReport};
use crate::render;
use crate::settings::{BadInput, FixStorageSettings};

pub async fn run(global: &GlobalArgs, args: FixStorageArgs) -> anyhow::Result<()> {
    let s = FixStorageSettings::resolve(&args)?;
    let conn = connect(&s.kube).await.classify_by(installer_class)?;
    conn.server_version().await.classify_by(installer_class)?;

    let plan = conn
        .stuck_storage(&s.namespace)
        .await
        .classify_by(installer_class)?;
    let mut report = StorageReport {
        namespace: s.namespace.clone(),
        dry_run: !s.yes,
        plan: plan.clone(),
        done: Vec::new(),
        not_done: Vec::new(),
    };
    if s.yes {
        carry_out(&conn, &plan, s.claim_wait, &mut report)
            .await
            .classify_by(installer_class)?;
    }
    render::emit(global.output, &report)?;
    if !report.not_done.is_empty() {
        return Err(BadInput(format!(
            "{} action(s) were not carried out (see above); nothing unsafe was done",
            report.not_done.len()
        )))
        .classify(ExitCode::Preflight);
    }
    Ok(())
}
