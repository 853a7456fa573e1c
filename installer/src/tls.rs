//! Where CMM's TLS material lives, and when it is (re)made. Gather (read the Secrets), decide
//! (pure: [`decide_cluster`], [`decide_grafana`]), act (write the Secret).
//!
//! - Central cluster, namespace of the central release: Secret `cmm-ca` (the CMM CA: tls.crt,
//!   tls.key; previous.crt while a CA rotation is under way) and Secret `cmm-grafana-client`
//!   (Grafana's client certificate: tls.crt, tls.key).
//! - Each monitored cluster: Secret `cmm-prometheus-tls` (see `cmm_core::naming`), mounted by
//!   the mutual-TLS proxy and used by the self-scrape.
//!
//! Nothing here logs or returns a key except inside the Secret objects it writes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cmm_core::naming::{GRAFANA_CLIENT_CN, PROMETHEUS_TLS_SECRET, PROMETHEUS_TLS_SERVER_NAME};
use cmm_pki::{expiry, inspect, inspect_bundle, verify, Ca, Leaf, San, Usage, LEAF_VALIDITY_DAYS};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde::Serialize;

use crate::kube::Connected;
use crate::{Error, Result};

pub use cmm_core::naming::{CA_SECRET, GRAFANA_CLIENT_SECRET};

/// The self-scrape's client name: the proxy of cluster `c` admits `cmm-self-c` only.
pub fn self_client_cn(cluster: &str) -> String {
    format!("cmm-self-{cluster}")
}

fn pki_err(what: &str) -> impl Fn(cmm_pki::Error) -> Error + '_ {
    move |e| Error::Tls {
        what: what.to_owned(),
        problem: e.to_string(),
    }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|s| !s.trim().is_empty())
}

fn secret(name: &str, kind: &str, data: &[(&str, &str)], rv: Option<String>) -> Secret {
    managed_secret(name, &[("cmm.dev/tls", kind)], data, rv)
}

/// An Opaque Secret the agent manages (its labels say so), with `extra` labels.
pub(crate) fn managed_secret(
    name: &str,
    extra: &[(&str, &str)],
    data: &[(&str, &str)],
    rv: Option<String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version: rv,
            labels: Some(
                [
                    ("app.kubernetes.io/managed-by", "cmm-agent"),
                    ("app.kubernetes.io/part-of", "cmm"),
                ]
                .iter()
                .chain(extra)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// What the central role holds: the CA that signs, the CAs clusters must trust, and Grafana's
/// client certificate.
pub struct CentralPki {
    pub ca: Ca,
    /// The current CA, then the previous one while it is still valid (a rotation's overlap).
    pub trust_pem: String,
    pub grafana: Leaf,
}

impl std::fmt::Debug for CentralPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentralPki").field("ca", &self.ca).finish()
    }
}

fn trust_of(ca: &Ca, previous: Option<&str>, now: SystemTime) -> String {
    let mut trust = ca.cert_pem().trim_end().to_owned();
    trust.push('\n');
    if let Some(prev) = previous {
        let live = inspect(prev, "the previous CA").is_ok_and(|i| i.not_after > now);
        if live {
            trust.push_str(prev.trim_end());
            trust.push('\n');
        }
    }
    trust
}

/// Read the central material; `None` when the CA does not exist yet.
pub async fn load_central(
    conn: &Connected,
    namespace: &str,
    now: SystemTime,
) -> Result<Option<CentralPki>> {
    let Some(ca_secret) = conn.secret(namespace, CA_SECRET).await? else {
        return Ok(None);
    };
    let what = format!("Secret {namespace}/{CA_SECRET} (context {})", conn.context);
    let data = ca_secret.data.unwrap_or_default();
    let (Some(cert), Some(key)) = (text(&data, "tls.crt"), text(&data, "tls.key")) else {
        return Err(Error::Tls {
            what,
            problem: "lacks tls.crt or tls.key: restore it from a backup, or delete it so \
                      `cmm-agent bootstrap --role central` makes a new CA (every cluster then \
                      needs `cmm-agent check --repair`)"
                .into(),
        });
    };
    let ca = Ca::load(&cert, &key).map_err(pki_err(&what))?;
    let trust_pem = trust_of(&ca, text(&data, "previous.crt").as_deref(), now);
    let gwhat = format!(
        "Secret {namespace}/{GRAFANA_CLIENT_SECRET} (context {})",
        conn.context
    );
    let grafana = conn
        .secret(namespace, GRAFANA_CLIENT_SECRET)
        .await?
        .and_then(|s| {
            let d = s.data.unwrap_or_default();
            Some(Leaf {
                cert_pem: text(&d, "tls.crt")?,
                key_pem: text(&d, "tls.key")?,
            })
        })
        .ok_or_else(|| Error::Tls {
            what: gwhat,
            problem: "is missing or incomplete: run `cmm-agent bootstrap --role central` (it \
                      issues Grafana's client certificate)"
                .into(),
        })?;
    Ok(Some(CentralPki {
        ca,
        trust_pem,
        grafana,
    }))
}

