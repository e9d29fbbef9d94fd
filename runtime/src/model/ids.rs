//! The public ids of runs and batches, and how new ones are made: unguessable and unique across
//! processes and hosts.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::Deserializer;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(#[serde(deserialize_with = "deserialize_shared_str")] Arc<str>);

        impl $name {
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id.into())
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                *self.0 == *other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                *self.0 == **other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

/// Reads an id into its `Arc<str>` at once: serde's own impl reads a `String`, then copies it.
fn deserialize_shared_str<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    struct Shared;
    impl serde::de::Visitor<'_> for Shared {
        type Value = Arc<str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Arc<str>, E> {
            Ok(Arc::from(s))
        }
    }
    d.deserialize_str(Shared)
}

id_newtype! {
    /// The public id of a run, such as `run_1234abcd`.
    RunId
}

id_newtype! {
    /// The public id of a batch of runs, such as `batch_1234abcd`.
    BatchId
}

/// How many random characters follow an id's prefix: 25 of 32 letters and digits, 125 random
/// bits, so ids made by any number of processes never collide and cannot be guessed.
const RANDOM_CHARS: usize = 25;

/// A new id: `prefix` (`run_`, `batch_`) and [`RANDOM_CHARS`] lower-case letters and digits
/// (Crockford's base 32: no `i`, `l`, `o` or `u`) from a cryptographically secure generator
/// (the thread's, seeded by the operating system).
pub(crate) fn new_id<I: for<'a> From<&'a str>>(prefix: &str) -> I {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bits = rand::random::<u128>();
    let mut id = [0u8; 32];
    let len = prefix.len() + RANDOM_CHARS;
    id[..prefix.len()].copy_from_slice(prefix.as_bytes());
    for byte in &mut id[prefix.len()..len] {
        *byte = ALPHABET[(bits & 31) as usize];
        bits >>= 5;
    }
    // ASCII, so valid UTF-8.
    I::from(std::str::from_utf8(&id[..len]).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_prefix_and_differ() {
        let ids: std::collections::HashSet<RunId> = (0..10_000).map(|_| new_id("run_")).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            let random = id.as_str().strip_prefix("run_").unwrap();
            assert_eq!(random.len(), RANDOM_CHARS);
            assert!(
                random
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert!(!random.contains(['i', 'l', 'o', 'u']));
        }
    }

    #[test]
    fn ids_made_on_many_threads_at_once_differ() {
        // Each thread draws from a buffer of its own: no two may repeat one another's bits.
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5_000)
                        .map(|_| new_id::<RunId>("run_"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(ids.insert(id));
            }
        }
        assert_eq!(ids.len(), 40_000);
    }
}
