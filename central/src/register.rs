//! Register a cluster in the central Grafana (datasource, health, alert rules) and deregister it.
//! [`decide`] is the pure part: given what Grafana holds, what to send.

use serde::Serialize;
use serde_json::{json, Value};

use cmm_core::datasource::prometheus_datasource;
use cmm_core::naming::DATASOURCE_TLS_IDENTITY_KEY;
use cmm_core::ClusterName;

use crate::error::{Error, Result};
use crate::grafana::{DataSource, DatasourceHealth, GrafanaClient};
use crate::prometheus::{ProbeReport, PrometheusProbe, PrometheusTarget};
use crate::retry::RetryPolicy;
use crate::rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RulesMode {
    /// Provisioned: shown as such and not editable in Grafana's UI (the default, so a UI edit
    /// cannot silently diverge from what the next registration writes back).
    Provisioned,
    /// Sent with `X-Disable-Provenance`: editable in the UI; the next registration overwrites
    /// the edits.
    Editable,
    /// No rules.
    Skip,
}

#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub cluster: ClusterName,
    pub prometheus: PrometheusTarget,
    /// Take over a datasource of the same name that CMM did not make.
    pub force: bool,
    pub rules: RulesMode,
    /// Check `/-/ready` and the cluster label before touching Grafana.
    pub check_prometheus: bool,
    pub prometheus_retry: RetryPolicy,
    /// How long a ready Prometheus may have no `up` series (no first scrape yet) before the
    /// registration fails.
    pub first_scrape_wait: std::time::Duration,
}

/// What to do with the cluster's datasource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DatasourceAction {
    Create,
    Update {
        version: i64,
    },
    Unchanged,
    /// `--force`: delete the foreign datasource holding the name, then create ours.
    Replace {
        foreign_uid: String,
    },
}

/// The datasource body: the shared shape from cmm-core plus auth/TLS settings. Secrets go into
/// `secureJsonData`, which Grafana encrypts and never returns.
pub fn desired_datasource(cluster: &ClusterName, target: &PrometheusTarget) -> Result<Value> {
    let url = target.parsed_url()?;
    let mut ds = prometheus_datasource(cluster, url.as_str().trim_end_matches('/'));
    let mut secure = serde_json::Map::new();
    if let Some((user, password)) = &target.basic_auth {
        if user.is_empty() {
            return Err(Error::invalid(
                "prometheus-user",
                "is empty: give the basic-auth user, or leave out basic auth",
            ));
        }
        ds["basicAuth"] = json!(true);
        ds["basicAuthUser"] = json!(user);
        secure.insert("basicAuthPassword".into(), json!(password.expose()));
    }
    if let Some(pem) = &target.ca_pem {
        ds["jsonData"]["tlsAuthWithCACert"] = json!(true);
        secure.insert("tlsCACert".into(), json!(pem));
    }
    if target.tls_skip_verify {
        ds["jsonData"]["tlsSkipVerify"] = json!(true);
    }
    // Grafana presents a client certificate only with tlsAuth, taking it and its key from
    // secureJsonData (pkg/services/datasources/service/datasource.go, dsTLSOptions).
    if let Some(id) = &target.client {
        ds["jsonData"]["tlsAuth"] = json!(true);
        secure.insert("tlsClientCert".into(), json!(id.cert_pem));
        secure.insert("tlsClientKey".into(), json!(id.key.expose()));
        // jsonData is stored and returned as given (Grafana keeps it as a free-form JSON blob,
        // pkg/services/datasources/models.go `JsonData *simplejson.Json`), so a fingerprint
        // there says which certificate the hidden secureJsonData holds.
        ds["jsonData"][DATASOURCE_TLS_IDENTITY_KEY] = json!(tls_identity(
            &id.cert_pem,
            target.ca_pem.as_deref().unwrap_or("")
        )?);
    }
    if !secure.is_empty() {
        ds["secureJsonData"] = Value::Object(secure);
    }
    Ok(ds)
}

