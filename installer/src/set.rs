//! helm's `--set KEY=VALUE` arguments, checked the way helm's strvals parser reads them, so a
//! typo is refused (naming the argument) before anything runs: by bootstrap and check for
//! `--set`, and by `plan` for a fleet file's `set`.

use crate::{Error, Result};

/// The key of Grafana's `server.root_url` in the central release (the subchart's grafana.ini).
pub const GRAFANA_ROOT_URL_KEY: &str = r"grafana.grafana\.ini.server.root_url";

/// `--set` Grafana's `server.root_url` to `url`, the address people open Grafana at: the links
/// of every notification (the alert, its silence, its dashboard) are built from it. `None`
/// when `sets` already set it (the operator's own value wins).
pub fn grafana_root_url(url: &str, sets: &[String]) -> Option<String> {
    if sets.iter().any(|s| s.contains(GRAFANA_ROOT_URL_KEY)) {
        return None;
    }
    let url = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    // helm's --set splits at unescaped commas.
    Some(format!(
        "{GRAFANA_ROOT_URL_KEY}={}",
        url.replace(',', "\\,")
    ))
}

/// Check one `--set` argument the way helm's parser would read it, so a typo is refused before
/// anything runs: `KEY=VALUE[,KEY=VALUE...]`, keys of non-empty dot-separated segments.
pub fn check_set(raw: &str) -> Result<()> {
    let bad = |reason: String| Error::BadSet {
        raw: raw.to_owned(),
        reason,
    };
    for piece in split_unescaped_commas(raw) {
        let Some(eq) = find_unescaped(&piece, '=') else {
            return Err(bad(format!(
                "{piece:?} has no '=': write KEY=VALUE, e.g. prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka"
            )));
        };
        let key = &piece[..eq];
        if key.is_empty() {
            return Err(bad(format!("{piece:?} has an empty key before '='")));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(bad(format!("key {key:?} contains whitespace")));
        }
        for seg in split_unescaped(key, '.') {
            if seg.is_empty() {
                return Err(bad(format!(
                    "key {key:?} has an empty segment (leading, trailing or doubled '.')"
                )));
            }
            if let Some(open) = seg.find('[') {
                let idx = seg[open..]
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'));
                if open == 0
                    || !idx.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(bad(format!(
                        "key segment {seg:?}: a list index is written name[0]"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn find_unescaped(s: &str, c: char) -> Option<usize> {
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == c {
            return Some(i);
        }
    }
    None
}

fn split_unescaped(s: &str, c: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for ch in s.chars() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == c {
            out.push(String::new());
            continue;
        }
        out.last_mut().expect("non-empty").push(ch);
    }
    out
}

/// Commas separate assignments except inside `{a,b}` list values and when escaped.
fn split_unescaped_commas(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    let mut depth = 0usize;
    for ch in s.chars() {
        if escaped {
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == '{' {
            depth += 1;
        } else if ch == '}' {
            depth = depth.saturating_sub(1);
        } else if ch == ',' && depth == 0 {
            out.push(String::new());
            continue;
        }
        out.last_mut().expect("non-empty").push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafanas_root_url_is_set_once_and_survives_helms_comma_split() {
        let set = grafana_root_url("https://grafana.example.org", &[]).unwrap();
        assert_eq!(
            set,
            r"grafana.grafana\.ini.server.root_url=https://grafana.example.org/"
        );
        check_set(&set).unwrap();
        assert_eq!(
            split_unescaped_commas(&grafana_root_url("http://g/a,b", &[]).unwrap()).len(),
            1
        );
        assert!(grafana_root_url("http://g/", &[set]).is_none());
    }

    #[test]
    fn the_seed_set_examples_pass_and_typos_are_named() {
        for ok in [
            "prometheus.prometheusSpec.nodeSelector.kr-mum/noderole=kafka",
            "kubernetesServiceMonitors.enabled=true,kubeStateMetrics.enabled=true",
            "prometheus-node-exporter.hostRootFsMount.enabled=false",
            "a.b[0]=x",
            "list={a,b}",
            "nodeSelector.kubernetes\\.io/os=linux",
            "empty=",
        ] {
            check_set(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("kubeStateMetrics.enabled", "has no '='"),
            ("=true", "empty key"),
            ("a..b=1", "empty segment"),
            ("a b=1", "whitespace"),
            ("a[x]=1", "list index"),
            ("a=1,b", "has no '='"),
        ] {
            let err = check_set(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("`set`"), "{bad}: {err}");
        }
    }
}
