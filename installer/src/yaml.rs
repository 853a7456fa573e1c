//! How CMM reads YAML (serde-saphyr, the stack kube already links): the parser's bounds for
//! what helm prints, and errors told by position only.

/// The parser's bounds for what helm prints: serde-saphyr's defaults guard against hostile
/// input (250k nodes, 64 levels); a chart's render or its CRDs (`helm show crds`: 1.5 MB, the
/// operator's schemas nest deep) are large but come from the chart the operator chose, so the
/// bounds are raised to what a large chart needs, still finite. No snippet: see [`place`].
pub fn large() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_nodes: 20_000_000,
            max_events: 80_000_000,
            max_depth: 512,
            max_documents: 100_000,
        },
    }
}

/// Where a parse failed, and nothing of the text: serde-saphyr's message quotes the lines
/// around the error (and a type error quotes the value), and the text is a values file, a
/// render or a kubeconfig, which hold passwords and tokens. The position is enough to find it
/// with an editor.
pub fn place(e: &serde_saphyr::Error) -> String {
    match e.location() {
        Some(at) => format!("at line {}, column {}", at.line(), at.column()),
        None => "(the parser gave no position)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_the_place_and_quotes_nothing() {
        let text = "users:\n- name: admin\n  user:\n    token: sk-not-a-real-token\n    x: [\n";
        let e = serde_saphyr::from_str::<serde_json::Value>(text).unwrap_err();
        assert!(
            e.to_string().contains("sk-not-a-real-token"),
            "the parser's own message quotes"
        );
        let said = place(&e);
        assert!(said.starts_with("at line 5, column"), "{said}");
        assert!(!said.contains("sk-not"), "{said}");
    }
}
