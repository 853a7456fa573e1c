//! Which proxy the Kubernetes API is reached through, decided as kubectl decides it: the
//! kubeconfig cluster's `proxy-url` if set; otherwise Go's `http.ProxyFromEnvironment`
//! (golang.org/x/net/http/httpproxy/proxy.go): `HTTPS_PROXY` for an https server, `HTTP_PROXY`
//! for an http one (upper case first, then lower), none for a host `NO_PROXY` names, and never
//! for `localhost` or a loopback address. kube-rs alone reads only `HTTPS_PROXY` and matches
//! `NO_PROXY` against the proxy's address rather than the server's, so the decision is made
//! here and handed to it.
//!
//! Grafana and Prometheus are reached with reqwest, which reads the same variables with curl's
//! rules (the same `NO_PROXY` grammar; loopback is proxied unless listed).

use std::net::IpAddr;

/// The proxy environment, passed in so the decision is a pure function.
#[derive(Debug, Default, Clone)]
pub struct ProxyEnv {
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    pub fn from_process() -> Self {
        let get = |upper: &str, lower: &str| {
            std::env::var(upper)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| std::env::var(lower).ok().filter(|v| !v.is_empty()))
        };
        Self {
            https_proxy: get("HTTPS_PROXY", "https_proxy"),
            http_proxy: get("HTTP_PROXY", "http_proxy"),
            no_proxy: get("NO_PROXY", "no_proxy"),
        }
    }
}

/// The proxy URL for a server at `scheme://host:port`, or `None` to connect directly.
pub fn proxy_for(env: &ProxyEnv, scheme: &str, host: &str, port: u16) -> Option<String> {
    let chosen = match scheme {
        "https" => env.https_proxy.as_ref(),
        "http" => env.http_proxy.as_ref(),
        _ => None,
    }?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return None;
    }
    if let Some(list) = &env.no_proxy {
        if list
            .split(',')
            .map(str::trim)
            .any(|e| no_proxy_matches(e, &host, port))
        {
            return None;
        }
    }
    // A bare host:port means http://host:port, as in Go.
    Some(if chosen.contains("://") {
        chosen.clone()
    } else {
        format!("http://{chosen}")
    })
}

/// One `NO_PROXY` entry: `*`, an IP, a CIDR, `host`, `.domain` or either with `:port`.
fn no_proxy_matches(entry: &str, host: &str, port: u16) -> bool {
    let entry = entry.to_ascii_lowercase();
    if entry.is_empty() {
        return false;
    }
    if entry == "*" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some((net, bits)) = entry.split_once('/') {
            return cidr_contains(net, bits, ip);
        }
        if let Ok(e) = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return e == ip;
        }
    }
    let (name, want_port) = match entry.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => match p.parse::<u16>() {
            Ok(p) => (n, Some(p)),
            Err(_) => (entry.as_str(), None),
        },
        _ => (entry.as_str(), None),
    };
    if want_port.is_some_and(|p| p != port) {
        return false;
    }
    if let Some(suffix) = name.strip_prefix('.') {
        // ".example.com" matches its subdomains (and, as in Go, example.com itself).
        return host == suffix || host.ends_with(&format!(".{suffix}"));
    }
    host == name || host.ends_with(&format!(".{name}"))
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(no: &str) -> ProxyEnv {
        ProxyEnv {
            https_proxy: Some("http://proxy.corp:3128".into()),
            http_proxy: Some("proxy.corp:8080".into()),
            no_proxy: Some(no.into()),
        }
    }

    #[test]
    fn the_scheme_picks_the_variable_and_loopback_is_never_proxied() {
        let e = env("");
        assert_eq!(
            proxy_for(&e, "https", "api.eks.example", 443).as_deref(),
            Some("http://proxy.corp:3128")
        );
        assert_eq!(
            proxy_for(&e, "http", "api.local", 6443).as_deref(),
            Some("http://proxy.corp:8080")
        );
        for h in ["localhost", "127.0.0.1", "[::1]", "127.1.2.3"] {
            assert_eq!(proxy_for(&e, "https", h, 6443), None, "{h}");
        }
        assert_eq!(
            proxy_for(&ProxyEnv::default(), "https", "x.example", 443),
            None
        );
    }

    #[test]
    fn no_proxy_takes_hosts_domains_ports_ips_and_cidrs() {
        let e = env("internal.corp, .svc.example,10.0.0.0/8,192.168.1.5,api.other:6443");
        for (host, port) in [
            ("internal.corp", 443),
            ("k8s.internal.corp", 443),
            ("svc.example", 443),
            ("a.svc.example", 443),
            ("10.20.30.40", 6443),
            ("192.168.1.5", 6443),
            ("api.other", 6443),
        ] {
            assert_eq!(proxy_for(&e, "https", host, port), None, "{host}:{port}");
        }
        for (host, port) in [
            ("notinternal.corp", 443),
            ("11.0.0.1", 6443),
            ("192.168.1.6", 6443),
            ("api.other", 443),
        ] {
            assert!(
                proxy_for(&e, "https", host, port).is_some(),
                "{host}:{port}"
            );
        }
        assert_eq!(proxy_for(&env("*"), "https", "anything.example", 443), None);
    }

    #[test]
    fn urls_are_shown_without_user_info() {
        assert_eq!(
            crate::kube::redact_userinfo("https://admin:s3cret@api.example:6443/x"),
            "https://api.example:6443/x"
        );
        assert_eq!(
            crate::kube::redact_userinfo("http://proxy.corp:3128"),
            "http://proxy.corp:3128"
        );
    }
}