/// `client=<sha256>;ca=<sha256>[,<sha256>]`: which client certificate and CAs a datasource was
/// given. Certificates are public; keys never enter it.
pub fn tls_identity(client_cert_pem: &str, trust_pem: &str) -> Result<String> {
    fn print(pem: &str, field: &'static str) -> Result<String> {
        cmm_pki::fingerprint(pem, field)
            .map_err(|e| Error::invalid(field, format!("{e}: give PEM certificates")))
    }
    let ca = if trust_pem.trim().is_empty() {
        "system".to_owned()
    } else {
        print(trust_pem, "prometheus-ca-file")?
    };
    Ok(format!(
        "client={};ca={ca}",
        print(client_cert_pem, "client certificate")?
    ))
}

/// Whether `current` already shows what `desired` sets, leaving out the secrets (which
/// Grafana never returns; the TLS identity fingerprint in jsonData stands for them).
pub fn settings_match(desired: &Value, current: &DataSource) -> bool {
    let json_ok = desired["jsonData"]
        .as_object()
        .map(|want| {
            want.iter()
                .all(|(k, v)| current.json_data.get(k) == Some(v))
        })
        .unwrap_or(true);
    current.kind == desired["type"]
        && current.url == desired["url"]
        && current.access == desired["access"]
        && current.name == desired["name"]
        && current.basic_auth == desired["basicAuth"].as_bool().unwrap_or(false)
        && json_ok
}

/// Whether `current` already is `desired`. A desired secret cannot be compared (Grafana never
/// returns one), so a body carrying secrets always counts as changed.
pub fn matches(desired: &Value, current: &DataSource) -> bool {
    desired.get("secureJsonData").is_none() && settings_match(desired, current)
}

/// Decide from Grafana's state (looked up by CMM's uid and by the cluster's name).
pub fn decide(
    cluster: &ClusterName,
    desired: &Value,
    by_uid: Option<&DataSource>,
    by_name: Option<&DataSource>,
    force: bool,
) -> Result<DatasourceAction> {
    let uid = cluster.datasource_uid();
    let foreign = by_name.filter(|d| d.uid != uid);
    if let Some(f) = foreign {
        if !force {
            return Err(Error::GrafanaConflict {
                what: format!(
                    "Grafana already has a datasource named {:?} (uid {}, url {}) that CMM did not \
                     make (CMM's is uid {uid})",
                    f.name, f.uid, f.url
                ),
                fix: "rename or delete it in Grafana, or re-run with the `force` setting (--force) to replace it \
                      (dashboards that point at its uid lose their datasource)"
                    .into(),
            });
        }
        if f.read_only {
            return Err(read_only_conflict(f));
        }
        return match by_uid {
            // Ours exists under another name and the name is taken: drop the foreign one, then
            // our update can take the name.
            Some(ours) => {
                if ours.read_only {
                    return Err(read_only_conflict(ours));
                }
                Ok(DatasourceAction::Replace {
                    foreign_uid: f.uid.clone(),
                })
            }
            None => Ok(DatasourceAction::Replace {
                foreign_uid: f.uid.clone(),
            }),
        };
    }
    match by_uid {
        None => Ok(DatasourceAction::Create),
        Some(ours) if matches(desired, ours) => Ok(DatasourceAction::Unchanged),
        Some(ours) if ours.read_only => Err(read_only_conflict(ours)),
        Some(ours) => Ok(DatasourceAction::Update {
            version: ours.version,
        }),
    }
}

