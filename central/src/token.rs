//! The service account cluster agents register with, and its tokens.
//!
//! Role: `Admin`. Registration creates/updates/deletes datasources (`datasources:create|write|
//! delete`, held by Admin only among the built-in roles) and writes alert rules through the
//! provisioning API (`alert.provisioning:write`, Admin by default). Grafana OSS cannot give a
//! service account a narrower custom role, so Admin is the least built-in role that works.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::grafana::GrafanaClient;
use crate::secret::Secret;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "cmm-registrar";
pub const REGISTRATION_ROLE: &str = "Admin";

#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub service_account_id: i64,
    pub service_account: String,
    pub service_account_created: bool,
    pub token_name: String,
    /// Serialises as `***`; the caller prints or writes [`Secret::expose`] once.
    pub token: Secret,
}

/// Find or create the service account, then issue a new token (Grafana shows a token's value
/// only once, so an existing one can never be handed out again).
pub async fn issue_token(
    grafana: &GrafanaClient,
    service_account: &str,
    token_name: &str,
    seconds_to_live: Option<u64>,
) -> Result<IssuedToken> {
    if service_account.trim().is_empty() {
        return Err(Error::invalid(
            "service-account",
            "is empty: give a name, e.g. cmm-registrar",
        ));
    }
    if token_name.trim().is_empty() {
        return Err(Error::invalid("token-name", "is empty"));
    }
    let (id, created) = match find_service_account(grafana, service_account).await? {
        Some(id) => (id, false),
        None => (
            create_service_account(grafana, service_account).await?,
            true,
        ),
    };
    let id_s = id.to_string();
    let seg = ["serviceaccounts", id_s.as_str(), "tokens"];
    let mut body = json!({ "name": token_name });
    if let Some(s) = seconds_to_live {
        body["secondsToLive"] = json!(s);
    }
    let a = grafana.send(Method::POST, &seg, Some(&body), &[]).await?;
    if a.status == StatusCode::BAD_REQUEST && a.message().contains("already exists") {
        return Err(Error::invalid(
            "token-name",
            format!("a token named {token_name:?} already exists in this Grafana org: choose another name"),
        ));
    }
    if a.status != StatusCode::OK {
        return Err(grafana.unexpected(&Method::POST, &seg, &a));
    }
    let v: Value = grafana.decode(&Method::POST, &seg, &a)?;
    let key =
        v["key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::GrafanaProtocol {
                method: "POST".into(),
                path: format!("/api/serviceaccounts/{id}/tokens"),
                detail: "no `key` in the answer".into(),
            })?;
    Ok(IssuedToken {
        service_account_id: id,
        service_account: service_account.to_owned(),
        service_account_created: created,
        token_name: token_name.to_owned(),
        token: Secret::new(key),
    })
}

async fn find_service_account(grafana: &GrafanaClient, name: &str) -> Result<Option<i64>> {
    let seg = ["serviceaccounts", "search"];
    // A substring match: the exact name is picked from the results.
    let a = grafana
        .send_query(
            Method::GET,
            &seg,
            &[("query", name), ("perpage", "1000")],
            None,
            &[],
        )
        .await?;
    if a.status != StatusCode::OK {
        return Err(grafana.unexpected(&Method::GET, &seg, &a));
    }
    let v: Value = grafana.decode(&Method::GET, &seg, &a)?;
    Ok(v["serviceAccounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|sa| sa["name"] == name)
        .and_then(|sa| sa["id"].as_i64()))
}

async fn create_service_account(grafana: &GrafanaClient, name: &str) -> Result<i64> {
    let seg = ["serviceaccounts"];
    let body = json!({"name": name, "role": REGISTRATION_ROLE, "isDisabled": false});
    let a = grafana.send(Method::POST, &seg, Some(&body), &[]).await?;
    if a.status != StatusCode::CREATED {
        return Err(grafana.unexpected(&Method::POST, &seg, &a));
    }
    let v: Value = grafana.decode(&Method::POST, &seg, &a)?;
    v["id"].as_i64().ok_or_else(|| Error::GrafanaProtocol {
        method: "POST".into(),
        path: "/api/serviceaccounts".into(),
        detail: "no numeric `id` in the answer".into(),
    })
}
