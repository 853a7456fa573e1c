//! The push topology on real parts: two "cluster" Prometheus servers (one in agent mode)
//! remote-write, as the operator configures them from the rendered push.yaml, through a real
//! nginx running the receiver overlay's proxy configuration, into a real receiver: a
//! Prometheus (central-receiver.yaml) or a VictoriaMetrics single-node
//! (central-receiver-victoriametrics.yaml, run with its rendered arguments). Certificates are
//! made by cmm-pki, the code the agent issues them with; the "cluster silent" condition is the
//! expression the registration provisions. For VictoriaMetrics, the proxy's identity rule too:
//! a cluster's samples carry its certificate's name, whatever it writes.

mod support;

use std::time::{Duration, Instant, SystemTime};

use cmm_central::rules;
use cmm_core::ClusterName;
use cmm_installer::bootstrap::values_for;
use cmm_installer::topology::Role;
use cmm_installer::topology::{Choice, Receiver, Topology, Wiring, RECEIVER_SERVER_NAME};
use cmm_pki::Ca;
use cmm_testkit::mtls_proxy;
use cmm_testkit::remote_write::{
    client, ProtectedReceiver, Receiver as Store, RemoteWrite, Sender,
};
use serde_json::Value;
use support::{render_values, tools};

const RECEIVER_URL: &str = "https://10.0.0.5:30091/api/v1/write";

fn wiring(central: bool, agent_mode: bool) -> Wiring {
    central_wiring(central, agent_mode, None)
}

fn central_wiring(central: bool, agent_mode: bool, receiver: Option<Receiver>) -> Wiring {
    Wiring::new(&Choice {
        topology: Topology::Push,
        receiver_url: (!central).then_some(RECEIVER_URL),
        receiver,
        agent_mode,
        central,
        ..Default::default()
    })
    .unwrap()
}

/// What the central push release renders for `receiver`: the proxy's nginx.conf and run.sh,
/// and VictoriaMetrics' container arguments (none for the Prometheus receiver).
struct RenderedReceiver {
    nginx_conf: String,
    run_sh: String,
    vm_args: Vec<String>,
}

async fn rendered_receiver(receiver: Receiver) -> Option<RenderedReceiver> {
    let (helm, chart) = tools()?;
    let values = values_for(
        Role::Central,
        None,
        None,
        &central_wiring(true, false, Some(receiver)),
        &[],
    );
    let r = render_values(&helm, &chart, "monitor", &values)
        .await
        .unwrap();
    let vm = cmm_testkit::remote_write::rendered_vm_args(&r.objects);
    let prom = r.find("Prometheus", cmm_core::naming::RECEIVER_FULLNAME);
    let vm_args = match receiver {
        Receiver::Prometheus => {
            assert_eq!(
                prom.expect("the Prometheus receiver")["spec"]["enableRemoteWriteReceiver"],
                true
            );
            assert!(vm.is_none(), "both receivers rendered");
            Vec::new()
        }
        Receiver::VictoriaMetrics => {
            assert!(
                prom.is_none(),
                "a Prometheus receiver beside VictoriaMetrics"
            );
            // Nothing on the central cluster needs an operator in this case.
            assert!(r
                .of_kind("Deployment")
                .all(|d| !d["metadata"]["name"].as_str().unwrap().contains("operator")));
            vm.expect("central-receiver-victoriametrics.yaml renders StatefulSet cmm-receiver-vm")
        }
    };
    let data = &r
        .find("ConfigMap", "cmm-receiver-mtls-proxy")
        .expect("the receiver overlay renders ConfigMap cmm-receiver-mtls-proxy")["data"];
    Some(RenderedReceiver {
        nginx_conf: data["nginx.conf"].as_str().unwrap().to_owned(),
        run_sh: data["run.sh"].as_str().unwrap().to_owned(),
        vm_args,
    })
}

/// The receiver of `kind` behind its rendered proxy, or None (skipped: a tool is missing).
async fn protected(
    test: &str,
    kind: Receiver,
    ca: &Ca,
    lookback: &str,
) -> Option<ProtectedReceiver> {
    if !mtls_proxy::available(test) {
        return None;
    }
    let rendered = rendered_receiver(kind).await?;
    let store = match kind {
        Receiver::Prometheus => Store::start(test, lookback).await?,
        Receiver::VictoriaMetrics => {
            Store::start_victoriametrics(test, &rendered.vm_args, lookback).await?
        }
    };
    Some(ProtectedReceiver::around(store, &rendered.nginx_conf, &rendered.run_sh, ca, 30).await)
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
    two_clusters_and_a_lost_one(
        "two_clusters_push_into_one_receiver_and_a_lost_one_goes_silent",
        Receiver::Prometheus,
    )
    .await;
}

#[tokio::test]
async fn two_clusters_push_into_victoriametrics_and_a_lost_one_goes_silent() {
    two_clusters_and_a_lost_one(
        "two_clusters_push_into_victoriametrics_and_a_lost_one_goes_silent",
        Receiver::VictoriaMetrics,
    )
    .await;
}

