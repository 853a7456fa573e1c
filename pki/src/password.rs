//! Passwords CMM makes where nobody gave one (Grafana's admin login), from the same random
//! source as the keys (aws-lc's system generator).

/// `len` characters of [A-Za-z0-9]: about 5.95 bits each, so 32 hold ~190 bits, and the value
/// needs no quoting in a shell, a URL or a Secret.
pub fn password(len: usize) -> crate::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Rejection sampling: 248 = 4 × 62, so every kept byte maps to the alphabet evenly.
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        aws_lc_rs::rand::fill(&mut buf)
            .map_err(|_| crate::Error::Generate("no random bytes from the system".into()))?;
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
                .take(len - out.len()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_plain_and_never_the_same() {
        let a = password(32).unwrap();
        let b = password(32).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}
