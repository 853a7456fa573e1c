//! A fake of GitHub's releases API on 127.0.0.1, for `cmm-agent self-update`: the paths and
//! answers the self_update crate's GitHub backend reads, as GitHub documents them
//! (docs.github.com/rest/releases/releases and …/releases/assets):
//! - `GET /repos/{owner}/{repo}/releases`: an array, newest first; owner and repo are not
//!   case sensitive.
//! - `GET /repos/{owner}/{repo}/releases/latest` and `…/releases/tags/{tag}`: one release
//!   object, or 404 `{"message": "Not Found"}`.
//! - `GET /repos/{owner}/{repo}/releases/assets/{id}`: the asset's JSON, unless the request's
//!   Accept is `application/octet-stream`, then its bytes (GitHub may also answer 302 to a
//!   download host; this fake streams directly, which the docs allow).
//!
//! Archives are `.tar.gz` holding one executable, signed (or not) with zipsign, the scheme the
//! self_update crate verifies; the signature's context is the asset's file name, as the crate
//! passes it (self_update src/update.rs, `verify_signature`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use zipsign_api::SigningKey;

/// The seed of the test release key. Public on purpose: debug builds of cmm-agent trust its
/// verifying key (`agent/src/ops/update.rs`, `TEST_KEY`), release builds never do.
pub const TEST_SEED: [u8; 32] = *b"cmm-agent test key, not secret!!";

pub fn test_key() -> SigningKey {
    SigningKey::from_bytes(&TEST_SEED)
}

/// How an archive is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// By the test key, over the untouched archive.
    Good,
    /// Signed by the test key, then one byte of the archive changed.
    Tampered,
    /// No signature at all.
    Unsigned,
    /// Signed by a key nobody trusts.
    OtherKey,
}

/// The asset name self_update matches for this build's target, e.g.
/// `cmm-agent-0.2.0-x86_64-unknown-linux-gnu.tar.gz`.
pub fn asset_name(version: &str, target: &str) -> String {
    format!("cmm-agent-{version}-{target}.tar.gz")
}

/// A `.tar.gz` holding `cmm-agent` (mode 0755) with `payload` as its bytes, signed as asked.
pub fn archive(name: &str, payload: &[u8], signing: Signing) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(payload.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "cmm-agent", payload)?;
        tar.finish()?;
    }
    let plain = gz.finish()?;
    let key = match signing {
        Signing::Unsigned => return Ok(plain),
        Signing::OtherKey => SigningKey::from_bytes(&[0x5a; 32]),
        Signing::Good | Signing::Tampered => test_key(),
    };
    let mut input = std::io::Cursor::new(plain);
    let mut output = std::io::Cursor::new(Vec::new());
    zipsign_api::sign::copy_and_sign_tar(&mut input, &mut output, &[key], Some(name.as_bytes()))
        .map_err(|e| anyhow::anyhow!("signing {name}: {e}"))?;
    let mut signed = output.into_inner();
    if signing == Signing::Tampered {
        // The last byte is in the gzip trailer, inside what the signature covers.
        let last = signed.len() - 1;
        signed[last] ^= 0x01;
    }
    Ok(signed)
}

#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub tag: String,
    pub assets: Vec<(String, Vec<u8>)>,
}

struct Inner {
    owner: String,
    repo: String,
    /// Oldest first; served newest first.
    releases: Vec<FakeRelease>,
    /// "METHOD path accept" of every request, for assertions.
    requests: Vec<String>,
    /// Serve every asset download this way instead of its bytes.
    stream: Option<Stream>,
}

/// A hostile or broken download: what a bound on the transfer must stop.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Bytes as fast as they are read, without end and without a Content-Length.
    Endless,
    /// 64 bytes every 100 ms without end: every read answers well within any read timeout.
    Trickle,
}

pub struct FakeReleases {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeReleases {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeReleases {
    pub async fn start(owner: &str, repo: &str) -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            releases: Vec::new(),
            requests: Vec::new(),
            stream: None,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            inner,
            task,
        })
    }

    /// Publish a release (it becomes the newest).
    pub fn publish(&self, tag: &str, assets: Vec<(String, Vec<u8>)>) {
        self.inner.lock().unwrap().releases.push(FakeRelease {
            tag: tag.to_owned(),
            assets,
        });
    }

    /// Serve every asset download as `stream` from now on.
    pub fn stream_assets(&self, stream: Stream) {
        self.inner.lock().unwrap().stream = Some(stream);
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }
}