/// Why a certificate is (re)issued, or that it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum TlsAction {
    Keep { days_left: i64 },
    Issue { why: String },
}

/// Grafana's client certificate: keep it while the CA trusts it and it is outside the window.
pub fn decide_grafana(
    current: Option<&Leaf>,
    trust_pem: &str,
    now: SystemTime,
    renew_before: Duration,
) -> TlsAction {
    let Some(leaf) = current else {
        return TlsAction::Issue {
            why: "none yet".into(),
        };
    };
    // During a CA rotation Grafana keeps a certificate of the previous CA until its own renewal
    // window: clusters not yet repaired trust only that CA, and every one has until then to take
    // the new trust bundle (docs/security.md, "Rotation").
    leaf_action(
        &leaf.cert_pem,
        trust_pem,
        Usage::Client,
        &[],
        now,
        renew_before,
        Signer::AnyTrusted,
    )
}

/// Which CA a kept certificate may be signed by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// The CA that signs now: a cluster's certificates move to a new CA at once, together
    /// with the trust bundle its datasource gets in the same run.
    Current,
    /// Any CA of the trust bundle (the previous one during a rotation's overlap).
    AnyTrusted,
}

fn leaf_action(
    cert_pem: &str,
    trust_pem: &str,
    usage: Usage,
    sans: &[San],
    now: SystemTime,
    renew_before: Duration,
    signer: Signer,
) -> TlsAction {
    let info = match inspect(cert_pem, "the certificate") {
        Ok(i) => i,
        Err(e) => return TlsAction::Issue { why: e.to_string() },
    };
    let current_ca = inspect_bundle(trust_pem, "trust")
        .ok()
        .and_then(|b| b.into_iter().next())
        .map(|c| c.subject)
        .unwrap_or_default();
    if signer == Signer::Current && info.issuer != current_ca {
        return TlsAction::Issue {
            why: format!(
                "signed by {:?}, not the current CA {current_ca:?}",
                info.issuer
            ),
        };
    }
    let e = expiry(&info, now, renew_before);
    if e.renew {
        return TlsAction::Issue {
            why: if e.expired {
                "expired".into()
            } else {
                format!(
                    "expires in {} day(s), inside the renewal window",
                    e.days_left
                )
            },
        };
    }
    if let Err(err) = verify(cert_pem, trust_pem, usage, None, now) {
        return TlsAction::Issue {
            why: err.to_string(),
        };
    }
    let missing: Vec<String> = sans
        .iter()
        .filter(|s| !info.sans.contains(s))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return TlsAction::Issue {
            why: format!("does not cover {}", missing.join(", ")),
        };
    }
    TlsAction::Keep {
        days_left: e.days_left,
    }
}

/// How long before the CA's end a new CA takes over: a leaf lives [`LEAF_VALIDITY_DAYS`], so
/// every certificate the old CA signed expires before the old CA does, and `renew_before` on top.
pub fn ca_rotate_before(renew_before: Duration) -> Duration {
    cmm_pki::clock::days(LEAF_VALIDITY_DAYS as u64) + renew_before
}

/// Pure: keep the CA, or rotate it (it is inside [`ca_rotate_before`] of its end, or unreadable).
pub fn decide_ca(cert_pem: &str, now: SystemTime, renew_before: Duration) -> TlsAction {
    match inspect(cert_pem, "the CMM CA") {
        Err(e) => TlsAction::Issue { why: e.to_string() },
        Ok(info) => {
            let e = expiry(&info, now, ca_rotate_before(renew_before));
            if e.renew {
                TlsAction::Issue {
                    why: format!(
                        "{} day(s) left, inside the rotation window of {} days",
                        e.days_left,
                        ca_rotate_before(renew_before).as_secs() / cmm_pki::clock::day_secs()
                    ),
                }
            } else {
                TlsAction::Keep {
                    days_left: e.days_left,
                }
            }
        }
    }
}

