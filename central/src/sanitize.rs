//! What a remote server says, made fit to show: servers and proxies in between may echo the
//! request's headers or body (the token, a password) in an error page, send terminal control
//! sequences, or answer megabytes. Everything Grafana or Prometheus says reaches a message or a
//! log line only through [`shown`], and every body is read through [`read_capped`].

/// Longest piece of a server's answer put into a message or log line.
pub const MAX_SHOWN: usize = 300;
/// Largest answer read from Grafana or Prometheus; CMM's answers are a few KiB.
pub const MAX_BODY: usize = 4 << 20;

const REDACTED: &str = "[redacted]";

/// `text` with the given secrets and anything shaped like credentials replaced, control
/// characters dropped, whitespace runs folded, and at most [`MAX_SHOWN`] characters kept.
pub fn shown(text: &str, secrets: &[&str]) -> String {
    let mut t = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        t = t.replace(s, REDACTED);
    }
    t = redact_private_keys(&t);
    t = redact_credentials(&t);
    let mut out = String::with_capacity(t.len().min(MAX_SHOWN + 8));
    let mut last_space = false;
    for c in t.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c.is_control() || is_escape_junk(c) {
            continue;
        }
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.chars().count() > MAX_SHOWN {
        let cut: String = trimmed.chars().take(MAX_SHOWN).collect();
        format!("{cut}… (cut)")
    } else {
        trimmed.to_owned()
    }
}

fn is_escape_junk(c: char) -> bool {
    // Bidirectional overrides can make a message read differently from what it says.
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A PEM private key (a TLS client key a server echoes back, say), whole, raw or JSON-escaped;
/// one cut short is redacted to the end.
fn redact_private_keys(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let label_end = after.find("-----").unwrap_or(after.len());
        if !after[..label_end].contains("PRIVATE KEY") {
            out.push_str(&rest[..begin + 11]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..begin]);
        out.push_str(REDACTED);
        rest = match after.find("-----END ") {
            Some(end) => {
                let tail = &after[end + 9..];
                let close = tail.find("-----").map_or(tail.len(), |c| c + 5);
                &tail[close..]
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// `Authorization: Bearer x`, `Basic x`, `"password":"x"`, `token=x` and the like.
fn redact_credentials(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let lower = t.to_ascii_lowercase();
    let bytes = t.as_bytes();
    let mut i = 0;
    let markers = [
        "bearer ",
        "basic ",
        "authorization:",
        "authorization=",
        "\"authorization\":",
        "password\":",
        "password=",
        "password:",
        "token\":",
        "token=",
        "\"key\":",
        "secret\":",
    ];
    'outer: while i < bytes.len() {
        for m in markers {
            if lower[i..].starts_with(m) {
                out.push_str(&t[i..i + m.len()]);
                i += m.len();
                // Skip separators, then the value up to a delimiter.
                while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'"' || bytes[i] == b'\'')
                {
                    out.push(bytes[i] as char);
                    i += 1;
                }
                let start = i;
                // An Authorization value is "scheme credentials": it runs to the end of the
                // field, spaces included.
                let spaces_end = !m.contains("authorization");
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b'"' | b'\'' | b',' | b'}' | b'&' | b'\n' | b'\r' | b';'
                    )
                    && !(spaces_end && bytes[i] == b' ')
                {
                    i += 1;
                }
                if i > start {
                    out.push_str(REDACTED);
                }
                continue 'outer;
            }
        }
        let ch = t[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Read a response body, refusing one larger than `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!(
            "the answer is larger than {} MiB; not read",
            cap >> 20
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err(format!(
                "the answer is larger than {} MiB; not read",
                cap >> 20
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_credential_shapes_never_show() {
        let echoed = "upstream said: Authorization: Bearer glsa_abcdef123456 \
                      {\"password\":\"hunter2\",\"basicAuthPassword\": \"pw-xyz\"} token=t0k3n";
        let s = shown(echoed, &["glsa_abcdef123456"]);
        for leaked in ["glsa_abcdef123456", "hunter2", "pw-xyz", "t0k3n"] {
            assert!(!s.contains(leaked), "{leaked} in {s}");
        }
        assert!(s.contains("[redacted]"), "{s}");
        let basic = shown("Authorization: Basic YWRtaW46YWRtaW4=", &[]);
        assert!(!basic.contains("YWRtaW46YWRtaW4="), "{basic}");
    }

    #[test]
    fn a_private_key_never_shows_raw_or_escaped_or_cut() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----";
        let escaped = key.replace('\n', "\\n");
        for text in [
            format!("bad: {key} after"),
            format!("{{\"tlsClientKey\":\"{escaped}\",\"x\":1}}"),
            format!("cut {}", &key[..40]),
            format!("{cert} then {key}"),
        ] {
            let s = shown(&text, &[]);
            assert!(!s.contains("MIGHAgEA") && s.contains("[redacted]"), "{s}");
        }
        // Certificates are public and stay readable.
        assert!(shown(cert, &[]).contains("MIIBcert"));
    }

    #[test]
    fn control_characters_are_dropped_and_length_bounded() {
        let s = shown("\u{1b}[2J\u{1b}[31mred\u{7}\r\nnext\u{202E}line", &[]);
        assert_eq!(s, "[2J[31mred nextline");
        let long = "x".repeat(10_000);
        let s = shown(&long, &[]);
        assert!(s.chars().count() <= MAX_SHOWN + 8 && s.ends_with("(cut)"));
    }
}
