//! The one duration grammar of every CMM setting: a whole number with a unit, `ms`, `s`, `m`,
//! `h` or `d` (a bare number is seconds), e.g. `500ms`, `90s`, `10m`, `1h`, `30d`. Each setting has an
//! upper bound, so a typo cannot turn into a wait of years, and no arithmetic wraps.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{setting} {raw:?} is not a duration: write a whole number with ms, s, m, h or d, e.g. 500ms, 90s, 10m, 1h or 30d")]
    Syntax { setting: String, raw: String },
    #[error("{setting} {raw:?} is outside {min}..={max}: give a value in that range")]
    Range {
        setting: String,
        raw: String,
        min: String,
        max: String,
    },
}

/// Parse `raw` for `setting` (named in errors, e.g. `--timeout / CMM_TIMEOUT`), accepting
/// `min..=max`.
pub fn parse(
    raw: &str,
    setting: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, DurationError> {
    let t = raw.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let syntax = || DurationError::Syntax {
        setting: setting.to_owned(),
        raw: raw.to_owned(),
    };
    if num.is_empty() || num.len() > 12 {
        return Err(syntax());
    }
    let n: u64 = num.parse().map_err(|_| syntax())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(syntax()),
    };
    if d < min || d > max {
        return Err(DurationError::Range {
            setting: setting.to_owned(),
            raw: raw.to_owned(),
            min: show(min),
            max: show(max),
        });
    }
    Ok(d)
}

/// A duration as the grammar writes it (the largest exact unit).
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn one_grammar_with_units_and_bounds() {
        assert_eq!(
            parse("500ms", "--x", Duration::ZERO, DAY).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse("90", "--x", S, DAY).unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse("10m", "--x", S, DAY).unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parse("2h", "--x", S, DAY).unwrap(),
            Duration::from_secs(7200)
        );
        assert_eq!(parse("1d", "--x", S, DAY).unwrap(), DAY);
        // Over the bound in days is a range error, not a syntax one.
        let e = parse("2d", "--x", S, DAY).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        for bad in [
            "",
            "m",
            "1.5m",
            "10 minutes",
            "-1s",
            "1w",
            "99999999999999999999h",
        ] {
            let e = parse(bad, "--timeout / CMM_TIMEOUT", S, DAY)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--timeout / CMM_TIMEOUT") && e.contains("e.g."),
                "{bad}: {e}"
            );
        }
        let e = parse("25h", "--timeout", S, DAY).unwrap_err().to_string();
        assert!(e.contains("outside 1s..=24h"), "{e}");
        let e = parse("0s", "--timeout", S, DAY).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        // No wrap-around: the largest accepted number of hours saturates, then is refused.
        assert!(parse("999999999999h", "--x", S, DAY).is_err());
    }
}