/// Make or renew the central material (role central). Returns what was done to each part.
pub async fn ensure_central(
    conn: &Connected,
    namespace: &str,
    now: SystemTime,
    renew_before: Duration,
) -> Result<(CentralPki, Vec<(String, TlsAction)>)> {
    let mut actions = Vec::new();
    let stored = conn.secret(namespace, CA_SECRET).await?;
    let exists = stored.is_some();
    let rv = stored
        .as_ref()
        .and_then(|s| s.metadata.resource_version.clone());
    let data = stored.and_then(|s| s.data).unwrap_or_default();
    let what = format!("Secret {namespace}/{CA_SECRET}");
    let (ca, previous, changed) = if !exists {
        let ca = Ca::generate(now).map_err(pki_err("making the CMM CA"))?;
        actions.push((
            format!("Secret {CA_SECRET}"),
            TlsAction::Issue {
                why: "none yet".into(),
            },
        ));
        (ca, None, true)
    } else {
        let (Some(cert), Some(key)) = (text(&data, "tls.crt"), text(&data, "tls.key")) else {
            return Err(Error::Tls {
                what,
                problem: "lacks tls.crt or tls.key: restore it from a backup, or delete it to \
                          make a new CA"
                    .into(),
            });
        };
        let ca = Ca::load(&cert, &key).map_err(pki_err(&what))?;
        match decide_ca(&cert, now, renew_before) {
            TlsAction::Keep { days_left } => {
                actions.push((format!("Secret {CA_SECRET}"), TlsAction::Keep { days_left }));
                (ca, text(&data, "previous.crt"), false)
            }
            TlsAction::Issue { why } => {
                // The new CA signs from now on; the old one stays trusted (previous.crt) until
                // it expires, which is after every certificate it signed.
                let next = Ca::generate(now).map_err(pki_err("making the next CMM CA"))?;
                actions.push((
                    format!("Secret {CA_SECRET}"),
                    TlsAction::Issue {
                        why: format!("rotated: {why}; the old CA stays trusted until it expires"),
                    },
                ));
                (next, Some(cert), true)
            }
        }
    };
    let trust_pem = trust_of(&ca, previous.as_deref(), now);
    // trust.crt: the CAs to trust as one bundle, for Grafana's environment on the envsubst
    // route (central_monitor.yaml); kept equal to what clusters are given. One write for a new
    // CA, a rotation, or a bundle that changed (the previous CA expired, or an older Secret).
    let stale_trust = text(&data, "trust.crt").as_deref().map(str::trim) != Some(trust_pem.trim());
    if changed || stale_trust {
        let mut fields = vec![("tls.crt", ca.cert_pem()), ("tls.key", ca.key_pem())];
        if let Some(p) = previous.as_deref() {
            fields.push(("previous.crt", p));
        }
        fields.push(("trust.crt", &trust_pem));
        conn.write_secret(namespace, &secret(CA_SECRET, "ca", &fields, rv))
            .await?;
    }

    let existing = conn.secret(namespace, GRAFANA_CLIENT_SECRET).await?;
    let rv = existing
        .as_ref()
        .and_then(|s| s.metadata.resource_version.clone());
    let current = existing.and_then(|s| {
        let d = s.data.unwrap_or_default();
        Some(Leaf {
            cert_pem: text(&d, "tls.crt")?,
            key_pem: text(&d, "tls.key")?,
        })
    });
    let action = decide_grafana(current.as_ref(), &trust_pem, now, renew_before);
    let grafana = match (&action, current) {
        (TlsAction::Keep { .. }, Some(leaf)) => leaf,
        _ => {
            let leaf = ca
                .issue_client(GRAFANA_CLIENT_CN, now)
                .map_err(pki_err("issuing Grafana's client certificate"))?;
            conn.write_secret(
                namespace,
                &secret(
                    GRAFANA_CLIENT_SECRET,
                    "client",
                    &[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)],
                    rv,
                ),
            )
            .await?;
            leaf
        }
    };
    actions.push((format!("Secret {GRAFANA_CLIENT_SECRET}"), action));
    Ok((
        CentralPki {
            ca,
            trust_pem,
            grafana,
        },
        actions,
    ))
}