async fn two_clusters_and_a_lost_one(test: &str, kind: Receiver) {
    let now = SystemTime::now();
    let ca = Ca::generate(now).unwrap();
    // A short lookback (5m by default on both) so a lost sender is silent within seconds;
    // the silent rule reads "no sample within the lookback", whatever its length.
    let Some(store) = protected(test, kind, &ca, "10s").await else {
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

/// A request through the receiver proxy with `who`'s certificate: its status.
async fn status(who: &reqwest::Client, method: &str, url: &str) -> u16 {
    let req = match method {
        "POST" => who.post(url).body(Vec::new()),
        _ => who.get(url),
    };
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn through_the_victoriametrics_proxy_a_cluster_writes_only_as_itself() {
    let test = "through_the_victoriametrics_proxy_a_cluster_writes_only_as_itself";
    let now = SystemTime::now();
    let ca = Ca::generate(now).unwrap();
    let Some(store) = protected(test, Receiver::VictoriaMetrics, &ca, "10s").await else {
        return;
    };
    let reader = client(&ca, &ca.issue_client("cmm-grafana", now).unwrap());
    let base = store.url();

    // alpha's node, taken over: its Prometheus labels everything cluster="beta", and its write
    // URL asks VictoriaMetrics for cluster="victim" besides. gamma is an honest neighbour.
    let mut forged = store.remote_write(&ca, "alpha", 2000, "1s");
    forged.url = format!("{}?extra_label=cluster=victim", forged.url);
    let _forger = Sender::start(test, "beta", &forged, false, "1s")
        .await
        .expect("tools were found above");
    let _gamma = Sender::start(
        test,
        "gamma",
        &store.remote_write(&ca, "gamma", 2000, "1s"),
        false,
        "1s",
    )
    .await
    .expect("tools were found above");
    // Stored under the certificates' names, and only those, in every series.
    until_clusters(
        &reader,
        &base,
        r#"count by (cluster) (up{job="node-exporter"})"#,
        &["alpha", "gamma"],
        60,
    )
    .await;
    assert_eq!(
        clusters_of(&reader, &base, r#"count by (cluster) ({__name__=~".+"})"#).await,
        ["alpha", "gamma"],
        "a series kept the label its sender wrote"
    );
    let v: Value = reader
        .get(format!("{base}/api/v1/label/cluster/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], serde_json::json!(["alpha", "gamma"]));

    // Who may do what through the proxy.
    let writer = client(&ca, &ca.issue_client("cmm-self-alpha", now).unwrap());
    let stranger = client(&ca, &ca.issue_client("intruder", now).unwrap());
    let write = format!("{base}/api/v1/write");
    assert_eq!(
        status(&stranger, "POST", &write).await,
        403,
        "a certificate naming no cluster wrote"
    );
    assert_eq!(
        status(&reader, "POST", &write).await,
        403,
        "Grafana's certificate wrote"
    );
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/series?match[]=up",
        "/api/v1/export?match[]=up",
    ] {
        assert_eq!(
            status(&writer, "GET", &format!("{base}{path}")).await,
            403,
            "a cluster read {path}"
        );
    }
    assert_eq!(
        status(&reader, "GET", &format!("{base}/api/v1/query?query=up")).await,
        200
    );
    assert_eq!(
        status(&reader, "GET", &format!("{base}/api/v1/status/buildinfo")).await,
        200
    );
    // VictoriaMetrics' own write, delete, snapshot, export and admin paths: no certificate
    // reaches them. Each answers directly (so the 403 is the proxy's doing).
    let direct = store.direct_url();
    let plain = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/snapshot/list"),
        ("GET", "/api/v1/export?match[]=up"),
        ("GET", "/prometheus/api/v1/query?query=up"),
        ("GET", "/metrics"),
    ] {
        let r = match method {
            "POST" => plain.post(format!("{direct}{path}")),
            _ => plain.get(format!("{direct}{path}")),
        };
        assert!(
            r.send().await.unwrap().status().is_success(),
            "{path} does not answer directly"
        );
    }
    for (method, path) in [
        ("POST", "/api/v1/admin/tsdb/delete_series?match[]=up"),
        ("GET", "/api/v1/admin/tsdb/delete_series?match[]=up"),
        ("GET", "/snapshot/create"),
        ("GET", "/snapshot/list"),
        ("GET", "/snapshot/delete_all"),
        ("POST", "/api/v1/import"),
        ("POST", "/api/v1/import/prometheus"),
        ("POST", "/write"),
        ("POST", "/influx/write"),
        ("POST", "/prometheus/api/v1/write"),
        ("GET", "/prometheus/api/v1/query?query=up"),
        ("GET", "/api/v1/export?match[]=up"),
        ("GET", "/internal/force_merge"),
        ("GET", "/internal/resetRollupResultCache"),
        ("GET", "/metrics"),
        ("GET", "/vmui"),
        ("POST", "/api/v1/write/../admin/tsdb/delete_series"),
    ] {
        for (who, name) in [(&reader, "Grafana"), (&writer, "a cluster")] {
            assert_eq!(
                status(who, method, &format!("{base}{path}")).await,
                403,
                "{name} reached {method} {path} through the proxy"
            );
        }
    }
    // Nothing of it was deleted: both clusters still answer.
    assert_eq!(
        clusters_of(
            &reader,
            &base,
            r#"count by (cluster) (up{job="node-exporter"})"#
        )
        .await,
        ["alpha", "gamma"]
    );
}
