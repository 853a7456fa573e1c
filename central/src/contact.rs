//! Whether an alert reaches someone: Grafana's contact points, and the opt-in proof of it.
//!
//! A contact point that exists is not one that delivers: e-mail needs Grafana's `[smtp]`
//! section, which is off by default, and a Teams webhook may be gone. Neither is visible
//! through the API without sending, so `check` says "unverified" unless asked to send a test
//! notification through Grafana's receiver-test API (the "Test" button of the UI):
//! `POST /api/alertmanager/grafana/config/api/v1/receivers/test`, body
//! `TestReceiversConfigBodyParams`, answer `TestReceiversResult` (Grafana 11.3,
//! `pkg/services/ngalert/api/tooling/definitions/alertmanager.go`; handler
//! `RoutePostTestReceivers` in `pkg/services/ngalert/api/api_alertmanager.go`: 200 when every
//! integration sent, 207 when some failed, 400 when all were invalid, 408 when all timed out).
//! Grafana loads each integration's stored secrets by its `uid` (`LoadSecureSettings`), so the
//! redacted values of the provisioning API are left out of the body, not sent back.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::grafana::GrafanaClient;

/// Grafana's default contact point mails this placeholder address (its default alerting
/// configuration, `alertmanagerDefaultConfiguration` in `pkg/setting/setting_unified_alerting.go`):
/// alerts go nowhere.
pub const PLACEHOLDER: &str = "<example@email.com>";

/// The provisioning API's stand-in for a secret value.
const REDACTED: &str = "[REDACTED]";

/// One integration's answer to a test notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The contact point's name, and the integration's type (email, teams, …).
    pub name: String,
    pub kind: String,
    pub delivered: bool,
    /// Grafana's reason, with URLs cut to their host (a webhook URL is a secret).
    pub error: Option<String>,
}

/// The contact points that go somewhere (not Grafana's placeholder default).
pub fn real(points: &[Value]) -> Vec<&Value> {
    points
        .iter()
        .filter(|p| {
            !p["settings"]["addresses"]
                .as_str()
                .is_some_and(|a| a.contains(PLACEHOLDER))
        })
        .collect()
}