/// When the material the central consumers read at start last changed: the later issue of
/// Grafana's client certificate and of the CA that signs (a rotation puts a new CA in the trust
/// bundle). A certificate starts [`cmm_pki::BACKDATE_SECS`] before it was made.
pub fn central_changed_at(pki: &CentralPki) -> Option<SystemTime> {
    let issued = |pem: &str| {
        inspect(pem, "certificate")
            .ok()
            .map(|i| i.not_before + Duration::from_secs(cmm_pki::BACKDATE_SECS as u64))
    };
    issued(&pki.grafana.cert_pem).max(issued(pki.ca.cert_pem()))
}

/// Pure: the central check's finding on the CA and Grafana's client certificate. Unlike a
/// cluster's view of them, the central side renews them itself (`check --role central
/// --repair`).
pub fn judge_central_material(
    pki: &CentralPki,
    now: SystemTime,
    renew_before: Duration,
) -> cmm_core::finding::Finding {
    use cmm_core::finding::{Finding, RepairKind, Stage};
    let subject = "the CMM CA and Grafana's client certificate";
    let ca = decide_ca(pki.ca.cert_pem(), now, renew_before);
    let grafana = decide_grafana(Some(&pki.grafana), &pki.trust_pem, now, renew_before);
    let expired = inspect(&pki.grafana.cert_pem, "Grafana's client certificate")
        .map_or(true, |i| i.not_after <= now);
    let mut f = match (&ca, &grafana) {
        (TlsAction::Keep { .. }, TlsAction::Keep { .. }) => {
            Finding::ok(Stage::Endpoint, "tls.central", subject)
        }
        _ if expired => Finding::failed(Stage::Endpoint, "tls.central", subject),
        _ => Finding::warn(Stage::Endpoint, "tls.central", subject),
    };
    for (what, a) in [("CA", &ca), ("Grafana's client certificate", &grafana)] {
        f.evidence.push(match a {
            TlsAction::Keep { days_left } => format!("{what}: {days_left} day(s) left"),
            TlsAction::Issue { why } => format!("{what}: to renew: {why}"),
        });
    }
    if inspect_bundle(&pki.trust_pem, "trust").is_ok_and(|b| b.len() > 1) {
        f.evidence.push(
            "a CA rotation is under way: the previous CA stays trusted until it expires; each \
             cluster moves on its next `check --repair`"
                .into(),
        );
    }
    if f.severity != cmm_core::finding::Severity::Ok {
        f = f.repair(
            RepairKind::RenewCertificates,
            "`cmm-agent check --role central --repair` renews them and updates every consumer",
        );
    }
    f
}

