//! The push topology on real parts: two "cluster" Prometheus servers (one in agent mode)
//! remote-write, as the operator configures them from the rendered push.yaml, through a real
//! nginx running central-receiver.yaml's proxy configuration, into a real receiver
//! Prometheus. Certificates are made by cmm-pki, the code the agent issues them with; the
//! "cluster silent" condition is the expression the registration provisions.

mod support;

use std::time::{Duration, Instant, SystemTime};

use cmm_central::rules;
use cmm_core::ClusterName;
use cmm_installer::bootstrap::values_for;
use cmm_installer::topology::Role;
use cmm_installer::topology::{Choice, Topology, Wiring, RECEIVER_SERVER_NAME};
use cmm_pki::Ca;
use cmm_testkit::mtls_proxy;
use cmm_testkit::remote_write::{client, ProtectedReceiver, RemoteWrite, Sender};
use serde_json::Value;
use support::{render_values, tools};

const RECEIVER_URL: &str = "https://10.0.0.5:30091/api/v1/write";

fn wiring(central: bool, agent_mode: bool) -> Wiring {
    Wiring::new(&Choice {
        topology: Topology::Push,
        receiver_url: (!central).then_some(RECEIVER_URL),
        agent_mode,
        central,
        ..Default::default()
    })
    .unwrap()
}

/// The receiver proxy's nginx.conf and run.sh, as the chart renders the central push release.
async fn rendered_receiver_proxy() -> Option<(String, String)> {
    let (helm, chart) = tools()?;
    let values = values_for(Role::Central, None, None, &wiring(true, false), &[]);
    let r = render_values(&helm, &chart, "monitor", &values)
        .await
        .unwrap();
    let prom = r
        .find("Prometheus", cmm_core::naming::RECEIVER_FULLNAME)
        .expect("the central push release renders the receiver");
    assert_eq!(prom["spec"]["enableRemoteWriteReceiver"], true);
    let data = &r
        .find("ConfigMap", "cmm-receiver-mtls-proxy")
        .expect("central-receiver.yaml renders ConfigMap cmm-receiver-mtls-proxy")["data"];
    Some((
        data["nginx.conf"].as_str().unwrap().to_owned(),
        data["run.sh"].as_str().unwrap().to_owned(),
    ))
}

/// The rendered `remoteWrite` item of a cluster's push release (agent mode or not).
async fn rendered_remote_write(cluster: &str, agent_mode: bool) -> Value {
    let (helm, chart) = tools().unwrap();
    let values = values_for(Role::Cluster, None, None, &wiring(false, agent_mode), &[]);
    let r = render_values(&helm, &chart, cluster, &values)
        .await
        .unwrap();
    let kind = if agent_mode {
        "PrometheusAgent"
    } else {
        "Prometheus"
    };
    let cr = r
        .find(kind, "cmm")
        .unwrap_or_else(|| panic!("no {kind} cmm"));
    assert_eq!(cr["spec"]["externalLabels"]["cluster"], cluster);
    cr["spec"]["remoteWrite"][0].clone()
}

/// The sender's remote-write section from the rendered item: everything as rendered (name,
/// server name, queue) but the URL and the files of the mounted Secret, which point at this
/// machine's proxy and certificates (`local`).
fn as_rendered(rendered: &Value, local: RemoteWrite) -> RemoteWrite {
    assert_eq!(rendered["url"], RECEIVER_URL);
    let tls = &rendered["tlsConfig"];
    assert_eq!(tls["cert"]["secret"]["key"], "client.crt");
    let q = &rendered["queueConfig"];
    RemoteWrite {
        name: rendered["name"].as_str().unwrap().to_owned(),
        server_name: tls["serverName"].as_str().unwrap().to_owned(),
        max_samples_per_send: q["maxSamplesPerSend"].as_u64().unwrap(),
        batch_send_deadline: q["batchSendDeadline"].as_str().unwrap().to_owned(),
        ..local
    }
}

