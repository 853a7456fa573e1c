//! GNU `envsubst` semantics without a SHELL-FORMAT argument, so the agent feeds helm exactly
//! what `envsubst < central_monitor.yaml | helm ... -f -` would: `$NAME` and `${NAME}` are
//! replaced, an unset name by the empty string; everything else is left alone.

use std::collections::BTreeMap;

pub fn envsubst(text: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
            match scan_name(bytes, i + 2) {
                Some(e) if bytes.get(e) == Some(&b'}') => (&text[i + 2..e], e + 1),
                _ => {
                    i += 1;
                    continue;
                }
            }
        } else {
            match scan_name(bytes, i + 1) {
                Some(e) => (&text[i + 1..e], e),
                None => {
                    i += 1;
                    continue;
                }
            }
        };
        out.push_str(&text[copied..i]);
        if let Some(v) = vars.get(name) {
            out.push_str(v);
        }
        i = end;
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Names every `$NAME` / `${NAME}` reference in `text`, in order of first appearance.
pub fn references(text: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let (start, braced) = if bytes.get(i + 1) == Some(&b'{') {
                (i + 2, true)
            } else {
                (i + 1, false)
            };
            if let Some(e) = scan_name(bytes, start) {
                if !braced || bytes.get(e) == Some(&b'}') {
                    let name = text[start..e].to_owned();
                    if !seen.contains(&name) {
                        seen.push(name);
                    }
                }
            }
        }
        i += 1;
    }
    seen
}

/// End of a shell variable name starting at `start` (`[A-Za-z_][A-Za-z0-9_]*`), if any.
fn scan_name(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut e = start + 1;
    while e < bytes.len() && (bytes[e].is_ascii_alphanumeric() || bytes[e] == b'_') {
        e += 1;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn substitutes_both_forms_and_blanks_unset_names() {
        let v = vars(&[("A", "1"), ("B_2", "two")]);
        assert_eq!(envsubst("x=$A y=${B_2} z=${C}.", &v), "x=1 y=two z=.");
    }

    #[test]
    fn leaves_what_is_not_a_reference() {
        let v = vars(&[]);
        for s in ["cost $5", "$", "${", "${1}", "a$-b", "$__"] {
            let expect = if s == "$__" { "" } else { s };
            assert_eq!(envsubst(s, &v), expect, "{s}");
        }
    }

    #[test]
    fn like_gnu_envsubst_it_eats_template_variables() {
        // Why central_monitor.yaml must not contain Go-template `$labels` or Grafana `$__env`.
        assert_eq!(
            envsubst("{{ $labels.x }} $__env{P}", &vars(&[])),
            "{{ .x }} {P}"
        );
    }

    #[test]
    fn lists_references_once_in_order() {
        assert_eq!(references("$B ${A} $B $1 ${}"), ["B", "A"]);
    }
}
