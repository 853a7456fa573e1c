//! The Kubernetes client, built from the user's kubeconfig as kubectl resolves it
//! (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`; `--context`, else current-context),
//! and the few API calls the agent makes. Shared by bootstrap, fix-storage and the Grafana side
//! (which looks up the Prometheus NodePort Service and node addresses).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, ResourceRule, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec, SubjectRulesReviewStatus,
};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::access::Permission;
use crate::helm::KubeArgs;
use crate::{Error, Result};

/// Access reviews in flight at once: below client-go's default burst of 10 (kubectl's), so the
/// API server's priority and fairness sees no more than kubectl would send.
pub const REVIEWS_IN_FLIGHT: usize = 8;

/// What the user told us about the cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct KubeTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// The central cluster (reached through the central settings): its messages name
    /// `central-kubeconfig` and `central-context`, not this cluster's settings.
    pub central: bool,
}

impl KubeTarget {
    /// The keys of the settings this target came from: (kubeconfig, context).
    pub fn keys(&self) -> (&'static str, &'static str) {
        if self.central {
            ("central-kubeconfig", "central-context")
        } else {
            ("kubeconfig", "context")
        }
    }
}

/// The systemd credential the packaged unit passes the kubeconfig as.
pub const KUBECONFIG_CREDENTIAL: &str = "kubeconfig";

/// A client for one resolved cluster.
#[derive(Clone)]
pub struct Connected {
    pub client: Client,
    pub api_url: String,
    pub context: String,
    /// The same cluster for helm: the explicit kubeconfig (else helm reads KUBECONFIG/HOME
    /// exactly as we did) and the resolved context, always explicit.
    pub helm: KubeArgs,
    /// The command of the context user's exec credential plugin (`aws`, `gke-gcloud-auth-plugin`,
    /// `kubelogin`), if it authenticates with one.
    pub exec_plugin: Option<String>,
}

/// Where the kubeconfig came from, for error messages that name the setting to fix.
fn kubeconfig_files(target: &KubeTarget) -> Result<(Vec<PathBuf>, &'static str)> {
    let setting = target.keys().0;
    if let Some(p) = &target.kubeconfig {
        let from = if target.central {
            "the central-kubeconfig setting"
        } else {
            "the kubeconfig setting"
        };
        if !p.is_file() {
            return Err(Error::KubeconfigMissing {
                path: p.display().to_string(),
                from,
                setting,
            });
        }
        return Ok((vec![p.clone()], from));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        // Like kubectl: files in the list that do not exist are skipped.
        let files: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| p.is_file())
            .collect();
        if files.is_empty() {
            return Err(Error::KubeconfigMissing {
                path: list.to_string_lossy().into_owned(),
                from: "KUBECONFIG",
                setting,
            });
        }
        return Ok((files, "KUBECONFIG"));
    }
    // Under the packaged unit the kubeconfig is the systemd credential `kubeconfig`
    // (LoadCredential=kubeconfig:/etc/cmm/kubeconfig); an empty one is the unit's
    // SetCredential= fallback for a file not written yet, and means "none".
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    if let Some(dir) = &credentials {
        let cred = dir.join(KUBECONFIG_CREDENTIAL);
        if std::fs::metadata(&cred).is_ok_and(|m| m.is_file() && m.len() > 0) {
            return Ok((vec![cred], "the systemd credential kubeconfig"));
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let default = home.join(".kube").join("config");
    if !default.is_file() {
        return Err(Error::KubeconfigMissing {
            path: default.display().to_string(),
            setting,
            from: if credentials.is_some() {
                "the default ~/.kube/config (no kubeconfig setting, no KUBECONFIG, and the \
                 systemd credential kubeconfig is empty: write this cluster's kubeconfig to \
                 /etc/cmm/kubeconfig, mode 0600)"
            } else {
                "the default ~/.kube/config (no kubeconfig setting, no KUBECONFIG)"
            },
        });
    }
    Ok((vec![default], "~/.kube/config"))
}

fn read_kubeconfig(files: &[PathBuf], setting: &'static str) -> Result<Kubeconfig> {
    let mut merged: Option<Kubeconfig> = None;
    for f in files {
        let kc = Kubeconfig::read_from(f).map_err(|e| Error::Kubeconfig {
            path: f.display().to_string(),
            // kube's message for a parse error quotes the lines around it: a token, often.
            message: match e {
                kube::config::KubeconfigError::Parse(e) => {
                    format!("is not YAML {}", crate::yaml::place(&e))
                }
                other => other.to_string(),
            },
            setting,
        })?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| Error::Kubeconfig {
                path: f.display().to_string(),
                message: e.to_string(),
                setting,
            })?,
        });
    }
    merged.ok_or_else(|| Error::Kubeconfig {
        path: String::new(),
        message: "no kubeconfig file".into(),
        setting,
    })
}

