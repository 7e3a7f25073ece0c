//! Deserializing a TOML document without stopping at the first problem.
//!
//! serde stops at the first error, so a bad duration in `[general]` used to hide a misspelt
//! metric two tables later. Here the document is parsed once into toml's spanned tree; each
//! time deserializing fails, the key or array-of-tables element holding the error is taken
//! out and deserializing runs again, until what is left deserializes. Every error found on
//! the way is kept, and what is left still reaches validation, which finds the rest.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue};

/// The outcome of [`deserialize_all`].
pub struct Tolerant<T> {
    /// What deserialized once the bad parts were taken out (`None` on a syntax error).
    pub value: Option<T>,
    pub errors: Vec<toml::de::Error>,
}

/// More removals than this means something is looping; give up with what was found.
const MAX_ROUNDS: usize = 500;

/// Deserializes `text`, collecting every error (see the module docs).
pub fn deserialize_all<T: DeserializeOwned>(
    text: &str,
    prepare: impl FnOnce(&mut DeTable<'_>),
) -> Tolerant<T> {
    let mut root = match DeTable::parse(text) {
        Ok(r) => r,
        Err(e) => {
            return Tolerant {
                value: None,
                errors: vec![e],
            };
        }
    };
    let mut errors = Vec::new();
    prepare(root.get_mut());
    // Tables something was taken out of: a "missing field" there is a consequence of the
    // first error, not a second one.
    let mut removed: Vec<Range<usize>> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let err = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(v) => {
                return Tolerant {
                    value: Some(v),
                    errors,
                };
            }
            Err(e) => e,
        };
        let Some(span) = err.span() else {
            errors.push(err);
            break;
        };
        let consequence =
            err.message().starts_with("missing field") && removed.iter().any(|r| holds(r, span.start));
        let taken = remove_at(root.get_mut(), span.start, &(0..0));
        if !consequence {
            errors.push(err);
        }
        match taken {
            Some(r) => removed.push(r),
            None => break,
        }
    }
    Tolerant { value: None, errors }
}

fn holds(outer: &Range<usize>, at: usize) -> bool {
    outer.start <= at && at < outer.end.max(outer.start + 1)
}

/// Takes out the innermost key or array-of-tables element holding offset `at`. toml gives
/// a table the span of its header only, so every table is searched, not just those whose
/// span holds the offset. Returns the span of the table the removed part was in.
fn remove_at(table: &mut DeTable<'_>, at: usize, parent: &Range<usize>) -> Option<Range<usize>> {
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in keys {
        let Some(value) = table.get_mut(&key) else {
            continue;
        };
        let value_span = value.span();
        let here = holds(&key.span(), at) || holds(&value_span, at);
        match value.get_mut() {
            DeValue::Table(inner) => {
                if let Some(r) = remove_at(inner, at, &value_span) {
                    return Some(r);
                }
            }
            DeValue::Array(items) if items.iter().all(|e| matches!(e.get_ref(), DeValue::Table(_))) => {
                for i in 0..items.len() {
                    let elem_span = items[i].span();
                    if let DeValue::Table(inner) = items.as_mut()[i].get_mut()
                        && let Some(r) = remove_at(inner, at, &elem_span)
                    {
                        return Some(r);
                    }
                    if holds(&elem_span, at) {
                        // One table of an array of tables: the others stay.
                        let mut kept = DeArray::new();
                        for (j, e) in items.iter().enumerate() {
                            if j != i {
                                kept.push(e.clone());
                            }
                        }
                        *items = kept;
                        return Some(value_span);
                    }
                }
            }
            _ => {}
        }
        if here {
            table.remove(&key);
            return Some(parent.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        a: Option<u32>,
        #[serde(default)]
        item: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn every_bad_part_is_reported_and_the_rest_kept() {
        let text = "a = \"x\"\nb = 1\n[[item]]\nname = 3\n[[item]]\nname = \"ok\"\n[[item]]\nname = \"two\"\nn = -1\n";
        let t = deserialize_all::<Doc>(text, |_| {});
        let msgs: Vec<String> = t.errors.iter().map(|e| e.message().to_string()).collect();
        // The wrong `name` type is one error: the "missing field" that follows is not.
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs.iter().all(|m| !m.starts_with("missing field")), "{msgs:?}");
        let doc = t.value.expect("what is left deserializes");
        assert_eq!(doc.a, None);
        assert_eq!(
            doc.item.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["ok", "two"]
        );
    }

    #[test]
    fn a_syntax_error_stops() {
        let t = deserialize_all::<Doc>("[item\n", |_| {});
        assert!(t.value.is_none());
        assert_eq!(t.errors.len(), 1);
    }
}
