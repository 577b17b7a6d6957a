//! The keys a config type accepts, read from serde itself.
//!
//! A derived `Deserialize` hands the names of *all* its fields to
//! `deserialize_struct` (renames applied, `#[serde(skip)]` fields left out),
//! whatever the input holds. [`keys`] runs a type's `Deserialize` over a
//! document (a `serde_json::Value`, the config file converted) with a
//! deserializer that records, for every struct it is asked to build, its path
//! and field names. A struct the document does not contain is not reached,
//! but its field name is still recorded in its parent, so a key can only hide
//! from the test if its whole chain of parents is missing from the document,
//! and the parents are keys too.
//!
//! Paths are dotted; `[]` stands for "any element of a list" (`collect.scrape[].url`).
//! Maps with user-chosen keys (`headers`, `match`) are leaves: their keys are
//! data, not configuration keys.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::Value;

/// What a walk found: every field path, and the paths that are structs.
#[derive(Debug, Default)]
pub struct Keys {
    pub fields: BTreeSet<String>,
    pub sections: BTreeSet<String>,
}

impl Keys {
    /// Fields that hold a value rather than a nested struct (or list of them).
    pub fn leaves(&self) -> BTreeSet<String> {
        self.fields
            .iter()
            .filter(|f| !self.is_section(f))
            .cloned()
            .collect()
    }

    /// Whether `path` is a struct, or a list (of lists) of structs.
    pub fn is_section(&self, path: &str) -> bool {
        let mut p = path.to_string();
        loop {
            if self.sections.contains(&p) {
                return true;
            }
            if !self
                .sections
                .iter()
                .any(|s| s.starts_with(&format!("{p}[")))
            {
                return false;
            }
            p.push_str("[]");
        }
    }
}

/// Runs `T`'s `Deserialize` over `doc`, recording every struct's fields.
/// Fails when the document does not deserialize as `T`.
pub fn keys<T: de::DeserializeOwned>(doc: &Value) -> Result<Keys, String> {
    let rec = RefCell::new(Keys::default());
    T::deserialize(Walk {
        value: doc,
        path: String::new(),
        rec: &rec,
    })
    .map_err(|e| e.0)?;
    Ok(rec.into_inner())
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Error(msg.to_string())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Walk<'a> {
    value: &'a Value,
    path: String,
    rec: &'a RefCell<Keys>,
}

impl<'de> Deserializer<'de> for Walk<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                path: format!("{}[]", self.path),
                rec: self.rec,
            }),
            Value::Object(map) => visitor.visit_map(Map {
                entries: map.iter(),
                value: None,
                path: self.path,
                rec: self.rec,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        {
            let mut rec = self.rec.borrow_mut();
            rec.sections.insert(self.path.clone());
            for f in fields {
                rec.fields.insert(join(&self.path, f));
            }
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::String(s) => {
                let d: StrDeserializer<'_, Error> = s.as_str().into_deserializer();
                visitor.visit_enum(d)
            }
            other => Err(Error(format!(
                "{}: only unit enum variants (strings) are supported, got {other}",
                self.path
            ))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Value>,
    path: String,
    rec: &'a RefCell<Keys>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some(value) => seed
                .deserialize(Walk {
                    value,
                    path: self.path.clone(),
                    rec: self.rec,
                })
                .map(Some),
        }
    }
}

struct Map<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<(&'a str, &'a Value)>,
    path: String,
    rec: &'a RefCell<Keys>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some((k.as_str(), v));
                let d: StrDeserializer<'_, Error> = k.as_str().into_deserializer();
                seed.deserialize(d).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| Error("value asked before its key".into()))?;
        seed.deserialize(Walk {
            value,
            path: join(&self.path, key),
            rec: self.rec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Inner {
        a: u32,
        #[serde(default, rename = "continue")]
        cont: bool,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
        #[serde(skip)]
        hidden: u8,
    }

    #[test]
    fn records_every_field_of_every_struct_reached() {
        let doc = serde_json::json!({"name": "x", "list": [{"a": 1}], "labels": {"k": "v"}});
        let found = keys::<Outer>(&doc).expect("walks");
        let fields: Vec<&str> = found.fields.iter().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "inner",
                "labels",
                "list",
                "list[].a",
                "list[].continue",
                "name"
            ]
        );
        // `inner` is absent from the document: its own fields are not
        // reached, but it is still a key of its parent.
        assert!(found.is_section("list"));
        assert!(!found.is_section("inner"));
        assert!(!found.is_section("labels"));
        assert!(keys::<Outer>(&serde_json::json!({"list": []})).is_err());
    }
}
