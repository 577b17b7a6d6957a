//! [`Collected`]: the agent's form of a series between collection and
//! encoding. Its name and label set sit behind an `Arc`, so a collector that
//! sees the same series every cycle (a scrape, through its
//! [`SeriesCache`](super::scrape::cache::SeriesCache)) hands out the same
//! label set each time instead of building, copying and freeing it: at one
//! batch a second those copies were a large share of the agent's CPU time.
//!
//! It serializes exactly like `vigil_common::Series` (same fields, same
//! order), so `vigil_common::wire::encode_batch_parts` encodes a batch of
//! them to the bytes `Batch::encode` would give: the wire format is unchanged.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use vigil_common::{Label, Point, Series};

/// A series' name and sorted label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub name: String,
    pub labels: Vec<Label>,
}

/// One series of a collection: a shared identity and this cycle's points.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub identity: Arc<Identity>,
    pub points: Vec<Point>,
    /// Whether the identity is known to be valid (checked once when it was
    /// cached), so the per-cycle sanity check can skip it.
    pub(crate) checked: bool,
}

impl Collected {
    /// A series whose identity was already validated (name, label names,
    /// sorted unique labels).
    pub fn checked(identity: Arc<Identity>, points: Vec<Point>) -> Self {
        Collected {
            identity,
            points,
            checked: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.identity.name
    }

    pub fn labels(&self) -> &[Label] {
        &self.identity.labels
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        (self.identity.labels.iter())
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    /// A copy as a plain [`Series`].
    pub fn to_series(&self) -> Series {
        Series {
            name: self.identity.name.clone(),
            labels: self.identity.labels.clone(),
            points: self.points.clone(),
        }
    }

    /// Checks the name and labels like [`Series::validate`].
    pub fn validate(&self) -> Result<(), String> {
        if self.checked {
            return Ok(());
        }
        // Series::validate's checks and messages, without building a Series.
        if !vigil_common::model::is_valid_metric_name(&self.identity.name) {
            return Err(format!("invalid metric name {:?}", self.identity.name));
        }
        for (i, label) in self.identity.labels.iter().enumerate() {
            let ok_name =
                vigil_common::model::is_valid_label_name(&label.name) && label.name != "__name__";
            if !ok_name {
                return Err(format!(
                    "series {}: invalid label name {:?}",
                    self.identity.name, label.name
                ));
            }
            if i > 0 && self.identity.labels[i - 1].name >= label.name {
                return Err(format!(
                    "series {}: labels not sorted or duplicated at {:?}",
                    self.identity.name, label.name
                ));
            }
        }
        Ok(())
    }
}

impl From<Series> for Collected {
    fn from(s: Series) -> Self {
        Collected {
            identity: Arc::new(Identity {
                name: s.name,
                labels: s.labels,
            }),
            points: s.points,
            checked: false,
        }
    }
}

impl Serialize for Collected {
    /// As `Series` derives it: `name`, `labels`, `points`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Series", 3)?;
        s.serialize_field("name", &self.identity.name)?;
        s.serialize_field("labels", &self.identity.labels)?;
        s.serialize_field("points", &self.points)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_common::wire::{PROTOCOL_VERSION, encode_batch_parts};
    use vigil_common::{Batch, BatchHeader};

    fn series(name: &str, labels: &[(&str, &str)], points: usize) -> Series {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        let p = Point {
            timestamp_ms: 1_700_000_000_123,
            value: -0.25,
        };
        Series::new(name, labels, vec![p; points])
    }

    #[test]
    fn encodes_to_the_bytes_of_the_plain_batch() {
        let plain = vec![
            series("a", &[("host", "h"), ("z", "é\"\n")], 1),
            series("b_total", &[], 3),
            series("c", &[("role", "api")], 0),
        ];
        let header = BatchHeader {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "agent".into(),
            boot_id: [3; 16],
            sequence: 9,
            created_at_ms: 1_700_000_000_000,
            host: "h".into(),
            roles: vec!["api".into()],
        };
        let batch = Batch {
            header: header.clone(),
            series: plain.clone(),
            metadata: Vec::new(),
        };
        let collected: Vec<Collected> = plain.iter().cloned().map(Collected::from).collect();
        let bytes = encode_batch_parts(&header, &collected, &[]).expect("encode");
        assert_eq!(bytes, batch.encode().expect("encode"));
        assert_eq!(Batch::decode(&bytes).expect("decode"), batch);
        assert_eq!(collected[0].to_series(), plain[0]);
        assert_eq!(collected[0].label("z"), Some("é\"\n"));
    }

    #[test]
    fn validates_like_series_unless_checked() {
        for s in [
            series("ok", &[("a", "1"), ("b", "2")], 1),
            series("9bad", &[], 1),
            series("m", &[("__name__", "x")], 1),
            series("m", &[("a-b", "x")], 1),
            Series {
                name: "m".into(),
                labels: vec![Label::new("b", "1"), Label::new("a", "2")],
                points: Vec::new(),
            },
            Series {
                name: "m".into(),
                labels: vec![Label::new("a", "1"), Label::new("a", "2")],
                points: Vec::new(),
            },
        ] {
            let c = Collected::from(s.clone());
            assert_eq!(c.validate(), s.validate(), "{s:?}");
            let trusted = Collected::checked(c.identity.clone(), Vec::new());
            assert_eq!(trusted.validate(), Ok(()));
        }
    }
}