fn read_only_conflict(d: &DataSource) -> Error {
    Error::GrafanaConflict {
        what: format!(
            "datasource {} (uid {}) is provisioned from a file in the central Grafana's values and \
             differs from what this registration would write (url {})",
            d.name, d.uid, d.url
        ),
        fix: "change it in the central values (grafana.additionalDataSources) and re-deploy, or \
              remove it there so CMM can manage it through the API"
            .into(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RulesReport {
    pub folder_uid: String,
    pub group: String,
    pub rules: Vec<String>,
    pub mode: RulesMode,
    pub folder_created: bool,
    /// Whether the group was written; false when Grafana already held exactly these rules.
    pub changed: bool,
    /// The fleet rule (CmmFleetClusterMissing) after this registration.
    pub fleet: FleetReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterReport {
    pub cluster: String,
    pub grafana: String,
    pub prometheus_url: String,
    pub prometheus: Option<ProbeReport>,
    pub datasource_uid: String,
    pub datasource: DatasourceAction,
    /// Grafana's own check through the datasource; `ok: false` means the central Grafana does
    /// not reach the cluster's Prometheus although the datasource is registered.
    pub health: DatasourceHealth,
    pub rules: Option<RulesReport>,
}

/// Register: probe Prometheus, upsert the datasource, provision the rules, then ask Grafana
/// for the datasource's health. An unhealthy datasource is reported, not an error: the caller
/// decides the exit (the objects were written and a re-run after fixing the network is enough).
pub async fn register(grafana: &GrafanaClient, req: &RegisterRequest) -> Result<RegisterReport> {
    let cluster = &req.cluster;
    let desired = desired_datasource(cluster, &req.prometheus)?;
    let prometheus = if req.check_prometheus {
        let probe = PrometheusProbe::new(req.prometheus.clone(), req.prometheus_retry)?;
        Some(probe.check_within(cluster, req.first_scrape_wait).await?)
    } else {
        None
    };

    let uid = cluster.datasource_uid();
    let action = upsert_datasource(grafana, cluster, &desired, req.force).await?;

    let rules = match req.rules {
        RulesMode::Skip => None,
        mode => Some(provision_rules(grafana, cluster, mode).await?),
    };

    let health = grafana.datasource_health(&uid).await?;
    Ok(RegisterReport {
        cluster: cluster.to_string(),
        grafana: grafana.base_url().to_string(),
        prometheus_url: desired["url"].as_str().unwrap_or("").to_owned(),
        prometheus,
        datasource_uid: uid,
        datasource: action,
        health,
        rules,
    })
}

async fn upsert_datasource(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
    desired: &Value,
    force: bool,
) -> Result<DatasourceAction> {
    let uid = cluster.datasource_uid();
    // Two rounds: a create can lose a race with another registrar (409); re-read and decide again.
    for _ in 0..2 {
        let by_uid = grafana.datasource_by_uid(&uid).await?;
        let by_name = grafana
            .datasource_by_name(cluster.datasource_name())
            .await?;
        let action = decide(cluster, desired, by_uid.as_ref(), by_name.as_ref(), force)?;
        match &action {
            DatasourceAction::Unchanged => {}
            DatasourceAction::Create => {
                if grafana.create_datasource(desired).await?.is_none() {
                    continue;
                }
            }
            DatasourceAction::Update { version } => {
                let mut body = desired.clone();
                body["version"] = json!(version);
                grafana.update_datasource(&uid, &body).await?;
            }
            DatasourceAction::Replace { foreign_uid } => {
                tracing::warn!(foreign_uid = %foreign_uid, "force: deleting the datasource that holds the cluster's name");
                grafana.delete_datasource(foreign_uid).await?;
                match by_uid {
                    Some(ours) => {
                        let mut body = desired.clone();
                        body["version"] = json!(ours.version);
                        grafana.update_datasource(&uid, &body).await?;
                    }
                    None => {
                        if grafana.create_datasource(desired).await?.is_none() {
                            continue;
                        }
                    }
                }
            }
        }
        return Ok(action);
    }
    Err(Error::GrafanaConflict {
        what: format!("datasource {uid} kept conflicting while being created"),
        fix: "another registration of the same cluster is running; let it finish and re-run".into(),
    })
}

async fn provision_rules(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
    mode: RulesMode,
) -> Result<RulesReport> {
    let folder = rules::folder_uid(cluster);
    let folder_created = grafana
        .ensure_folder(&folder, &rules::folder_title(cluster))
        .await?;
    let body = rules::render(cluster, grafana.base_url().as_str());
    let editable = mode == RulesMode::Editable;
    let stored = if folder_created {
        None
    } else {
        grafana.rule_group(&folder, rules::GROUP).await?
    };
    let changed = match &stored {
        None => true,
        Some(s) => {
            let stored_editable = grafana.group_editable(s).await?;
            !rules::stored_matches(&body, s, editable, stored_editable)
        }
    };
    if changed {
        grafana
            .put_rule_group(&folder, rules::GROUP, &body, editable)
            .await?;
    }
    let mut fleet = provision_fleet(grafana, editable, None).await?;
    // Two registrations at the same moment each rebuild the fleet rule from what they read; the
    // later write may drop the other. Read it back after a short random pause and write again
    // while this cluster is missing; what a slower racer still undoes, the central check
    // (`check --role central --repair`) puts right.
    for _ in 1..SETTLE_ATTEMPTS {
        settle_pause().await;
        let counted = grafana
            .rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP)
            .await?
            .map(|g| rules::fleet_members(&g))
            .unwrap_or_default();
        if counted.contains(cluster) || !fleet.vanished.is_empty() {
            break;
        }
        fleet = provision_fleet(grafana, editable, None).await?;
    }
    Ok(RulesReport {
        folder_uid: folder,
        group: rules::GROUP.to_owned(),
        rules: body["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["title"].as_str().map(str::to_owned))
            .collect(),
        mode,
        folder_created,
        changed,
        fleet,
    })
}

/// Rebuild the fleet rule: the clusters it counted before, plus every CMM datasource Grafana
/// holds now (this cluster included), less the one being deregistered. A cluster leaves the
/// count only through `deregister`. When a counted cluster's datasource was removed any other
/// way, the rule is left as it is: Grafana refuses to store a rule querying a datasource that
/// does not exist, and the stored one keeps failing on it, which is what pages. Two
/// registrations racing may each miss the other; the next registration puts it right.
async fn provision_fleet(
    grafana: &GrafanaClient,
    editable: bool,
    leaving: Option<&ClusterName>,
) -> Result<FleetReport> {
    let stored = grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP)
        .await?;
    let present = rules::registered_clusters(&grafana.list_datasources().await?);
    let before = stored
        .as_ref()
        .map(rules::fleet_members)
        .unwrap_or_default();
    let vanished: Vec<String> = before
        .iter()
        .filter(|c| Some(*c) != leaving && !present.contains(c))
        .map(|c| c.to_string())
        .collect();
    if !vanished.is_empty() {
        return Ok(FleetReport {
            clusters: before.iter().map(|c| c.to_string()).collect(),
            vanished,
        });
    }
    let mut clusters = present;
    clusters.extend(before);
    clusters.retain(|c| Some(c) != leaving);
    clusters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    clusters.dedup_by(|a, b| a.as_str() == b.as_str());
    let names: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    match rules::render_fleet(&clusters, grafana.base_url().as_str()) {
        Some(body) => {
            put_fleet_group(
                grafana,
                rules::FLEET_GROUP,
                &body,
                stored.as_ref(),
                editable,
            )
            .await?;
        }
        None => {
            if let Some(s) = &stored {
                let stored_editable = grafana.group_editable(s).await?.unwrap_or(false);
                grafana
                    .delete_rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP, stored_editable)
                    .await?;
            }
        }
    }
    Ok(FleetReport {
        clusters: names,
        vanished: Vec::new(),
    })
}

/// The central check's repair of the fleet rule: rebuilt from the datasources Grafana holds
/// (pull). Registrations that raced may each have left the other out; this puts it right.
pub async fn reconcile_fleet(grafana: &GrafanaClient) -> Result<FleetReport> {
    let editable = match grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP)
        .await?
    {
        Some(g) => grafana.group_editable(&g).await?.unwrap_or(false),
        None => false,
    };
    provision_fleet(grafana, editable, None).await
}

/// The central check's repair of the shared rule set: every cluster that sends samples is
/// expected (a registration that lost a race left it out). Returns the clusters expected now.
pub async fn reconcile_shared(
    grafana: &GrafanaClient,
    datasource_uid: &str,
    senders: &[ClusterName],
) -> Result<Vec<String>> {
    let stored = grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::SHARED_GROUP)
        .await?;
    let editable = match &stored {
        Some(s) => grafana.group_editable(s).await?.unwrap_or(false),
        None => false,
    };
    let mut names = Vec::new();
    for c in senders {
        names = shared_rules(grafana, datasource_uid, editable, Some(c), None)
            .await?
            .0;
    }
    Ok(names)
}

