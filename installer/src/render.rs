//! What a `helm template` stream contains, as objects a plan or a test can look at.

use std::collections::BTreeMap;

use serde::Deserialize;
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
    let files = crate::values::materialize(values)?;
    let stream = helm
        .template(&crate::helm::Release {
            name: release,
            namespace,
            chart,
            values_files: &files.paths,
            sets,
        })
        .await?;
    Rendered::parse(&stream)
}

impl Rendered {
    /// Split helm's multi-document YAML into objects; empty documents are dropped and a `List`
    /// stands for its items, as helm applies it (helm's pkg/kube/client.go builds with the
    /// resource builder's `Flatten()`; the chart's servicePerReplica renders a v1 List).
    pub fn parse(stream: &str) -> Result<Self> {
        let mut objects = Vec::new();
        for (index, doc) in serde_yaml::Deserializer::from_str(stream).enumerate() {
            let value =
                Value::deserialize(doc).map_err(|source| Error::RenderParse { index, source })?;
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
        let mut counts = BTreeMap::new();
        for o in &self.objects {
            let kind = o["kind"].as_str().unwrap_or("<no kind>").to_owned();
            *counts.entry(kind).or_insert(0) += 1;
        }
        counts
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

    #[test]
    fn a_broken_document_is_an_error_with_its_index() {
        let err = Rendered::parse("kind: A\n---\nkind: [\n").unwrap_err();
        assert!(matches!(err, Error::RenderParse { index: 1, .. }), "{err}");
    }
}