/// The receiver-test body for `points` (as the provisioning API lists them): one receiver per
/// contact point name, one integration per entry, secrets left for Grafana to load by uid.
pub fn test_body(points: &[&Value], cluster: &str) -> Value {
    let mut receivers: Vec<(String, Vec<Value>)> = Vec::new();
    for p in points {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let settings: Map<String, Value> = p["settings"]
            .as_object()
            .map(|s| {
                s.iter()
                    .filter(|(_, v)| v.as_str() != Some(REDACTED))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let integration = json!({
            "uid": p["uid"], "name": name, "type": p["type"],
            "disableResolveMessage": p["disableResolveMessage"].as_bool().unwrap_or(false),
            "settings": settings,
        });
        match receivers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(integration),
            None => receivers.push((name, vec![integration])),
        }
    }
    json!({
        "alert": {
            "labels": {"alertname": "CmmContactPointTest", "cluster": cluster},
            "annotations": {"summary": format!("Test notification sent by `cmm-agent check --test-contact-points` for cluster {cluster}: this contact point delivers.")},
        },
        "receivers": receivers.into_iter().map(|(name, list)| json!({
            "name": name, "grafana_managed_receiver_configs": list,
        })).collect::<Vec<_>>(),
    })
}

/// Each integration's result from a `TestReceiversResult`; `None` when the answer is not one
/// (a 400 naming an unknown receiver has only a message).
pub fn deliveries(answer: &Value, points: &[&Value]) -> Option<Vec<Delivery>> {
    let kind_of = |uid: &str| {
        points
            .iter()
            .find(|p| p["uid"] == uid)
            .and_then(|p| p["type"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let mut out = Vec::new();
    for r in answer["receivers"].as_array()? {
        for c in r["grafana_managed_receiver_configs"].as_array()? {
            let error = c["error"].as_str().filter(|e| !e.is_empty());
            out.push(Delivery {
                name: r["name"].as_str().unwrap_or("?").to_owned(),
                kind: kind_of(c["uid"].as_str().unwrap_or_default()),
                delivered: c["status"] == "ok" && error.is_none(),
                error: error.map(hosts_only),
            });
        }
    }
    Some(out)
}

/// Cut every URL in `text` to its scheme and host: a Teams or webhook URL carries its secret
/// in the path, and Grafana's error messages quote it ("Post \"https://…\": …").
pub fn hosts_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let host_end = after
            .find(|c: char| c == '/' || c == '?' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        out.push_str(&after[..host_end]);
        let tail = &after[host_end..];
        let path_end = tail
            .find(|c: char| c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        if path_end > 0 {
            out.push_str("/…");
        }
        rest = &tail[path_end..];
    }
    out.push_str(rest);
    out
}

impl GrafanaClient {
    /// Send one test notification through each of `points`: Grafana's own delivery, as the
    /// UI's Test button does it. Opt-in: people receive it.
    pub async fn test_contact_points(
        &self,
        points: &[&Value],
        cluster: &str,
    ) -> Result<Vec<Delivery>> {
        let seg = [
            "alertmanager",
            "grafana",
            "config",
            "api",
            "v1",
            "receivers",
            "test",
        ];
        let body = test_body(points, cluster);
        // Once: a retry after a lost answer would notify people again.
        let a = self
            .once()
            .send(Method::POST, &seg, Some(&body), &[])
            .await?;
        let known = [
            StatusCode::OK,
            StatusCode::MULTI_STATUS,
            StatusCode::BAD_REQUEST,
            StatusCode::REQUEST_TIMEOUT,
        ];
        if known.contains(&a.status) {
            let v: Value = self.decode(&Method::POST, &seg, &a)?;
            if let Some(d) = deliveries(&v, points) {
                return Ok(d);
            }
        }
        Err(self.unexpected(&Method::POST, &seg, &a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_grafanas_errors_keep_only_their_host() {
        assert_eq!(
            hosts_only("Post \"https://outlook.office.com/webhook/abc/IncomingWebhook/s3cret\": dial tcp: refused"),
            "Post \"https://outlook.office.com/…\": dial tcp: refused"
        );
        assert_eq!(hosts_only("SMTP not configured"), "SMTP not configured");
        assert_eq!(hosts_only("see http://h:3000"), "see http://h:3000");
    }

    #[test]
    fn the_body_groups_integrations_by_contact_point_and_leaves_secrets_to_grafana() {
        let points = [
            json!({"uid": "a1", "name": "ops", "type": "email", "settings": {"addresses": "ops@x"}}),
            json!({"uid": "a2", "name": "ops", "type": "teams", "settings": {"url": "[REDACTED]", "title": "t"}}),
        ];
        let refs: Vec<&Value> = points.iter().collect();
        let body = test_body(&refs, "kr-mum");
        let recv = body["receivers"].as_array().unwrap();
        assert_eq!(recv.len(), 1);
        let configs = recv[0]["grafana_managed_receiver_configs"]
            .as_array()
            .unwrap();
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[1]["uid"], "a2");
        assert!(configs[1]["settings"].get("url").is_none());
        assert_eq!(configs[1]["settings"]["title"], "t");
        assert_eq!(body["alert"]["labels"]["cluster"], "kr-mum");
    }

    #[test]
    fn each_integrations_status_becomes_a_delivery() {
        let points = [
            json!({"uid": "a1", "name": "ops", "type": "email"}),
            json!({"uid": "b1", "name": "chat", "type": "teams"}),
        ];
        let refs: Vec<&Value> = points.iter().collect();
        let answer = json!({"receivers": [
            {"name": "ops", "grafana_managed_receiver_configs": [{"name": "ops", "uid": "a1", "status": "failed",
              "error": "SMTP not configured, check your grafana.ini config file's [smtp] section"}]},
            {"name": "chat", "grafana_managed_receiver_configs": [{"name": "chat", "uid": "b1", "status": "ok"}]},
        ]});
        let d = deliveries(&answer, &refs).unwrap();
        assert!(!d[0].delivered && d[0].kind == "email");
        assert!(d[0]
            .error
            .as_deref()
            .unwrap()
            .contains("SMTP not configured"));
        assert!(d[1].delivered && d[1].kind == "teams" && d[1].error.is_none());
        assert!(deliveries(&json!({"message": "unknown receiver"}), &refs).is_none());
    }
}