/// After a renewal of Grafana's client certificate (or a CA rotation), every CMM datasource
/// that presents one gets the new certificate, key and trust bundle in the same run, so no
/// cluster waits for its own agent. Datasources whose `cmmTlsIdentity` already names them are
/// left alone; one with basic auth is not rewritten (its password cannot be read back) and is
/// named instead. Returns what was done, one line per datasource.
pub async fn refresh_tls(
    grafana: &GrafanaClient,
    client: &crate::prometheus::ClientIdentity,
    trust_pem: &str,
) -> Result<Vec<String>> {
    let want = tls_identity(&client.cert_pem, trust_pem)?;
    let mut done = Vec::new();
    for listed in grafana.list_datasources().await? {
        let Some(have) = listed.json_data[DATASOURCE_TLS_IDENTITY_KEY].as_str() else {
            continue;
        };
        let Ok(cluster) = ClusterName::parse(&listed.name) else {
            continue;
        };
        if have == want || listed.uid != cluster.datasource_uid() || listed.read_only {
            continue;
        }
        // The list item lacks version and basicAuthUser (contract §2.1): read it whole.
        let Some(current) = grafana.datasource_by_uid(&listed.uid).await? else {
            continue;
        };
        if current.basic_auth {
            done.push(format!(
                "datasource {}: not updated (basic auth; run `cmm-agent check --repair` on its host)",
                current.uid
            ));
            continue;
        }
        let target = PrometheusTarget {
            url: current.url.clone(),
            basic_auth: None,
            ca_pem: Some(trust_pem.to_owned()),
            tls_skip_verify: false,
            client: Some(client.clone()),
        };
        let mut body = desired_datasource(&cluster, &target)?;
        body["version"] = json!(current.version);
        grafana.update_datasource(&current.uid, &body).await?;
        done.push(format!(
            "datasource {}: given Grafana's current client certificate and trust bundle",
            current.uid
        ));
    }
    Ok(done)
}

