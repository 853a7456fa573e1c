//! What a `helm template` stream contains, as objects a plan or a test can look at.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub objects: Vec<Value>,
}

/// `helm template` of `values` (name, text; helm's order) as `release` in `namespace`, parsed:
/// what `plan`, the render tests and the benches share. The values go through private files
/// (crate::values::materialize), removed when this returns.
pub async fn template<'a>(
    helm: &crate::helm::Helm,
    chart: &crate::chart::ChartSource,
    release: &str,
    namespace: &str,
    values: impl IntoIterator<Item = (&'a str, String)>,
    sets: &[String],
) -> Result<Rendered> {
    Rendered::parse(&stream(helm, chart, release, namespace, values, sets).await?)
}

/// The same `helm template`, as the YAML stream helm printed.
pub async fn stream<'a>(
    helm: &crate::helm::Helm,
    chart: &crate::chart::ChartSource,
    release: &str,
    namespace: &str,
    values: impl IntoIterator<Item = (&'a str, String)>,
    sets: &[String],
) -> Result<String> {
    let files = crate::values::materialize(values)?;
    helm.template(&crate::helm::Release {
        name: release,
        namespace,
        chart,
        values_files: &files.paths,
        sets,
    })
    .await
}

impl Rendered {
    /// Split helm's multi-document YAML into objects; empty documents are dropped and a `List`
    /// stands for its items, as helm applies it (helm's pkg/kube/client.go builds with the
    /// resource builder's `Flatten()`; the chart's servicePerReplica renders a v1 List).
    pub fn parse(stream: &str) -> Result<Self> {
        let mut objects = Vec::new();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple_with_options(stream, crate::yaml::large()).map_err(
                |e| Error::RenderParse {
                    place: crate::yaml::place(&e),
                },
            )?;
        for value in docs {
            if value.is_null() {
                continue;
            }
            if value["kind"] == "List" && value["apiVersion"] == "v1" {
                objects.extend(value["items"].as_array().cloned().unwrap_or_default());
            } else {
                objects.push(value);
            }
        }
        Ok(Self { objects })
    }

    /// Object count per kind, sorted by kind.
    pub fn kinds(&self) -> BTreeMap<String, usize> {
        count_kinds(&self.objects)
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }
}

fn count_kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or("<no kind>").to_owned();
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

/// What bootstrap's decisions read of a render, and only that: each object's `apiVersion`,
/// `kind` and `metadata` (the kind counts of the plan, the names `clash` compares), and a
/// Service whole (its NodePorts). Parsing all of helm's 184 KB stream was a quarter of a dry
/// run's own CPU (issue 26); the skipped parts are cut out as text before the YAML parser
/// sees them, so only the heads are scanned.
///
/// Equal to [`Rendered::parse`] with every object cut down to [`head_of`]: a document the
/// cutting does not understand (no plain `kind:` and `metadata:` line at the top level, a
/// flow or non-mapping document, an alias into a cut part) is parsed whole, and a stream that
/// is not YAML gets `Rendered::parse`'s error. installer/tests/helm_render.rs holds the two
/// equal on every topology's render of the real chart.
#[derive(Debug, Clone, Default)]
pub struct Heads {
    pub objects: Vec<Value>,
    /// Documents given to the parser whole (kept whole, or not understood by the cutting).
    pub parsed_whole: usize,
}

/// Kinds kept whole: a Service's ports, and a `List`'s items (each an object of its own).
const WHOLE: [&str; 2] = ["Service", "List"];
/// The top-level keys kept of any other object.
const HEAD_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

impl Heads {
    pub fn parse(stream: &str) -> Result<Self> {
        let mut heads = Heads::default();
        for doc in documents(stream) {
            match cut(doc).and_then(|text| parse_head(&text)) {
                Some(head) => heads.objects.push(head),
                // Whole, as Rendered::parse takes it; its error (with the line in the whole
                // stream) is the one to show, so a failure starts over there.
                None => match Rendered::parse(doc) {
                    Ok(whole) => {
                        heads.parsed_whole += 1;
                        heads.objects.extend(whole.objects.iter().map(head_of));
                    }
                    Err(_) => return Rendered::parse(stream).map(|r| Heads::from(&r)),
                },
            }
        }
        Ok(heads)
    }

