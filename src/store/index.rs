//! In-memory indexes over stored records: ids by unique prefix, and unique names.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdLookupError {
    #[error("no record with id or id prefix {0:?}")]
    NotFound(String),
    #[error("id prefix {0:?} matches more than one record")]
    Ambiguous(String),
    #[error("empty id")]
    Empty,
}

/// Full ids in sorted order, so a prefix's matches are one contiguous range.
#[derive(Default)]
pub struct IdIndex {
    ids: BTreeSet<String>,
}

impl IdIndex {
    pub fn insert(&mut self, id: &str) {
        self.ids.insert(id.to_string());
    }

    pub fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }

    /// The one id equal to or starting with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<String, IdLookupError> {
        if prefix.is_empty() {
            return Err(IdLookupError::Empty);
        }
        if self.ids.contains(prefix) {
            return Ok(prefix.to_string());
        }
        let mut matches = self
            .ids
            .range(prefix.to_string()..)
            .take_while(|id| id.starts_with(prefix));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(id.clone()),
            (Some(_), Some(_)) => Err(IdLookupError::Ambiguous(prefix.to_string())),
            (None, _) => Err(IdLookupError::NotFound(prefix.to_string())),
        }
    }
}

/// Names held by live records; a name maps to the id that holds it.
#[derive(Default)]
pub struct NameIndex {
    names: HashMap<String, String>,
}

impl NameIndex {
    /// Reserves `name` for `id`, or returns the id that already holds it.
    pub fn reserve(&mut self, name: &str, id: &str) -> Result<(), String> {
        match self.names.get(name) {
            Some(holder) if holder != id => Err(holder.clone()),
            _ => {
                self.names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` holds it.
    pub fn release(&mut self, name: &str, id: &str) {
        if self.names.get(name).is_some_and(|holder| holder == id) {
            self.names.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_only_when_unique() {
        let mut index = IdIndex::default();
        index.insert("abc123");
        index.insert("abd456");
        index.insert("abc");
        assert_eq!(index.resolve("abd").unwrap(), "abd456");
        assert_eq!(index.resolve("abc").unwrap(), "abc");
        assert_eq!(
            index.resolve("ab"),
            Err(IdLookupError::Ambiguous("ab".into()))
        );
        assert_eq!(index.resolve("x"), Err(IdLookupError::NotFound("x".into())));
        assert_eq!(index.resolve(""), Err(IdLookupError::Empty));
        index.remove("abc");
        assert_eq!(index.resolve("abc").unwrap(), "abc123");
    }

    #[test]
    fn names_are_held_until_released_by_their_holder() {
        let mut names = NameIndex::default();
        names.reserve("web_default_u_0", "id1").unwrap();
        assert_eq!(names.reserve("web_default_u_0", "id2"), Err("id1".into()));
        names.release("web_default_u_0", "id2");
        assert_eq!(names.reserve("web_default_u_0", "id2"), Err("id1".into()));
        names.release("web_default_u_0", "id1");
        names.reserve("web_default_u_0", "id2").unwrap();
    }
}