/// A registration's writes of a fleet-wide group: the first, then up to four read-backs (each
/// writing again while its cluster is missing) before it leaves the rest to the central check.
/// Three writes lost a racer now and then
/// with six registrations at once on a loaded machine
/// (`grafana_api::clusters_registering_at_the_same_moment_are_all_counted`); each read-back
/// costs 150-450 ms, and only while another registration is racing.
const SETTLE_ATTEMPTS: u32 = 5;

/// A random pause of 150-450 ms: long enough for a racing registration's write to land, short
/// enough that two racers seldom read back at the same moment.
async fn settle_pause() {
    let ms = 150 + (crate::retry::RetryPolicy::jitter() * 300.0) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// What the fleet rule counts after a registration or deregistration.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FleetReport {
    /// The clusters CmmFleetClusterMissing counts.
    pub clusters: Vec<String>,
    /// Counted clusters whose datasource is gone from Grafana although they were never
    /// deregistered. While there are any, the fleet rule is left unchanged (and pages).
    pub vanished: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeregisterReport {
    pub cluster: String,
    pub datasource_uid: String,
    pub datasource_deleted: bool,
    pub rules_deleted: bool,
    pub folder_deleted: bool,
    /// Why the folder was left in place (it holds content CMM did not make).
    pub folder_kept: Option<String>,
    /// The fleet rule once this cluster is gone.
    pub fleet: FleetReport,
}

/// Remove what [`register`] made: the rule group, its folder, the datasource (by CMM's uid
/// only, so a foreign datasource with the same name is never touched). Safe to repeat.
pub async fn deregister(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
) -> Result<DeregisterReport> {
    let folder = rules::folder_uid(cluster);
    let group = grafana.rule_group(&folder, rules::GROUP).await?;
    let rules_deleted = match &group {
        Some(g) => {
            // The header must match how the rules were stored, which only the single-rule GET
            // tells; a group emptied meanwhile is gone already.
            let editable = grafana.group_editable(g).await?.unwrap_or(false);
            grafana
                .delete_rule_group(&folder, rules::GROUP, editable)
                .await?;
            true
        }
        None => false,
    };
    // Deleting a folder deletes the dashboards in it: a folder holding any (someone saved one
    // there) is left in place and the report says why.
    let dashboards = grafana.folder_dashboards(&folder).await?;
    // The folder may also hold rules someone added by hand: Grafana then refuses to delete it
    // (without forceDeleteRules), and CMM leaves it rather than delete their rules.
    let deleted = if dashboards.is_empty() {
        grafana.delete_folder(&folder).await
    } else {
        let mut shown: Vec<String> = dashboards.iter().take(3).cloned().collect();
        if dashboards.len() > 3 {
            shown.push(format!("{} more", dashboards.len() - 3));
        }
        Err(Error::GrafanaStatus {
            method: "DELETE".into(),
            path: format!("/api/folders/{folder}"),
            status: 409,
            message: format!(
                "left in place: it holds {} dashboard(s) CMM did not make ({}), which deleting \
                 the folder would delete too",
                dashboards.len(),
                shown.join(", ")
            ),
        })
    };
    let (folder_deleted, folder_kept) = match deleted {
        Ok(deleted) => (deleted, None),
        Err(Error::GrafanaStatus {
            status: 400 | 409 | 412,
            message,
            ..
        }) => (false, Some(message)),
        Err(e) => return Err(e),
    };
    let uid = cluster.datasource_uid();
    let datasource_deleted = grafana.delete_datasource(&uid).await?;
    // The fleet rule stops counting the cluster only here, on purpose: a datasource removed any
    // other way leaves the rule querying it, and so paging.
    let fleet_editable = match grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::FLEET_GROUP)
        .await?
    {
        Some(g) => grafana.group_editable(&g).await?.unwrap_or(false),
        None => false,
    };
    let fleet = provision_fleet(grafana, fleet_editable, Some(cluster)).await?;
    Ok(DeregisterReport {
        cluster: cluster.to_string(),
        datasource_uid: uid,
        datasource_deleted,
        rules_deleted,
        folder_deleted,
        folder_kept,
        fleet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn c() -> ClusterName {
        ClusterName::parse("kr-mum").unwrap()
    }
    fn target(url: &str) -> PrometheusTarget {
        PrometheusTarget {
            url: url.into(),
            ..Default::default()
        }
    }
    fn stored(uid: &str, name: &str, url: &str) -> DataSource {
        DataSource {
            id: 3,
            uid: uid.into(),
            name: name.into(),
            kind: "prometheus".into(),
            url: url.into(),
            access: "proxy".into(),
            basic_auth: false,
            basic_auth_user: String::new(),
            json_data: json!({"httpMethod": "POST", "timeInterval": "30s"}),
            secure_json_fields: json!({}),
            read_only: false,
            version: 4,
        }
    }

    #[test]
    fn the_body_is_cores_shape_with_secrets_only_in_secure_json_data() {
        let mut t = target("http://10.0.0.11:30090/");
        t.basic_auth = Some(("cmm".into(), Secret::new("pw")));
        t.ca_pem = Some("-----BEGIN CERTIFICATE-----".into());
        let d = desired_datasource(&c(), &t).unwrap();
        assert_eq!(d["uid"], "cmm-kr-mum");
        assert_eq!(d["name"], "kr-mum");
        assert_eq!(d["url"], "http://10.0.0.11:30090");
        assert_eq!(d["jsonData"]["httpMethod"], "POST");
        assert_eq!(d["jsonData"]["tlsAuthWithCACert"], true);
        assert_eq!(d["basicAuthUser"], "cmm");
        assert_eq!(d["secureJsonData"]["basicAuthPassword"], "pw");
        let mut outside = d.clone();
        outside.as_object_mut().unwrap().remove("secureJsonData");
        assert!(!outside.to_string().contains("pw\""));
    }

    #[test]
    fn decisions() {
        let url = "http://10.0.0.11:30090";
        let want = desired_datasource(&c(), &target(url)).unwrap();
        let ours = stored("cmm-kr-mum", "kr-mum", url);
        let moved = stored("cmm-kr-mum", "kr-mum", "http://10.0.0.99:30090");
        let foreign = stored("abc", "kr-mum", url);
        let mut provisioned = moved.clone();
        provisioned.read_only = true;

        assert_eq!(
            decide(&c(), &want, None, None, false).unwrap(),
            DatasourceAction::Create
        );
        assert_eq!(
            decide(&c(), &want, Some(&ours), Some(&ours), false).unwrap(),
            DatasourceAction::Unchanged
        );
        assert_eq!(
            decide(&c(), &want, Some(&moved), Some(&moved), false).unwrap(),
            DatasourceAction::Update { version: 4 }
        );
        let e = decide(&c(), &want, None, Some(&foreign), false).unwrap_err();
        assert!(matches!(e, Error::GrafanaConflict { .. }));
        assert!(
            e.to_string().contains("--force") && e.to_string().contains("uid abc"),
            "{e}"
        );
        assert_eq!(
            decide(&c(), &want, None, Some(&foreign), true).unwrap(),
            DatasourceAction::Replace {
                foreign_uid: "abc".into()
            }
        );
        let e = decide(&c(), &want, Some(&provisioned), Some(&provisioned), true).unwrap_err();
        assert!(e.to_string().contains("additionalDataSources"), "{e}");
        // A file-provisioned one that already matches is fine: the envsubst route and the API
        // route agree on the shape.
        let mut same = ours.clone();
        same.read_only = true;
        assert_eq!(
            decide(&c(), &want, Some(&same), Some(&same), false).unwrap(),
            DatasourceAction::Unchanged
        );
        let mut secret = target(url);
        secret.basic_auth = Some(("u".into(), Secret::new("p")));
        let want_secret = desired_datasource(&c(), &secret).unwrap();
        assert_eq!(
            decide(&c(), &want_secret, Some(&ours), Some(&ours), false).unwrap(),
            DatasourceAction::Update { version: 4 }
        );
    }
}

/// What a registration wrote in a shared topology (push, thanos), where a cluster has no
/// datasource of its own.
#[derive(Debug, Clone, Serialize)]
pub struct SharedReport {
    pub cluster: String,
    pub grafana: String,
    /// The one datasource every cluster is read through.
    pub datasource_uid: String,
    /// Folder and group of the shared rule set.
    pub folder_uid: String,
    pub group: String,
    /// The clusters CmmClusterSilent expects to hear from after this run.
    pub clusters: Vec<String>,
    /// Whether the group was written (false: Grafana held exactly this already).
    pub changed: bool,
    /// Grafana's own check of the shared datasource.
    pub health: DatasourceHealth,
}

/// Register `cluster` in a shared topology: the shared datasource must exist (the central
/// release's topology overlay provisions it); the shared rule group is rebuilt with the cluster
/// among the ones CmmClusterSilent expects, unless rules are skipped. Nothing per cluster is
/// written. `topology` names the mode in messages.
pub async fn register_shared(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
    datasource_uid: &str,
    topology: &str,
    mode: RulesMode,
) -> Result<SharedReport> {
    if grafana.datasource_by_uid(datasource_uid).await?.is_none() {
        return Err(Error::SharedDatasourceMissing {
            uid: datasource_uid.to_owned(),
            topology: topology.to_owned(),
        });
    }
    let (clusters, changed) = match mode {
        RulesMode::Skip => (Vec::new(), false),
        mode => {
            let editable = mode == RulesMode::Editable;
            let mut joined =
                shared_rules(grafana, datasource_uid, editable, Some(cluster), None).await?;
            // As for the fleet rule (provision_rules): read back, write again while missing.
            for _ in 1..SETTLE_ATTEMPTS {
                settle_pause().await;
                let expected = grafana
                    .rule_group(rules::FLEET_FOLDER_UID, rules::SHARED_GROUP)
                    .await?
                    .map(|g| rules::shared_members(&g))
                    .unwrap_or_default();
                if expected.contains(cluster) {
                    break;
                }
                joined =
                    shared_rules(grafana, datasource_uid, editable, Some(cluster), None).await?;
            }
            joined
        }
    };
    let health = grafana.datasource_health(datasource_uid).await?;
    Ok(SharedReport {
        cluster: cluster.to_string(),
        grafana: grafana.base_url().to_string(),
        datasource_uid: datasource_uid.to_owned(),
        folder_uid: rules::FLEET_FOLDER_UID.to_owned(),
        group: rules::SHARED_GROUP.to_owned(),
        clusters,
        changed,
        health,
    })
}

/// Deregister `cluster` in a shared topology: out of the silent rule's list; the group goes
/// when no cluster is left. Returns the clusters still expected.
pub async fn deregister_shared(
    grafana: &GrafanaClient,
    cluster: &ClusterName,
    datasource_uid: &str,
) -> Result<Vec<String>> {
    let stored = grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::SHARED_GROUP)
        .await?;
    let editable = match &stored {
        Some(s) => grafana.group_editable(s).await?.unwrap_or(false),
        None => return Ok(Vec::new()),
    };
    Ok(
        shared_rules(grafana, datasource_uid, editable, None, Some(cluster))
            .await?
            .0,
    )
}

/// Rebuild the shared group from the stored members, plus `joining`, less `leaving`; write it
/// only when it differs. Two registrations racing may each miss the other (a group PUT is
/// whole); the next registration of either puts it right, as with the fleet rule.
async fn shared_rules(
    grafana: &GrafanaClient,
    datasource_uid: &str,
    editable: bool,
    joining: Option<&ClusterName>,
    leaving: Option<&ClusterName>,
) -> Result<(Vec<String>, bool)> {
    let stored = grafana
        .rule_group(rules::FLEET_FOLDER_UID, rules::SHARED_GROUP)
        .await?;
    let mut clusters = stored
        .as_ref()
        .map(rules::shared_members)
        .unwrap_or_default();
    clusters.extend(joining.cloned());
    clusters.retain(|c| Some(c) != leaving);
    clusters.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    clusters.dedup_by(|a, b| a.as_str() == b.as_str());
    let names = clusters.iter().map(|c| c.to_string()).collect();
    let Some(body) = rules::render_shared(&clusters, datasource_uid, grafana.base_url().as_str())
    else {
        if let Some(s) = &stored {
            let stored_editable = grafana.group_editable(s).await?.unwrap_or(false);
            grafana
                .delete_rule_group(
                    rules::FLEET_FOLDER_UID,
                    rules::SHARED_GROUP,
                    stored_editable,
                )
                .await?;
            return Ok((names, true));
        }
        return Ok((names, false));
    };
    let changed = put_fleet_group(
        grafana,
        rules::SHARED_GROUP,
        &body,
        stored.as_ref(),
        editable,
    )
    .await?;
    Ok((names, changed))
}

/// Write `body` as group `group` of the fleet folder (made when missing) unless `stored` already
/// is exactly it, with the same editability. Returns whether it was written.
async fn put_fleet_group(
    grafana: &GrafanaClient,
    group: &str,
    body: &Value,
    stored: Option<&Value>,
    editable: bool,
) -> Result<bool> {
    let created = grafana
        .ensure_folder(rules::FLEET_FOLDER_UID, rules::FLEET_FOLDER_TITLE)
        .await?;
    let same = match (stored, created) {
        (Some(s), false) => {
            let stored_editable = grafana.group_editable(s).await?;
            rules::stored_matches(body, s, editable, stored_editable)
        }
        _ => false,
    };
    if !same {
        grafana
            .put_rule_group(rules::FLEET_FOLDER_UID, group, body, editable)
            .await?;
    }
    Ok(!same)
}