/// The names a cluster's server certificate must carry: what the central Grafana dials (the
/// advertised addresses) and the self-scrape's server name.
pub fn server_sans(addresses: &[String]) -> Result<Vec<San>> {
    let mut out = vec![San::Dns(PROMETHEUS_TLS_SERVER_NAME.to_owned())];
    for a in addresses {
        let san = San::parse(a).map_err(|e| Error::Tls {
            what: format!("address {a:?}"),
            problem: e.to_string(),
        })?;
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// What the cluster's Secret holds now, read back for a decision (no key leaves this module).
#[derive(Debug, Clone, Default)]
pub struct ClusterTlsState {
    pub server_cert: Option<String>,
    pub client_cert: Option<String>,
    pub trust: Option<String>,
    pub has_keys: bool,
    pub resource_version: Option<String>,
}

/// `secret`: the cluster's [`PROMETHEUS_TLS_SECRET`], or the push receiver's
/// (`cmm_core::naming::RECEIVER_TLS_SECRET`), which holds the same kinds of certificate.
pub async fn read_cluster(
    conn: &Connected,
    namespace: &str,
    secret_name: &str,
) -> Result<ClusterTlsState> {
    let Some(s) = conn.secret(namespace, secret_name).await? else {
        return Ok(ClusterTlsState::default());
    };
    let d = s.data.unwrap_or_default();
    Ok(ClusterTlsState {
        server_cert: text(&d, "tls.crt"),
        client_cert: text(&d, "client.crt"),
        trust: text(&d, "ca.crt"),
        has_keys: text(&d, "tls.key").is_some() && text(&d, "client.key").is_some(),
        resource_version: s.metadata.resource_version,
    })
}

/// Pure: keep the cluster's Secret, or issue it anew (server and self-scrape certificates
/// together, with the current trust bundle).
pub fn decide_cluster(
    state: &ClusterTlsState,
    trust_pem: &str,
    sans: &[San],
    now: SystemTime,
    renew_before: Duration,
) -> TlsAction {
    let (Some(server), Some(client), Some(trust)) =
        (&state.server_cert, &state.client_cert, &state.trust)
    else {
        return TlsAction::Issue {
            why: "none yet".into(),
        };
    };
    if !state.has_keys {
        return TlsAction::Issue {
            why: "a key is missing".into(),
        };
    }
    if trust.trim() != trust_pem.trim() {
        return TlsAction::Issue {
            why: "the trusted CAs changed (a CA rotation)".into(),
        };
    }
    let s = leaf_action(
        server,
        trust_pem,
        Usage::Server,
        sans,
        now,
        renew_before,
        Signer::Current,
    );
    if let TlsAction::Issue { why } = s {
        return TlsAction::Issue {
            why: format!("server certificate {why}"),
        };
    }
    match leaf_action(
        client,
        trust_pem,
        Usage::Client,
        &[],
        now,
        renew_before,
        Signer::Current,
    ) {
        TlsAction::Issue { why } => TlsAction::Issue {
            why: format!("self-scrape certificate {why}"),
        },
        keep => match (s, keep) {
            (TlsAction::Keep { days_left: a }, TlsAction::Keep { days_left: b }) => {
                TlsAction::Keep {
                    days_left: a.min(b),
                }
            }
            (_, other) => other,
        },
    }
}

/// Gather, decide and act for one cluster's Secret.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_cluster(
    conn: &Connected,
    namespace: &str,
    secret_name: &str,
    cluster: &str,
    central: &CentralPki,
    sans: &[San],
    now: SystemTime,
    renew_before: Duration,
) -> Result<TlsAction> {
    let state = read_cluster(conn, namespace, secret_name).await?;
    let action = decide_cluster(&state, &central.trust_pem, sans, now, renew_before);
    if let TlsAction::Issue { .. } = action {
        let what = format!("issuing the certificates of {cluster}");
        let server = central
            .ca
            .issue_server(cluster, sans, now)
            .map_err(pki_err(&what))?;
        let client = central
            .ca
            .issue_client(&self_client_cn(cluster), now)
            .map_err(pki_err(&what))?;
        conn.write_secret(
            namespace,
            &secret(
                secret_name,
                "server",
                &[
                    ("tls.crt", &server.cert_pem),
                    ("tls.key", &server.key_pem),
                    ("ca.crt", &central.trust_pem),
                    ("client.crt", &client.cert_pem),
                    ("client.key", &client.key_pem),
                ],
                state.resource_version,
            ),
        )
        .await?;
    }
    Ok(action)
}

/// One certificate's remaining life, for `check` (no key involved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifetime {
    pub what: String,
    pub days_left: i64,
    pub renew: bool,
    pub expired: bool,
}

/// The remaining life of each certificate in a cluster's Secret; `Err` names what cannot be
/// read.
pub fn lifetimes(
    state: &ClusterTlsState,
    now: SystemTime,
    renew_before: Duration,
) -> std::result::Result<Vec<Lifetime>, String> {
    let mut out = Vec::new();
    for (what, pem) in [
        ("server certificate", &state.server_cert),
        ("self-scrape certificate", &state.client_cert),
    ] {
        let pem = pem.as_deref().ok_or(format!("no {what}"))?;
        let info = inspect(pem, what).map_err(|e| e.to_string())?;
        let e = expiry(&info, now, renew_before);
        out.push(Lifetime {
            what: what.to_owned(),
            days_left: e.days_left,
            renew: e.renew,
            expired: e.expired,
        });
    }
    Ok(out)
}

/// The cluster's own self-scrape identity and trust bundle, for the agent's probes when the
/// central material is not at hand (the proxy admits `cmm-self-<cluster>`).
pub async fn self_identity(conn: &Connected, namespace: &str) -> Result<Option<(Leaf, String)>> {
    let Some(s) = conn.secret(namespace, PROMETHEUS_TLS_SECRET).await? else {
        return Ok(None);
    };
    let d = s.data.unwrap_or_default();
    Ok(
        match (
            text(&d, "client.crt"),
            text(&d, "client.key"),
            text(&d, "ca.crt"),
        ) {
            (Some(cert_pem), Some(key_pem), Some(trust)) => {
                Some((Leaf { cert_pem, key_pem }, trust))
            }
            _ => None,
        },
    )
}

/// What the central material, seen from a cluster, has to say: the CA's and Grafana's client
/// certificate's remaining life (only the central role renews them).
pub struct CentralView<'a> {
    pub pki: &'a CentralPki,
    /// The names this cluster's server certificate must carry.
    pub sans: &'a [San],
}

