//! `cmm-agent register`: make the central Grafana watch this cluster, as the topology says
//! (`ops::registration`): find the Prometheus endpoint, check it answers with `cluster=<name>`
//! series, write the datasource or the cluster's place in the shared rules, and report
//! Grafana's own health check.

use anyhow::Context;

use crate::cli::{GlobalArgs, RegisterArgs};
use crate::exit::{installer_class, Classify};
use crate::ops::registration::{self, Registration, Target};
use crate::ops::{central, endpoint};
use crate::render;
use crate::settings::RegisterSettings;

pub async fn run(global: &GlobalArgs, args: RegisterArgs) -> anyhow::Result<()> {
    let s = RegisterSettings::resolve(&args)?;
    let mut reg = Registration::new(&s.grafana, &s.prometheus)?;
    let pki = match s.central.context {
        Some(_) => Some(central::central_pki(&s.central).await?),
        None => None,
    };
    if let Some(pki) = &pki {
        reg.prometheus.use_central(pki);
    }
    let target = Target {
        wiring: &s.wiring,
        central: &s.central,
        pki: pki.as_ref(),
    };
    let find = async || match &s.prometheus.url {
        Some(url) => Ok(endpoint::flag_endpoint(url)),
        None => {
            let kube = cmm_installer::kube::connect(&s.kube)
                .await
                .classify_by(installer_class)
                .context(
                    "finding the Prometheus endpoint in Kubernetes (or pass --prometheus-url)",
                )?;
            endpoint::discover(&kube, &s.namespace, &s.prometheus).await
        }
    };
    let done = registration::register(&reg, &s.cluster, &target, find).await?;
    render::emit(global.output, &done)?;
    done.verdict()
}