    /// Object count per kind, sorted by kind.
    pub fn kinds(&self) -> BTreeMap<String, usize> {
        count_kinds(&self.objects)
    }
}

impl From<&Rendered> for Heads {
    fn from(r: &Rendered) -> Self {
        Heads {
            objects: r.objects.iter().map(head_of).collect(),
            parsed_whole: r.objects.len(),
        }
    }
}

/// An object as [`Heads`] keeps it.
pub fn head_of(o: &Value) -> Value {
    if WHOLE.iter().any(|k| o["kind"] == *k) {
        return o.clone();
    }
    let mut head = serde_json::Map::new();
    for key in HEAD_KEYS {
        if let Some(v) = o.get(key) {
            head.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(head)
}

/// The documents of a YAML stream as text. A line that starts with `---` or `...` followed by
/// nothing or a blank is a document marker wherever it stands (YAML 1.2, c-forbidden: no
/// scalar may hold one at the start of a line); a part holding only blank and comment lines
/// is no document.
fn documents(stream: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in stream.split_inclusive('\n') {
        let marker = ["---", "..."].iter().any(|m| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.trim().is_empty() || rest.starts_with([' ', '\t']))
        });
        if marker {
            parts.push(&stream[start..at]);
            // What follows `--- ` on its line belongs to the document (`--- {kind: A}`).
            start = at + 3;
        }
        at += line.len();
    }
    parts.push(&stream[start..]);
    parts.into_iter().filter(|p| {
        p.lines().any(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
    })
}

/// `doc` with only the top-level entries [`Heads`] keeps, or `None` to parse it whole. A
/// top-level key is a line at column 0 that is not a comment, not blank and not a compact
/// sequence entry (`- ` under the key above); its entry runs to the next such line.
fn cut(doc: &str) -> Option<String> {
    if doc.starts_with('\u{feff}') {
        return None;
    }
    let mut kept = String::new();
    let (mut keep, mut kind) = (false, None);
    let mut seen = [false; HEAD_KEYS.len()];
    for line in doc.split_inclusive('\n') {
        let indented_or_comment = line.starts_with([' ', '\t', '#', '\r', '\n']);
        let compact_entry = line
            .strip_prefix('-')
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        let top = !(indented_or_comment || compact_entry);
        if top {
            let key = line.split_once(':').map(|(k, _)| k);
            let at = key.and_then(|k| HEAD_KEYS.iter().position(|h| *h == k));
            keep = at.is_some();
            if let Some(at) = at {
                // Twice at the top level: something the line view misreads (a quoted scalar
                // running on at column 0); the parser decides.
                if std::mem::replace(&mut seen[at], true) {
                    return None;
                }
            }
            if key == Some("kind") {
                kind = Some(plain_value(line)?);
            }
        }
        if keep {
            kept.push_str(line);
        }
    }
    let kind = kind?;
    let metadata = HEAD_KEYS
        .iter()
        .zip(seen)
        .any(|(k, s)| s && *k == "metadata");
    (metadata && !WHOLE.contains(&kind)).then_some(kept)
}

/// The value of a one-line `key: value` when plain (no quotes, flow, tag, anchor or alias).
fn plain_value(line: &str) -> Option<&str> {
    let (_, v) = line.split_once(':')?;
    let v = v.split(" #").next()?.trim();
    let plain = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    plain.then_some(v)
}

/// The cut text parsed; `None` unless it is the mapping `cut` promised (then the whole is
/// parsed).
fn parse_head(text: &str) -> Option<Value> {
    let v: Value = serde_saphyr::from_str(text).ok()?;
    (v["kind"].is_string() && v["metadata"].is_object()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_counts_kinds() {
        let r = Rendered::parse(
            "---\n# Source: x\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\n---\nkind: Service\nmetadata: {name: b}\n---\nkind: DaemonSet\nmetadata: {name: c}\n",
        )
        .unwrap();
        assert_eq!(r.objects.len(), 3);
        let list = Rendered::parse(
            "apiVersion: v1\nkind: List\nitems:\n- {kind: Service, metadata: {name: a-0}}\n- {kind: Service, metadata: {name: a-1}}\n",
        )
        .unwrap();
        assert_eq!(list.kinds().get("Service"), Some(&2));
        assert!(list.find("Service", "a-1").is_some());
        assert_eq!(
            r.kinds().into_iter().collect::<Vec<_>>(),
            [("DaemonSet".into(), 1), ("Service".into(), 2)]
        );
        assert!(r.find("Service", "b").is_some());
    }

    /// The heads of each stream are the whole parse cut down, whichever way each document
    /// went (cut, or parsed whole).
    #[test]
    fn heads_are_the_whole_parse_cut_down() {
        let streams = [
            // helm's shape: a source comment, block mappings, a compact sequence at column 0.
            "---\n# Source: a.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  namespace: monitor\n  labels: {app: a}\nspec:\n  template:\n    spec:\n      containers:\n      - name: x\n        args: [\"--kind: Service\"]\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n",
            // Services and Lists whole; a Service inside a List too.
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 30091}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: l-0}, spec: {ports: [{port: 1}]}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: l-1}, data: {a: b}}\n",
            // kind after spec, a trailing comment, CRLF line ends, a document end marker.
            "spec:\r\n  replicas: 1\r\nmetadata:\r\n  name: late\r\nkind: StatefulSet # sts\r\napiVersion: apps/v1\r\n...\r\n",
            // Flow, quoted, an alias into a cut part, an empty and a null document.
            "{apiVersion: v1, kind: ConfigMap, metadata: {name: flow}, data: {}}\n---\n\"kind\": Secret\nmetadata: {name: quoted}\n---\nkind: \"Role\"\nmetadata: {name: q}\n---\nrules: &r [1]\nkind: Role\nmetadata: {name: alias, labels: {r: *r}}\n---\n# nothing\n---\n~\n",
            // A quoted scalar that runs on at column 0 with a key-like line in it.
            "kind: ConfigMap\nmetadata: {name: cm}\ndata:\n  a: \"x\nkind: y\"\n---\nkind: ConfigMap\nmetadata:\n  name: \"m\nmetadata: z\"\n",
            // Content on the marker's line.
            "--- {kind: Secret, metadata: {name: inline}}\n--- \nkind: A\nmetadata: {name: b}\n",
        ];
        for stream in streams {
            let whole = Rendered::parse(stream).unwrap_or_else(|e| panic!("{e}\n{stream}"));
            let heads = Heads::parse(stream).unwrap();
            assert_eq!(heads.objects, Heads::from(&whole).objects, "{stream}");
            assert!(!heads.objects.is_empty());
        }
        // What was cut is gone, what decisions read is there.
        let h = Heads::parse(streams[0]).unwrap();
        assert_eq!(h.objects[0]["metadata"]["labels"]["app"], "a");
        assert!(h.objects[0].get("spec").is_none());
        let h = Heads::parse(streams[1]).unwrap();
        assert_eq!(h.objects[0]["spec"]["ports"][0]["nodePort"], 30091);
        assert_eq!(h.kinds().get("Service"), Some(&2));
    }

    /// Which documents are cut, and which go to the parser whole.
    #[test]
    fn only_plain_block_mappings_are_cut() {
        let cut_to = |doc: &str| cut(doc);
        assert_eq!(
            cut_to("# Source: x\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n").as_deref(),
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
        );
        for whole in [
            "kind: Service\nmetadata: {name: s}\n",
            "kind: List\nmetadata: {}\nitems: []\n",
            "{kind: ConfigMap, metadata: {name: f}}\n",
            "kind: \"ConfigMap\"\nmetadata: {name: q}\n",
            "kind: ConfigMap\n",
            "kind: A\nmetadata: {}\nkind: B\n",
            "\u{feff}kind: A\nmetadata: {}\n",
        ] {
            assert_eq!(cut_to(whole), None, "{whole}");
        }
    }

    #[test]
    fn heads_of_a_stream_that_is_not_yaml_is_the_whole_parses_error() {
        let err = Heads::parse("kind: A\nmetadata: {name: a}\n---\nkind: [\n").unwrap_err();
        assert!(
            err.to_string().ends_with("not YAML at line 4, column 7"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_document_is_an_error_at_its_line() {
        let err = Rendered::parse("kind: A\n---\nkind: [\n").unwrap_err();
        assert!(
            err.to_string().ends_with("not YAML at line 3, column 7"),
            "{err}"
        );
    }
}