/// Build the client. Reads files only; talks to no server.
pub async fn connect(target: &KubeTarget) -> Result<Connected> {
    let (files, from) = kubeconfig_files(target)?;
    let shown = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let (kubeconfig_key, context_key) = target.keys();
    let kc = read_kubeconfig(&files, kubeconfig_key)?;
    let context = match (&target.context, &kc.current_context) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) if !c.is_empty() => c.clone(),
        _ => {
            return Err(Error::Kubeconfig {
                path: shown,
                message: format!(
                "it has no current-context: set the `{context_key}` setting (contexts there: {})",
                context_names(&kc)
            ),
                setting: context_key,
            })
        }
    };
    if !kc.contexts.iter().any(|c| c.name == context) {
        let given = format!("the {context_key} setting");
        return Err(Error::Kubeconfig {
            path: shown,
            message: format!(
                "context {context:?} is not in it (from {}): give one of [{}] as the `{context_key}` setting",
                if target.context.is_some() { given.as_str() } else { from },
                context_names(&kc)
            ),
            setting: context_key,
        });
    }
    // kubectl's proxy choice: the cluster's own proxy-url, else the environment (crate::proxy).
    let kubeconfig_proxy = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| kc.clusters.iter().find(|cl| cl.name == c.cluster))
        .and_then(|cl| cl.cluster.as_ref())
        .and_then(|cl| cl.proxy_url.clone())
        .filter(|p| !p.is_empty());
    let exec_plugin = exec_command(&kc, &context);
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| Error::Kubeconfig {
            path: shown.clone(),
            message: format!("context {context:?}: {e}"),
            setting: context_key,
        })?;
    config.proxy_url = match kubeconfig_proxy {
        Some(p) => Some(p),
        None => {
            let url = &config.cluster_url;
            crate::proxy::proxy_for(
                &crate::proxy::ProxyEnv::from_process(),
                url.scheme_str().unwrap_or("https"),
                url.host().unwrap_or_default(),
                url.port_u16()
                    .unwrap_or(if url.scheme_str() == Some("http") {
                        80
                    } else {
                        443
                    }),
            )
        }
    }
    .map(|p| {
        p.parse().map_err(|e| Error::Kubeconfig {
            path: shown.clone(),
            message: format!("proxy {p:?} (proxy-url or HTTPS_PROXY/HTTP_PROXY) is not a URL: {e}"),
            setting: kubeconfig_key,
        })
    })
    .transpose()?;
    if let Some(p) = &config.proxy_url {
        tracing::debug!(proxy = %redact_userinfo(&p.to_string()), "reaching the Kubernetes API through a proxy");
    }
    // An unreachable API must fail in seconds, not hang a bootstrap.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    // Shown in every message and report: never with a user:password@ part.
    let api_url = redact_userinfo(&config.cluster_url.to_string());
    let client = Client::try_from(config).map_err(|e| Error::KubeUnreachable {
        url: api_url.clone(),
        message: e.to_string(),
    })?;
    Ok(Connected {
        client,
        api_url,
        context: context.clone(),
        helm: KubeArgs {
            kubeconfig: target.kubeconfig.clone(),
            context: Some(context),
        },
        exec_plugin,
    })
}

