//! Bounds on self-update's transfer. The self_update crate gives each request the timeout it
//! is told, which a server that keeps sending (a trickle, or an endless stream) never trips:
//! a 2 GiB stream was once written whole beside the binary before the signature check refused
//! it. So every request goes through [`Bounded`], the crate's own client seam
//! (`self_update::http_client::HttpClient`): one deadline for the whole update, and a size
//! cap on each body, both checked as the bytes arrive.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self_update::http_client::{HeaderMap, HttpClient, HttpResponse};

/// The largest body accepted: a release archive of cmm-agent is about 10 MiB, a release
/// listing a few KiB.
pub const MAX_BODY: u64 = 128 * 1024 * 1024;

/// The crate's reqwest client, with the update's deadline and [`MAX_BODY`] on every body.
pub struct Bounded {
    inner: Arc<dyn HttpClient>,
    deadline: Instant,
    total: Duration,
    max_body: u64,
}

impl Bounded {
    /// `total`: the whole update, listing and download, from now.
    pub fn new(total: Duration, max_body: u64) -> anyhow::Result<Self> {
        let client = self_update::reqwest::blocking::Client::builder()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the update's HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(self_update::http_client::ReqwestClient::from(client)),
            deadline: Instant::now() + total,
            total,
            max_body,
        })
    }

    #[cfg(test)]
    fn over(inner: Arc<dyn HttpClient>, total: Duration, max_body: u64) -> Self {
        Self {
            inner,
            deadline: Instant::now() + total,
            total,
            max_body,
        }
    }

    fn late(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the update did not finish within update-timeout ({}s in total)",
                self.total.as_secs()
            ),
        )
    }
}

fn too_large(max: u64) -> io::Error {
    io::Error::other(format!(
        "the answer is larger than {} MiB, more than any release of cmm-agent: refused",
        max / (1024 * 1024)
    ))
}

impl HttpClient for Bounded {
    fn get(
        &self,
        url: &str,
        headers: &HeaderMap,
        timeout: Option<Duration>,
    ) -> self_update::errors::Result<Box<dyn HttpResponse>> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.late().into());
        }
        let resp = self
            .inner
            .get(url, headers, Some(timeout.map_or(left, |t| t.min(left))))?;
        let declared = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(too_large(self.max_body).into());
        }
        Ok(Box::new(BoundedResponse {
            inner: resp,
            deadline: self.deadline,
            late: self.late().to_string(),
            max_body: self.max_body,
        }))
    }
}

struct BoundedResponse {
    inner: Box<dyn HttpResponse>,
    deadline: Instant,
    late: String,
    max_body: u64,
}

impl HttpResponse for BoundedResponse {
    fn headers(&self) -> &HeaderMap<self_update::http_client::header::HeaderValue> {
        self.inner.headers()
    }

    fn body(self: Box<Self>) -> Box<dyn Read> {
        Box::new(BoundedRead {
            left: self.max_body,
            max_body: self.max_body,
            deadline: self.deadline,
            late: self.late,
            inner: self.inner.body(),
        })
    }
}

/// A body that ends in an error once the deadline passes or more than the cap arrives.
struct BoundedRead {
    inner: Box<dyn Read>,
    left: u64,
    max_body: u64,
    deadline: Instant,
    late: String,
}

impl Read for BoundedRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, self.late.clone()));
        }
        // One byte past the cap is enough to know it is over.
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            // The request's own timeout is the time left: at the deadline, say which bound.
            Err(_) if Instant::now() + Duration::from_millis(250) >= self.deadline => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, self.late.clone()))
            }
            Err(e) => return Err(e),
        };
        if n as u64 > self.left {
            return Err(too_large(self.max_body));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's body as a reader: `chunk` bytes per read, `pause` before each, without end.
    struct Endless {
        chunk: usize,
        pause: Duration,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = buf.len().min(self.chunk);
            buf[..n].fill(0);
            Ok(n)
        }
    }

    struct Fixed(HeaderMap, usize, Duration);

    impl HttpResponse for Fixed {
        fn headers(&self) -> &HeaderMap {
            &self.0
        }
        fn body(self: Box<Self>) -> Box<dyn Read> {
            Box::new(Endless {
                chunk: self.1,
                pause: self.2,
            })
        }
    }

    struct Serving(usize, Duration, Option<u64>);

    impl HttpClient for Serving {
        fn get(
            &self,
            _: &str,
            _: &HeaderMap,
            _: Option<Duration>,
        ) -> self_update::errors::Result<Box<dyn HttpResponse>> {
            let mut h = HeaderMap::new();
            if let Some(len) = self.2 {
                h.insert("content-length", len.to_string().parse().unwrap());
            }
            Ok(Box::new(Fixed(h, self.0, self.1)))
        }
    }

    fn read_all(client: &Bounded) -> io::Result<u64> {
        let body = client
            .get("http://x/a", &HeaderMap::new(), None)
            .map_err(io::Error::other)?;
        io::copy(&mut body.body(), &mut io::sink())
    }

    #[test]
    fn an_endless_body_stops_at_the_cap() {
        let c = Bounded::over(
            Arc::new(Serving(64 * 1024, Duration::ZERO, None)),
            Duration::from_secs(60),
            1024 * 1024,
        );
        let e = read_all(&c).unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
    }

    #[test]
    fn a_declared_size_over_the_cap_is_refused_before_reading() {
        let c = Bounded::over(
            Arc::new(Serving(1, Duration::ZERO, Some(2 * 1024 * 1024))),
            Duration::from_secs(60),
            1024 * 1024,
        );
        let e = c.get("http://x/a", &HeaderMap::new(), None).err().unwrap();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
    }

    #[test]
    fn a_trickle_stops_at_the_deadline() {
        let c = Bounded::over(
            Arc::new(Serving(8, Duration::from_millis(20), None)),
            Duration::from_millis(300),
            u64::MAX / 2,
        );
        let e = read_all(&c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("in total"), "{e}");
    }
}
