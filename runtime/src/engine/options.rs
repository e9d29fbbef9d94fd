//! What a trigger says: its options ([`TriggerOptions`]) and, in a batch, its task and payload
//! ([`BatchItem`]); and the checks a trigger passes before anything is stored.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde_json::value::RawValue;

use super::context::reads_back;
use super::error::TriggerError;
use crate::model::JsonObject;
use crate::typed::Task;

/// The most tags a run may carry.
pub const MAX_TAGS: usize = 10;
/// The longest tag, in characters.
pub const MAX_TAG_LEN: usize = 128;
/// The most runs one batch trigger creates.
pub const MAX_BATCH: usize = 1_000;

/// Options of a trigger; `TriggerOptions::default()` for none.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TriggerOptions {
    /// Tags of the run: at most 10, each 1 to 128 characters without control characters. A tag
    /// given twice is kept once.
    pub tags: Vec<String>,
    /// How many attempts the run gets (the engine's default when `None`).
    pub max_attempts: Option<u32>,
    /// The run's initial metadata.
    pub metadata: Option<JsonObject>,
    /// Marks the run as a test run.
    pub is_test: bool,
    /// A second trigger of the same task with the same key, within the engine's idempotency
    /// TTL, returns the first run instead of starting another.
    pub idempotency_key: Option<String>,
    /// The run waits in `DELAYED` this long before it is queued.
    pub delay: Option<Duration>,
    /// The run becomes `EXPIRED` if it has not started this long after it was triggered.
    pub ttl: Option<Duration>,
    /// An attempt that runs longer is stopped and the run becomes `TIMED_OUT`.
    pub max_duration: Option<Duration>,
}

impl TriggerOptions {
    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets how many attempts the run gets.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets the run's initial metadata.
    pub fn metadata(mut self, metadata: JsonObject) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Marks the run as a test run.
    pub fn test(mut self) -> Self {
        self.is_test = true;
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Delays the run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the time to live before the run starts.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the maximum duration of an attempt.
    pub fn max_duration(mut self, max: Duration) -> Self {
        self.max_duration = Some(max);
        self
    }
}

/// One run of a batch, of any task: its task, payload and options.
///
/// ```
/// # use runcast::{BatchItem, TriggerOptions, task};
/// # #[task(id = "a", payload = u8, output = u8)] pub struct A;
/// let item = BatchItem::new::<A>(1, TriggerOptions::default().tag("import"));
/// ```
pub struct BatchItem {
    pub(super) task: Cow<'static, str>,
    /// The payload as JSON: from [`new`](Self::new), checked to read back as the task's
    /// payload type.
    pub(super) payload: Result<Box<RawValue>, TriggerError>,
    /// Whether the payload came as JSON ([`from_json`](Self::from_json)), so the engine checks
    /// that it decodes as the task's payload type.
    pub(super) from_json: bool,
    pub(super) options: TriggerOptions,
}

impl BatchItem {
    /// A run of `T` with this payload and options.
    pub fn new<T: Task>(payload: T::Payload, options: TriggerOptions) -> Self {
        let payload = serde_json::value::to_raw_value(&payload)
            .and_then(|raw| reads_back::<T::Payload>(&raw).map(|()| raw))
            .map_err(|source| TriggerError::Payload {
                task: T::ID,
                source,
            });
        BatchItem {
            task: Cow::Borrowed(T::ID),
            payload,
            from_json: false,
            options,
        }
    }

    /// A run of the task whose identifier is `task`, with its payload as JSON (as it comes off
    /// the wire). The engine that triggers it refuses a task it does not know
    /// ([`TriggerError::UnknownTask`]) and a payload that does not decode as the task's payload
    /// type ([`TriggerError::PayloadMismatch`], with where it does not), before storing
    /// anything.
    ///
    /// ```
    /// # use runcast::{BatchItem, Engine, TriggerError, TriggerOptions, task};
    /// # #[task(id = "add")] async fn add(pair: (u32, u32)) -> Result<u32, String> { Ok(pair.0 + pair.1) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let engine = Engine::builder().task::<Add>().build()?;
    /// let raw = serde_json::value::RawValue::from_string("[1, 2]".into())?;
    /// let run = engine.trigger_item(BatchItem::from_json("add", raw, TriggerOptions::default())).await?;
    ///
    /// let wrong = serde_json::value::RawValue::from_string(r#"[1, "two"]"#.into())?;
    /// let refused = engine.trigger_item(BatchItem::from_json("add", wrong, TriggerOptions::default())).await;
    /// assert!(matches!(refused, Err(TriggerError::PayloadMismatch { ref path, .. }) if path == "[1]"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_json(
        task: impl Into<String>,
        payload: Box<RawValue>,
        options: TriggerOptions,
    ) -> Self {
        BatchItem {
            task: Cow::Owned(task.into()),
            payload: Ok(payload),
            from_json: true,
            options,
        }
    }
}

impl fmt::Debug for BatchItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchItem")
            .field("task", &self.task)
            .field("options", &self.options)
            .finish()
    }
}

/// Checks tags against the rules, keeping each once, in order, in the list given (no copy).
/// Refuses more than [`MAX_TAGS`] distinct tags as soon as it counts one more, so that a huge
/// list costs little: each tag is compared with at most [`MAX_TAGS`] kept ones.
pub(super) fn checked_tags(mut tags: Vec<String>) -> Result<Vec<String>, TriggerError> {
    let given = tags.len();
    // The tags kept so far are `tags[..kept]`.
    let mut kept = 0;
    for next in 0..given {
        if tags[..kept].contains(&tags[next]) {
            continue;
        }
        if kept == MAX_TAGS {
            return Err(TriggerError::TooManyTags { count: given });
        }
        TriggerError::check_tag(&tags[next])?;
        tags.swap(kept, next);
        kept += 1;
    }
    tags.truncate(kept);
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the list, the tags kept are the distinct ones in the order each first
        /// comes, or the list is refused for more than `MAX_TAGS` of them.
        #[test]
        fn checked_tags_keep_each_tag_once_in_order(tags in prop::collection::vec("[a-l]", 0..40)) {
            let mut first_seen: Vec<String> = Vec::new();
            for tag in &tags {
                if !first_seen.contains(tag) {
                    first_seen.push(tag.clone());
                }
            }
            match checked_tags(tags.clone()) {
                Ok(kept) => {
                    prop_assert!(kept.len() <= MAX_TAGS);
                    prop_assert_eq!(kept, first_seen);
                }
                Err(TriggerError::TooManyTags { count }) => {
                    prop_assert!(first_seen.len() > MAX_TAGS);
                    prop_assert_eq!(count, tags.len());
                }
                Err(other) => prop_assert!(false, "unexpected error: {}", other),
            }
        }
    }
}