/// The exec credential plugin's command of `context`'s user, if it has one.
fn exec_command(kc: &Kubeconfig, context: &str) -> Option<String> {
    kc.contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.as_deref())
        .and_then(|u| kc.auth_infos.iter().find(|a| a.name == u))
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| a.exec.as_ref())
        .and_then(|e| e.command.clone())
}

/// The exec credential plugin `target` would authenticate with, read from its kubeconfig
/// without contacting anything (for a connection that failed: the likely cause).
pub fn exec_plugin(target: &KubeTarget) -> Option<String> {
    let (files, _) = kubeconfig_files(target).ok()?;
    let kc = read_kubeconfig(&files, target.keys().0).ok()?;
    let context = target
        .context
        .clone()
        .or_else(|| kc.current_context.clone())?;
    exec_command(&kc, &context)
}

fn not_kubernetes(seen: &str) -> String {
    format!(
        "it answers, but not as a Kubernetes API ({seen}): the kubeconfig's server points at \
         something else (a web page, a proxy's own page, the wrong port): check its server address and port"
    )
}

/// A transport failure in words, with the fix: what the libraries say is in the error's
/// source chain, several layers down; the layers above it repeat each other.
pub fn in_words(e: &(dyn std::error::Error + 'static), url: &str) -> String {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        chain.push(err.to_string());
        cur = err.source();
    }
    let all = chain.join(": ").to_lowercase();
    let deepest = chain.last().cloned().unwrap_or_default();
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or(url);
    if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
    {
        format!(
            "the name in {host} cannot be resolved (DNS: {deepest}); check the kubeconfig's \
             server, the resolver, or the VPN (a proxy-only name needs HTTPS_PROXY and no NO_PROXY entry)"
        )
    } else if all.contains("connection refused") {
        format!(
            "connection refused at {host}: nothing listens there; check the server's address \
             and port in the kubeconfig and that the API server runs"
        )
    } else if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        format!(
            "the TLS handshake with {host} failed ({deepest}); check the kubeconfig's \
             certificate-authority(-data) and that the server name matches its certificate"
        )
    } else if all.contains("timed out") || all.contains("elapsed") || all.contains("deadline") {
        format!(
            "no answer from {host} in time (timed out); check the network path, firewall or VPN, \
             and any proxy (HTTPS_PROXY/NO_PROXY)"
        )
    } else if all.contains("proxy") || all.contains("tunnel") {
        format!("the proxy refused or failed the tunnel to {host} ({deepest}); check HTTPS_PROXY/HTTP_PROXY or the kubeconfig's proxy-url")
    } else {
        format!("{deepest}; check the kubeconfig's server, the network and the credentials")
    }
}