fn asset_id(release: usize, asset: usize) -> usize {
    release * 100 + asset + 1
}

fn release_json(
    base: &str,
    owner: &str,
    repo: &str,
    i: usize,
    r: &FakeRelease,
) -> serde_json::Value {
    let assets: Vec<serde_json::Value> = r
        .assets
        .iter()
        .enumerate()
        .map(|(j, (name, bytes))| {
            let id = asset_id(i, j);
            serde_json::json!({
                "url": format!("{base}/repos/{owner}/{repo}/releases/assets/{id}"),
                "browser_download_url": format!("{base}/{owner}/{repo}/releases/download/{}/{name}", r.tag),
                "id": id,
                "name": name,
                "state": "uploaded",
                "content_type": "application/gzip",
                "size": bytes.len(),
            })
        })
        .collect();
    serde_json::json!({
        "id": i + 1,
        "tag_name": r.tag,
        "name": r.tag,
        "draft": false,
        "prerelease": false,
        "created_at": "2026-11-01T00:00:00Z",
        "published_at": "2026-11-01T00:00:00Z",
        "body": "",
        "html_url": format!("{base}/{owner}/{repo}/releases/tag/{}", r.tag),
        "assets": assets,
    })
}

fn streamed(stream: Stream) -> Response {
    let (chunk, pause) = match stream {
        Stream::Endless => (64 * 1024, None),
        Stream::Trickle => (64, Some(std::time::Duration::from_millis(100))),
    };
    let body = futures_util::stream::unfold((), move |()| async move {
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; chunk])),
            (),
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"message": "Not Found"})),
    )
        .into_response()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request<Body>) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let base = format!("http://{host}");
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = req.uri().path().to_owned();
    let mut inner = inner.lock().unwrap();
    inner
        .requests
        .push(format!("{} {path} {accept}", req.method()));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (owner, repo) = (inner.owner.clone(), inner.repo.clone());
    let ours = parts.len() >= 4
        && parts[0] == "repos"
        && parts[1].eq_ignore_ascii_case(&owner)
        && parts[2].eq_ignore_ascii_case(&repo)
        && parts[3] == "releases";
    if !ours {
        return not_found();
    }
    let json = |i: usize, r: &FakeRelease| release_json(&base, &owner, &repo, i, r);
    match &parts[4..] {
        [] => {
            let list: Vec<serde_json::Value> = inner
                .releases
                .iter()
                .enumerate()
                .rev()
                .map(|(i, r)| json(i, r))
                .collect();
            axum::Json(list).into_response()
        }
        ["latest"] => match inner.releases.iter().enumerate().next_back() {
            Some((i, r)) => axum::Json(json(i, r)).into_response(),
            None => not_found(),
        },
        ["tags", tag] => match inner
            .releases
            .iter()
            .enumerate()
            .find(|(_, r)| r.tag == *tag)
        {
            Some((i, r)) => axum::Json(json(i, r)).into_response(),
            None => not_found(),
        },
        ["assets", id] => {
            let Ok(id) = id.parse::<usize>() else {
                return not_found();
            };
            for (i, r) in inner.releases.iter().enumerate() {
                for (j, (name, bytes)) in r.assets.iter().enumerate() {
                    if asset_id(i, j) != id {
                        continue;
                    }
                    if let (Some(stream), true) =
                        (inner.stream, accept.contains("application/octet-stream"))
                    {
                        return streamed(stream);
                    }
                    if accept.contains("application/octet-stream") {
                        return (
                            [(header::CONTENT_TYPE, "application/octet-stream")],
                            bytes.clone(),
                        )
                            .into_response();
                    }
                    let rel = json(i, r);
                    let asset = rel["assets"]
                        .as_array()
                        .and_then(|a| a.iter().find(|a| a["name"] == name.as_str()))
                        .cloned()
                        .unwrap_or_default();
                    return axum::Json(asset).into_response();
                }
            }
            not_found()
        }
        _ => not_found(),
    }
}