/// Pure: the findings of `check` about this cluster's TLS. `state` is the cluster's Secret;
/// `central` is `None` when the central cluster's context is not set (then only the remaining
/// life is judged, and renewal cannot be done from here).
pub fn judge(
    state: &ClusterTlsState,
    central: Option<&CentralView<'_>>,
    insecure: bool,
    now: SystemTime,
    renew_before: Duration,
) -> Vec<cmm_core::finding::Finding> {
    use cmm_core::finding::{Finding, RepairKind, Stage};
    let st = Stage::Endpoint;
    let subject = format!("Secret {PROMETHEUS_TLS_SECRET}");
    if insecure {
        return vec![Finding::ok(st, "tls.insecure", "the Prometheus endpoint").with(
            "INSECURE by choice (insecure-plain-http): plain HTTP, no client certificate asked; \
             whoever reaches the NodePort reads every metric (docs/security.md)",
        )];
    }
    let renew = |f: Finding| match central {
        Some(_) => f.repair(
            RepairKind::RenewCertificates,
            "issue them anew from the CMM CA (`cmm-agent check --repair`)",
        ),
        None => f.repair(
            RepairKind::Manual,
            "set central-context (the central cluster's kubeconfig context) so `check --repair` \
             can renew them",
        ),
    };
    let mut out = Vec::new();
    if state.server_cert.is_none() && state.client_cert.is_none() {
        out.push(renew(
            Finding::failed(st, "tls.certificates", &subject)
                .with("missing: the mutual-TLS proxy cannot start without it"),
        ));
        return out;
    }
    let lives = match lifetimes(state, now, renew_before) {
        Ok(l) => l,
        Err(e) => {
            out.push(renew(
                Finding::failed(st, "tls.certificates", &subject).with(format!("unreadable: {e}")),
            ));
            return out;
        }
    };
    let evidence: Vec<String> = lives
        .iter()
        .map(|l| format!("{}: {} day(s) left", l.what, l.days_left))
        .collect();
    let decision =
        central.map(|c| decide_cluster(state, &c.pki.trust_pem, c.sans, now, renew_before));
    let mut f = if lives.iter().any(|l| l.expired) {
        renew(Finding::failed(st, "tls.certificates", &subject).with("expired: Grafana is refused"))
    } else if let Some(TlsAction::Issue { why }) = &decision {
        renew(Finding::warn(st, "tls.certificates", &subject).with(format!("to renew: {why}")))
    } else if lives.iter().any(|l| l.renew) {
        renew(
            Finding::warn(st, "tls.certificates", &subject).with(format!(
                "inside the renewal window ({} days)",
                renew_before.as_secs() / cmm_pki::clock::day_secs()
            )),
        )
    } else {
        Finding::ok(st, "tls.certificates", &subject)
    };
    f.evidence.extend(evidence);
    out.push(f);

    if let Some(c) = central {
        let central_fix = "run `cmm-agent bootstrap --role central` where the central Grafana is \
                           installed: it renews the CA and Grafana's client certificate";
        let mut f = match (
            decide_ca(c.pki.ca.cert_pem(), now, renew_before),
            decide_grafana(Some(&c.pki.grafana), &c.pki.trust_pem, now, renew_before),
        ) {
            (TlsAction::Keep { days_left: ca }, TlsAction::Keep { days_left: g }) => Finding::ok(
                st,
                "tls.central",
                "the CMM CA and Grafana's client certificate",
            )
            .with(format!("CA: {ca} day(s) left"))
            .with(format!("Grafana's client certificate: {g} day(s) left")),
            (ca, g) => {
                let mut f = Finding::warn(
                    st,
                    "tls.central",
                    "the CMM CA and Grafana's client certificate",
                )
                .repair(RepairKind::Manual, central_fix);
                for (what, a) in [("CA", ca), ("Grafana's client certificate", g)] {
                    f.evidence.push(match a {
                        TlsAction::Keep { days_left } => format!("{what}: {days_left} day(s) left"),
                        TlsAction::Issue { why } => format!("{what}: to renew: {why}"),
                    });
                }
                f
            }
        };
        if inspect_bundle(&c.pki.trust_pem, "trust").is_ok_and(|b| b.len() > 1) {
            f.evidence
                .push("a CA rotation is under way: the previous CA is still trusted".into());
        }
        out.push(f);
    }
    out
}