/// A URL without its `user:password@` part, for messages and logs.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn context_names(kc: &Kubeconfig) -> String {
    kc.contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Connected {
    pub(crate) fn api_err(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error + '_ {
        let what = what.into();
        move |e| match e {
            kube::Error::Api(s) => Error::KubeApi {
                what,
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => Error::KubeUnreachable {
                url: self.api_url.clone(),
                message: format!("{what}: {}", in_words(&other, &self.api_url)),
            },
        }
    }

    /// `/version` gitVersion; the first call, so it doubles as the reachability check.
    pub async fn server_version(&self) -> Result<String> {
        let info = self.client.apiserver_version().await.map_err(|e| {
            let message = match &e {
                kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
                    "the API server refused the credentials ({} {}): refresh them (e.g. `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`)",
                    s.code, s.message
                ),
                kube::Error::Api(s) if s.code == 404 => not_kubernetes(&format!("/version answered 404 {}", s.message)),
                kube::Error::SerdeError(e) => not_kubernetes(&format!("/version is not Kubernetes' JSON ({e})")),
                other => in_words(other, &self.api_url),
            };
            Error::KubeUnreachable {
                url: self.api_url.clone(),
                message,
            }
        })?;
        Ok(info.git_version)
    }

    pub async fn nodes(&self) -> Result<Vec<Node>> {
        let list = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(self.api_err("listing nodes"))?;
        Ok(list.items)
    }

    /// Ask the API server, per permission, whether the current identity has it.
    ///
    /// Namespaced permissions first through one SelfSubjectRulesReview per namespace (what
    /// `kubectl auth can-i --list` asks): a rule it lists grants; when the review is complete
    /// (every authorizer could list its rules, as RBAC can) a permission no rule grants is
    /// denied. What a review cannot settle (incomplete: a webhook authorizer, as on GKE; a
    /// server that refuses the review) and every cluster-scoped permission (a namespace's
    /// rules mix in RoleBindings, which never grant cluster-scoped access) is asked one
    /// SelfSubjectAccessReview each, unless one review of `*` settles all the cluster-scoped
    /// ones ([`may_do_anything_cluster_wide`](Self::may_do_anything_cluster_wide)); at most
    /// [`REVIEWS_IN_FLIGHT`] at once: over HTTP/1.1 each
    /// request in flight holds its own connection, so ~90 reviews fired together opened ~90
    /// connections; bounded, the client's pool hands the same few from one review to the next.
    pub async fn can_i(&self, perms: &[Permission]) -> Result<Vec<(bool, String)>> {
        let mut settled: Vec<Option<(bool, String)>> = vec![None; perms.len()];
        let namespaces: std::collections::BTreeSet<&str> = perms
            .iter()
            .filter_map(|p| p.namespace.as_deref())
            .collect();
        // Every namespace's review answered and complete: no authorizer that cannot list its
        // rules (a webhook, the only kind that can deny) stands before RBAC.
        let mut all_complete = !namespaces.is_empty();
        for ns in namespaces {
            let Some(review) = self.rules_in(ns).await else {
                all_complete = false;
                continue;
            };
            all_complete &= !review.incomplete;
            for (i, p) in perms.iter().enumerate() {
                if p.namespace.as_deref() == Some(ns) {
                    settled[i] = rules_answer(&review, p, ns);
                }
            }
        }
        let cluster_scoped = (0..perms.len())
            .filter(|&i| settled[i].is_none() && perms[i].namespace.is_none())
            .count();
        if all_complete && cluster_scoped > 1 && self.may_do_anything_cluster_wide().await? {
            for (i, p) in perms.iter().enumerate() {
                if settled[i].is_none() && p.namespace.is_none() {
                    settled[i] = Some((
                        true,
                        "granted by a cluster-wide rule for every verb and resource".to_owned(),
                    ));
                }
            }
        }
        let rest: Vec<usize> = (0..perms.len()).filter(|&i| settled[i].is_none()).collect();
        let asked = self
            .access_reviews(&rest.iter().map(|&i| &perms[i]).collect::<Vec<_>>())
            .await?;
        for (i, answer) in rest.into_iter().zip(asked) {
            settled[i] = Some(answer);
        }
        Ok(settled.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// One SelfSubjectAccessReview for verb, group and resource `*`, cluster-scoped: RBAC
    /// allows it only through a ClusterRoleBinding to a rule holding `*` in all three (a
    /// requested `*` matches only a rule's `*`: kubernetes pkg/apis/rbac/v1/
    /// evaluation_helpers.go, VerbMatches, APIGroupMatches, ResourceMatches; a cluster-scoped
    /// request visits no RoleBinding: plugin/pkg/auth/authorizer/rbac/rbac.go), which grants
    /// every cluster-scoped permission. Asked only when the rules reviews were complete, so no
    /// webhook could deny one of them while allowing `*`: cluster-admin (what bootstrap is
    /// usually run as) settles ~30 reviews with this one.
    async fn may_do_anything_cluster_wide(&self) -> Result<bool> {
        let all = Permission {
            verb: "*",
            group: "*",
            resource: "*",
            namespace: None,
        };
        let answer = self.access_reviews(&[&all]).await?;
        Ok(answer.first().is_some_and(|(allowed, _)| *allowed))
    }

    /// The rules the current identity has in `ns`, or `None` when the server does not answer
    /// the review (then each permission is asked alone).
    async fn rules_in(&self, ns: &str) -> Option<SubjectRulesReviewStatus> {
        let api = Api::<SelfSubjectRulesReview>::all(self.client.clone());
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(ns.to_owned()),
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(r) => r.status,
            Err(e) => {
                tracing::debug!(namespace = ns, error = %e, "no rules review; asking each permission");
                None
            }
        }
    }

    /// One SelfSubjectAccessReview per permission, bounded (see [`can_i`](Self::can_i)).
    async fn access_reviews(&self, perms: &[&Permission]) -> Result<Vec<(bool, String)>> {
        let api = Api::<SelfSubjectAccessReview>::all(self.client.clone());
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(REVIEWS_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, p) in perms.iter().enumerate() {
            let api = api.clone();
            let slots = slots.clone();
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(p.verb.to_owned()),
                        group: Some(p.group.to_owned()),
                        resource: Some(p.resource.to_owned()),
                        namespace: p.namespace.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _slot = slots.acquire_owned().await;
                (i, api.create(&PostParams::default(), &review).await)
            });
        }
        let mut out = vec![(false, String::new()); perms.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, res) = joined.map_err(|e| Error::KubeUnreachable {
                url: self.api_url.clone(),
                message: format!("access review task: {e}"),
            })?;
            let r = res.map_err(self.api_err("asking SelfSubjectAccessReview"))?;
            let status = r.status.unwrap_or_default();
            out[i] = (status.allowed, status.reason.unwrap_or_default());
        }
        Ok(out)
    }

    /// Who the API server thinks we are (SelfSubjectReview, Kubernetes >= 1.28); `None` when
    /// the server does not offer it.
    pub async fn whoami(&self) -> Result<Option<String>> {
        let api = Api::<SelfSubjectReview>::all(self.client.clone());
        match api
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
        {
            Ok(r) => Ok(r.status.and_then(|s| s.user_info).and_then(|u| u.username)),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => Ok(None),
            Err(e) => Err(self.api_err("asking SelfSubjectReview")(e)),
        }
    }

    pub async fn namespace(&self, name: &str) -> Result<Option<Namespace>> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(self.api_err(format!("reading namespace {name}")))
    }

    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "cmm-agent".to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            // Someone made it meanwhile: what we wanted.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.api_err(format!("creating namespace {name}"))(e)),
        }
    }

    /// One Secret, payload included (CMM's own TLS Secrets only; helm's are read as metadata).
    pub async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::Secret>> {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(self.api_err(format!("reading Secret {namespace}/{name}")))
    }

    /// Create the Secret, or replace it when `secret` carries the resourceVersion it was read
    /// at: a concurrent change makes this fail with 409 instead of being overwritten.
    pub async fn write_secret(
        &self,
        namespace: &str,
        secret: &k8s_openapi::api::core::v1::Secret,
    ) -> Result<()> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let api =
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), namespace);
        let r = if secret.metadata.resource_version.is_some() {
            api.replace(&name, &PostParams::default(), secret).await
        } else {
            api.create(&PostParams::default(), secret).await
        };
        r.map(|_| ())
            .map_err(self.api_err(format!("writing Secret {namespace}/{name}")))
    }

    /// Create an empty ConfigMap unless it exists (a concurrent creation is as good).
    /// Returns whether this call created it.
    pub async fn ensure_configmap(&self, namespace: &str, name: &str) -> Result<bool> {
        use k8s_openapi::api::core::v1::ConfigMap;
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), namespace);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [("app.kubernetes.io/part-of".to_owned(), "cmm".to_owned())]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self
                .api_err(format!("creating ConfigMap {namespace}/{name}"))(
                e
            )),
        }
    }

    /// One key of a ConfigMap set (or removed, with `None`) by a JSON merge patch: the other
    /// keys are left as they are, so writers of different keys never race. `Ok(false)` when
    /// the ConfigMap does not exist.
    pub async fn set_configmap_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool> {
        use k8s_openapi::api::core::v1::ConfigMap;
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"data": {key: value}});
        match api
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self
                .api_err(format!("writing key {key} of ConfigMap {namespace}/{name}"))(
                e,
            )),
        }
    }

    /// A JSON merge patch of one Deployment (the central check's controlled restarts).
    pub async fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        use k8s_openapi::api::apps::v1::Deployment;
        Api::<Deployment>::namespaced(self.client.clone(), namespace)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .map(|_| ())
            .map_err(self.api_err(format!("patching Deployment {namespace}/{name}")))
    }

    /// Delete one pod (its controller makes it again); a pod already gone is as good.
    pub async fn delete_pod(&self, namespace: &str, name: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::Pod;
        match Api::<Pod>::namespaced(self.client.clone(), namespace)
            .delete(name, &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.api_err(format!("deleting pod {namespace}/{name}"))(e)),
        }
    }

    /// One key of a ConfigMap (`None`: no such ConfigMap or key).
    pub async fn configmap_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>> {
        use k8s_openapi::api::core::v1::ConfigMap;
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(self.api_err(format!("reading ConfigMap {namespace}/{name}")))?;
        Ok(cm.and_then(|c| c.data?.get(key).cloned()))
    }

    /// Metadata (labels only, never the payload) of helm's release Secrets.
    pub async fn release_secrets(&self, namespace: &str, release: &str) -> Result<Vec<ObjectMeta>> {
        let lp = ListParams::default().labels(&crate::release::secret_selector(release));
        let list =
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), namespace)
                .list_metadata(&lp)
                .await
                .map_err(self.api_err(format!("listing helm release secrets in {namespace}")))?;
        Ok(list.items.into_iter().map(|o| o.metadata).collect())
    }

    /// Every object of a namespaced kind `K` in `namespace`.
    pub async fn list_in<K>(&self, namespace: &str) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.list_api(Api::<K>::namespaced(self.client.clone(), namespace))
            .await
    }

    /// Objects of a namespaced kind `K` in `namespace` matching a label selector.
    pub async fn list_labeled<K>(&self, namespace: &str, selector: &str) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let list = Api::<K>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(self.api_err(format!("listing {} ({selector})", K::plural(&()))))?;
        Ok(list.items)
    }

    /// Every object of kind `K` in the cluster.
    pub async fn list_all<K>(&self) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.list_api(Api::<K>::all(self.client.clone())).await
    }

    async fn list_api<K>(&self, api: Api<K>) -> Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(self.api_err(format!("listing {}", K::plural(&()))))?;
        Ok(list.items)
    }

    /// What is stuck in `namespace`, from its claims and pods and the cluster's volumes.
    /// Bootstrap's preflight and fix-storage both ask this, so they cannot disagree.
    pub async fn stuck_storage(&self, namespace: &str) -> Result<crate::storage::StoragePlan> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
        let claims = self.list_in::<PersistentVolumeClaim>(namespace).await?;
        let volumes = self.list_all::<PersistentVolume>().await?;
        let pods = self.list_in::<Pod>(namespace).await?;
        Ok(crate::storage::plan(namespace, &claims, &volumes, &pods))
    }

    pub async fn claim_exists(&self, namespace: &str, name: &str) -> Result<bool> {
        let api = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
            self.client.clone(),
            namespace,
        );
        Ok(api
            .get_opt(name)
            .await
            .map_err(self.api_err(format!("reading claim {namespace}/{name}")))?
            .is_some())
    }

    /// The seed's `kubectl patch pv NAME -p '{"metadata":{"finalizers":null}}'`.
    pub async fn clear_volume_finalizers(&self, name: &str) -> Result<()> {
        let api = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(self.client.clone());
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self
                .api_err(format!("clearing finalizers of volume {name}"))(
                e
            )),
        }
    }
}