/// `cluster` label values of an instant query's result (empty on any error).
async fn clusters_of(c: &reqwest::Client, base: &str, promql: &str) -> Vec<String> {
    let Ok(r) = c
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or_default();
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["metric"]["cluster"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Poll `promql` until its clusters are `want`, within `limit`.
async fn until_clusters(c: &reqwest::Client, base: &str, promql: &str, want: &[&str], limit: u64) {
    let deadline = Instant::now() + Duration::from_secs(limit);
    loop {
        let got = clusters_of(c, base, promql).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{promql}: clusters {got:?} after {limit} s, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn two_clusters_push_into_one_receiver_and_a_lost_one_goes_silent() {
    let test = "two_clusters_push_into_one_receiver_and_a_lost_one_goes_silent";
    if !mtls_proxy::available(test) {
        return;
    }
    let Some((conf, run)) = rendered_receiver_proxy().await else {
        return;
    };
    let now = SystemTime::now();
    let ca = Ca::generate(now).unwrap();
    // A short lookback (Prometheus' default is 5m) so a lost sender is silent within seconds;
    // the silent rule reads "no sample within the lookback", whatever its length.
    let Some(store) = ProtectedReceiver::start(test, &conf, &run, &ca, "10s").await else {
        return;
    };
    let reader = client(&ca, &ca.issue_client("cmm-grafana", now).unwrap());
    let base = store.url();

    // kr-mum: a full Prometheus; wai-eks: an agent. Each with its own self certificate.
    let mut senders = Vec::new();
    for (cluster, agent) in [("kr-mum", false), ("wai-eks", true)] {
        let rw = as_rendered(
            &rendered_remote_write(cluster, agent).await,
            store.remote_write(&ca, cluster, 0, ""),
        );
        assert_eq!(rw.server_name, RECEIVER_SERVER_NAME);
        senders.push(
            Sender::start(test, cluster, &rw, agent, "1s")
                .await
                .expect("tools were found above"),
        );
    }

    // Both clusters arrive, told apart by their label (batches leave within the rendered
    // batchSendDeadline, 5 s).
    until_clusters(
        &reader,
        &base,
        r#"count by (cluster) (up{job="node-exporter"})"#,
        &["kr-mum", "wai-eks"],
        60,
    )
    .await;
    // The node dashboard's `cluster` variable (label_values(up{job="node-exporter"}, cluster))
    // lists every cluster on the one datasource.
    let v: Value = reader
        .get(format!("{base}/api/v1/label/cluster/values"))
        .query(&[("match[]", r#"up{job="node-exporter"}"#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], serde_json::json!(["kr-mum", "wai-eks"]));

    // The proxy's split: a cluster's certificate writes but never reads; Grafana's reads but
    // never writes.
    let writer = client(&ca, &ca.issue_client("cmm-self-kr-mum", now).unwrap());
    let r = writer
        .get(format!("{base}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = reader
        .post(format!("{base}/api/v1/write"))
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Nobody is silent while both send.
    let registered = ["kr-mum", "wai-eks"].map(|n| ClusterName::parse(n).unwrap());
    let silent = rules::silent_expr(&registered);
    assert_eq!(
        clusters_of(&reader, &base, &silent).await,
        Vec::<String>::new()
    );
    // A cluster registered but never heard from is silent at once.
    let with_new = ["kr-mum", "us-east", "wai-eks"].map(|n| ClusterName::parse(n).unwrap());
    assert_eq!(
        clusters_of(&reader, &base, &rules::silent_expr(&with_new)).await,
        ["us-east"]
    );

    // Lose the agent: within the lookback it is silent, and only it.
    let sent = senders[1]
        .counter("prometheus_remote_storage_samples_total")
        .await;
    assert!(sent > 0.0, "the agent sent nothing before it was cut off");
    senders[1].kill();
    until_clusters(&reader, &base, &silent, &["wai-eks"], 60).await;
    until_clusters(
        &reader,
        &base,
        r#"count by (cluster) (up{job="node-exporter"})"#,
        &["kr-mum"],
        5,
    )
    .await;
}