/// The admin host's `/proc/version`, if readable (not on macOS, not in every container).
pub fn host_proc_version(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A permission in `ns` as a rules review settles it: granted by a listed rule; denied when
/// the review is complete and no rule grants it; `None` (ask it alone) otherwise.
fn rules_answer(
    review: &SubjectRulesReviewStatus,
    p: &Permission,
    ns: &str,
) -> Option<(bool, String)> {
    if review.resource_rules.iter().any(|r| rule_grants(r, p)) {
        Some((true, format!("granted in {ns} (SelfSubjectRulesReview)")))
    } else if review.incomplete {
        None
    } else {
        Some((
            false,
            format!("no rule grants it in {ns} (SelfSubjectRulesReview)"),
        ))
    }
}

/// Whether one listed rule grants `p` for any object of its kind, as RBAC matches a rule
/// (kubernetes pkg/apis/rbac/v1/evaluation_helpers.go: VerbMatches, APIGroupMatches,
/// ResourceMatches, ResourceNameMatches): `*` matches every verb, group or resource; a rule
/// naming objects (`resourceNames`) grants only those, never a list or a create.
fn rule_grants(rule: &ResourceRule, p: &Permission) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let names = rule.resource_names.as_deref().unwrap_or_default();
    any(&rule.verbs, p.verb)
        && any(groups, p.group)
        && any(resources, p.resource)
        && names.is_empty()
}

#[cfg(test)]
mod rules_tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> ResourceRule {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ResourceRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: (!names.is_empty()).then(|| v(names)),
        }
    }

    fn perm(verb: &'static str, group: &'static str, resource: &'static str) -> Permission {
        Permission {
            verb,
            group,
            resource,
            namespace: Some("monitor".into()),
        }
    }

    #[test]
    fn a_rule_grants_as_rbac_matches_it() {
        let create_ds = perm("create", "apps", "daemonsets");
        assert!(rule_grants(&rule(&["*"], &["*"], &["*"], &[]), &create_ds));
        assert!(rule_grants(
            &rule(&["get", "create"], &["apps"], &["daemonsets"], &[]),
            &create_ds
        ));
        // Another verb, group or resource; a subresource; a rule for named objects only.
        assert!(!rule_grants(
            &rule(&["get"], &["apps"], &["daemonsets"], &[]),
            &create_ds
        ));
        assert!(!rule_grants(
            &rule(&["create"], &[""], &["daemonsets"], &[]),
            &create_ds
        ));
        assert!(!rule_grants(
            &rule(&["create"], &["apps"], &["daemonsets/status"], &[]),
            &create_ds
        ));
        assert!(!rule_grants(
            &rule(&["create"], &["apps"], &["daemonsets"], &["cmm"]),
            &create_ds
        ));
        // The core group is the empty name.
        assert!(rule_grants(
            &rule(&["list"], &[""], &["pods"], &[]),
            &perm("list", "", "pods")
        ));
    }

    #[test]
    fn a_complete_review_denies_what_no_rule_grants_an_incomplete_one_asks_again() {
        let rules = vec![rule(&["list"], &[""], &["pods"], &[])];
        let complete = SubjectRulesReviewStatus {
            resource_rules: rules.clone(),
            incomplete: false,
            ..Default::default()
        };
        let incomplete = SubjectRulesReviewStatus {
            resource_rules: rules,
            incomplete: true,
            ..Default::default()
        };
        let pods = perm("list", "", "pods");
        let secrets = perm("list", "", "secrets");
        assert_eq!(
            rules_answer(&complete, &pods, "monitor").map(|a| a.0),
            Some(true)
        );
        assert_eq!(
            rules_answer(&complete, &secrets, "monitor").map(|a| a.0),
            Some(false)
        );
        assert_eq!(
            rules_answer(&incomplete, &pods, "monitor").map(|a| a.0),
            Some(true)
        );
        assert_eq!(rules_answer(&incomplete, &secrets, "monitor"), None);
    }
}
