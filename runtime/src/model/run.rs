//! Run snapshots: the typed [`Run<T>`], the untyped [`AnyRun`], and the values they hold.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::ids::RunId;
use super::status::RunStatus;
use super::timestamp::Timestamp;

/// A run's metadata: a JSON object.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A run's task identifier: borrowed from the task's declaration (`Task::ID`) where runcast
/// knows the task, owned when it was read from elsewhere.
pub type TaskIdentifier = Cow<'static, str>;

/// Why a run failed, as the public run object reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SerializedError {
    /// What went wrong.
    pub message: String,
    /// The error's type name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it went wrong, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
}

/// What a [`Run`] holds as payload, output and metadata.
///
/// Implemented for every [`Task`](crate::Task) (typed values) and for [`Untyped`] (raw JSON). It only exists
/// so that [`Run<T>`] and [`AnyRun`] are one type with one wire format.
pub trait RunKind: Sized {
    /// The type of [`Run::payload`].
    type Payload;
    /// The type of [`Run::output`] when present.
    type Output;
    /// The type of [`Run::metadata`] when present.
    type Metadata;

    /// Whether the payload is absent (only an untyped run can have none): left out when writing.
    #[doc(hidden)]
    fn payload_is_absent(_payload: &Self::Payload) -> bool {
        false
    }

    /// Reads `taskIdentifier`, rejecting a run of another task when the kind is a task.
    #[doc(hidden)]
    fn deserialize_task_identifier<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<TaskIdentifier, D::Error> {
        String::deserialize(d).map(Cow::Owned)
    }
}

/// The [`RunKind`] of [`AnyRun`]: payload, output and metadata kept as raw JSON text, shared
/// so that copying a snapshot never copies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untyped {}

impl RunKind for Untyped {
    type Payload = Option<Arc<RawValue>>;
    type Output = Arc<RawValue>;
    type Metadata = Arc<RawValue>;

    fn payload_is_absent(payload: &Self::Payload) -> bool {
        payload.is_none()
    }
}

/// One snapshot of a run of the task `T`, with its payload and output decoded.
///
/// It serializes to (and deserializes from) the public run object of Trigger.dev's Realtime
/// API, camelCase and field for field. Optional fields that are `None` are left out when
/// serializing, as the TypeScript SDK does; `null` and a missing field both read as `None`.
///
/// Deserializing a `Run<T>` with serde rejects a run of another task. To know which field of
/// which run failed to decode, decode with [`Run::from_json`] or [`AnyRun::decode`] instead.
#[derive(Serialize, serde::Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(
        serialize = "K::Payload: Serialize, K::Output: Serialize, K::Metadata: Serialize",
        deserialize = "K::Payload: Deserialize<'de>, K::Output: Deserialize<'de>, K::Metadata: Deserialize<'de>"
    )
)]
pub struct Run<K: RunKind> {
    /// The run's public id.
    pub id: RunId,
    /// The identifier of the run's task: `T::ID` for a typed run. Borrowed from the task's
    /// declaration wherever runcast knows the task, so that copying a snapshot does not copy it.
    #[serde(deserialize_with = "K::deserialize_task_identifier")]
    pub task_identifier: TaskIdentifier,
    /// What the run was triggered with.
    #[serde(skip_serializing_if = "K::payload_is_absent")]
    pub payload: K::Payload,
    /// What the run returned, once it completed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<K::Output>,
    /// When the run was created.
    pub created_at: Timestamp,
    /// When the run last changed.
    pub updated_at: Timestamp,
    /// The run's number among the runs of its task, counting from 1.
    #[serde(default)]
    pub number: u64,
    /// Where the run is in its lifecycle.
    pub status: RunStatus,
    /// Execution time across attempts, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// Compute cost in cents.
    #[serde(default, serialize_with = "serialize_js_number")]
    pub cost_in_cents: f64,
    /// Invocation cost in cents.
    #[serde(default, serialize_with = "serialize_js_number")]
    pub base_cost_in_cents: f64,
    /// The run's tags, shared by the run's snapshots: copying one does not copy them.
    #[serde(default)]
    pub tags: Arc<[String]>,
    /// The idempotency key the run was triggered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When the run expired without starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<Timestamp>,
    /// How long the run may wait to start, such as `"10m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// When the run's first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When a delayed run becomes queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_until: Option<Timestamp>,
    /// When the run was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Timestamp>,
    /// The run's metadata: the task's `Metadata` type (a [`JsonObject`] unless it declares
    /// one), raw JSON in an [`AnyRun`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<K::Metadata>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SerializedError>,
    /// Whether the run was triggered as a test.
    #[serde(default)]
    pub is_test: bool,
    /// The keys of the run's realtime streams, in the order they were first written: a
    /// subscriber learns from the run itself that a stream exists.
    #[serde(default)]
    pub realtime_streams: Vec<String>,
}

/// One snapshot of a run of any task, with payload, output and metadata left as raw JSON.
///
/// What an untyped consumer sees. Decode it with [`AnyRun::decode`], or a stream of them with
/// [`RunStreamExt`](crate::RunStreamExt).
pub type AnyRun = Run<Untyped>;

impl<K: RunKind> Run<K> {
    /// Replaces payload, output and metadata, keeping every other field.
    pub(crate) fn try_map<K2: RunKind, E>(
        self,
        f: impl FnOnce(
            &str,
            &RunId,
            K::Payload,
            Option<K::Output>,
            Option<K::Metadata>,
        ) -> Result<(K2::Payload, Option<K2::Output>, Option<K2::Metadata>), E>,
    ) -> Result<Run<K2>, E> {
        let (payload, output, metadata) = f(
            &self.task_identifier,
            &self.id,
            self.payload,
            self.output,
            self.metadata,
        )?;
        Ok(Run {
            id: self.id,
            task_identifier: self.task_identifier,
            payload,
            output,
            created_at: self.created_at,
            updated_at: self.updated_at,
            number: self.number,
            status: self.status,
            duration_ms: self.duration_ms,
            cost_in_cents: self.cost_in_cents,
            base_cost_in_cents: self.base_cost_in_cents,
            tags: self.tags,
            idempotency_key: self.idempotency_key,
            expired_at: self.expired_at,
            ttl: self.ttl,
            finished_at: self.finished_at,
            started_at: self.started_at,
            delayed_until: self.delayed_until,
            queued_at: self.queued_at,
            metadata,
            error: self.error,
            is_test: self.is_test,
            realtime_streams: self.realtime_streams,
        })
    }
}

/// Read access to the fields that every run snapshot has, whatever its task.
///
/// Implemented by [`Run<T>`], [`AnyRun`] and every `realtime_union!` enum, so code that only
/// looks at ids, statuses and tags works on all of them.
pub trait RunInfo {
    /// The run's public id.
    fn id(&self) -> &RunId;
    /// The identifier of the run's task.
    fn task_identifier(&self) -> &str;
    /// Where the run is in its lifecycle.
    fn status(&self) -> RunStatus;
    /// The run's tags.
    fn tags(&self) -> &[String];
    /// Why the run failed.
    fn error(&self) -> Option<&SerializedError>;
    /// The run's number among the runs of its task.
    fn number(&self) -> u64;
    /// When the run was created.
    fn created_at(&self) -> Timestamp;
    /// When the run last changed.
    fn updated_at(&self) -> Timestamp;
    /// When the run finished.
    fn finished_at(&self) -> Option<Timestamp>;
    /// Whether the run was triggered as a test.
    fn is_test(&self) -> bool;
}

/// Implements [`RunInfo`] by forwarding every method to the run that `$get` borrows from
/// `$this` (a closure-like `|this| expr`).
macro_rules! forward_run_info {
    (|$this:ident| $get:expr) => {
        fn id(&self) -> &$crate::RunId {
            let $this = self;
            $get.id()
        }
        fn task_identifier(&self) -> &str {
            let $this = self;
            $get.task_identifier()
        }
        fn status(&self) -> $crate::RunStatus {
            let $this = self;
            $get.status()
        }
        fn tags(&self) -> &[String] {
            let $this = self;
            $get.tags()
        }
        fn error(&self) -> Option<&$crate::SerializedError> {
            let $this = self;
            $get.error()
        }
        fn number(&self) -> u64 {
            let $this = self;
            $get.number()
        }
        fn created_at(&self) -> $crate::Timestamp {
            let $this = self;
            $get.created_at()
        }
        fn updated_at(&self) -> $crate::Timestamp {
            let $this = self;
            $get.updated_at()
        }
        fn finished_at(&self) -> Option<$crate::Timestamp> {
            let $this = self;
            $get.finished_at()
        }
        fn is_test(&self) -> bool {
            let $this = self;
            $get.is_test()
        }
    };
}
pub(crate) use forward_run_info;

impl<K: RunKind> RunInfo for Run<K> {
    fn id(&self) -> &RunId {
        &self.id
    }
    fn task_identifier(&self) -> &str {
        &self.task_identifier
    }
    fn status(&self) -> RunStatus {
        self.status
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
    fn error(&self) -> Option<&SerializedError> {
        self.error.as_ref()
    }
    fn number(&self) -> u64 {
        self.number
    }
    fn created_at(&self) -> Timestamp {
        self.created_at
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn finished_at(&self) -> Option<Timestamp> {
        self.finished_at
    }
    fn is_test(&self) -> bool {
        self.is_test
    }
}

impl<K: RunKind> Clone for Run<K>
where
    K::Payload: Clone,
    K::Output: Clone,
    K::Metadata: Clone,
{
    fn clone(&self) -> Self {
        Run {
            id: self.id.clone(),
            task_identifier: self.task_identifier.clone(),
            payload: self.payload.clone(),
            output: self.output.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            number: self.number,
            status: self.status,
            duration_ms: self.duration_ms,
            cost_in_cents: self.cost_in_cents,
            base_cost_in_cents: self.base_cost_in_cents,
            tags: self.tags.clone(),
            idempotency_key: self.idempotency_key.clone(),
            expired_at: self.expired_at,
            ttl: self.ttl.clone(),
            finished_at: self.finished_at,
            started_at: self.started_at,
            delayed_until: self.delayed_until,
            queued_at: self.queued_at,
            metadata: self.metadata.clone(),
            error: self.error.clone(),
            is_test: self.is_test,
            realtime_streams: self.realtime_streams.clone(),
        }
    }
}

impl<K: RunKind> PartialEq for Run<K>
where
    K::Payload: PartialEq,
    K::Output: PartialEq,
    K::Metadata: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.task_identifier == other.task_identifier
            && self.payload == other.payload
            && self.output == other.output
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
            && self.number == other.number
            && self.status == other.status
            && self.duration_ms == other.duration_ms
            && self.cost_in_cents == other.cost_in_cents
            && self.base_cost_in_cents == other.base_cost_in_cents
            && self.tags == other.tags
            && self.idempotency_key == other.idempotency_key
            && self.expired_at == other.expired_at
            && self.ttl == other.ttl
            && self.finished_at == other.finished_at
            && self.started_at == other.started_at
            && self.delayed_until == other.delayed_until
            && self.queued_at == other.queued_at
            && self.metadata == other.metadata
            && self.error == other.error
            && self.is_test == other.is_test
            && self.realtime_streams == other.realtime_streams
    }
}

impl<K: RunKind> fmt::Debug for Run<K>
where
    K::Payload: fmt::Debug,
    K::Output: fmt::Debug,
    K::Metadata: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("task_identifier", &self.task_identifier)
            .field("status", &self.status)
            .field("payload", &self.payload)
            .field("output", &self.output)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("number", &self.number)
            .field("duration_ms", &self.duration_ms)
            .field("cost_in_cents", &self.cost_in_cents)
            .field("base_cost_in_cents", &self.base_cost_in_cents)
            .field("tags", &self.tags)
            .field("idempotency_key", &self.idempotency_key)
            .field("expired_at", &self.expired_at)
            .field("ttl", &self.ttl)
            .field("finished_at", &self.finished_at)
            .field("started_at", &self.started_at)
            .field("delayed_until", &self.delayed_until)
            .field("queued_at", &self.queued_at)
            .field("metadata", &self.metadata)
            .field("error", &self.error)
            .field("is_test", &self.is_test)
            .field("realtime_streams", &self.realtime_streams)
            .finish()
    }
}

/// Writes a number as JavaScript's `JSON.stringify` does: `0`, not `0.0`, for whole numbers.
/// Except `-0.0`, which an integer cannot hold (JavaScript writes `0`): it is written `-0.0`,
/// so that it reads back bit for bit.
fn serialize_js_number<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    match js_integer(*value) {
        Some(whole) if whole != 0 || value.is_sign_positive() => s.serialize_i64(whole),
        _ => s.serialize_f64(*value),
    }
}

/// A payload or output as a snapshot keeps it: none for JSON `null`, which is how a
/// snapshot's JSON reads back (`null` and a missing field both read as `None`), so that every
/// process sharing a store, whether it read a run from its row or from the change log, sees
/// the same run.
pub(crate) fn unless_null(raw: Box<RawValue>) -> Option<Arc<RawValue>> {
    (raw.get() != "null").then(|| raw.into())
}

/// `n` as an integer if JavaScript writes it as one: whole, and exact in an `f64` (within
/// ±2^53).
pub(crate) fn js_integer(n: f64) -> Option<i64> {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    #[allow(clippy::cast_possible_truncation)] // Checked: whole and within ±2^53.
    (n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER).then_some(n as i64)
}

impl AnyRun {
    /// Whether `other` shows a subscriber nothing different: every field but `updatedAt` is
    /// the same. Raw values shared by both (the common case) are not compared byte by byte.
    pub(crate) fn looks_like(&self, other: &AnyRun) -> bool {
        fn same(a: Option<&Arc<RawValue>>, b: Option<&Arc<RawValue>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.get() == b.get(),
                (None, None) => true,
                _ => false,
            }
        }
        // Destructured, so that a new field cannot be left out.
        let Run {
            id,
            task_identifier,
            payload,
            output,
            created_at,
            updated_at: _,
            number,
            status,
            duration_ms,
            cost_in_cents,
            base_cost_in_cents,
            tags,
            idempotency_key,
            expired_at,
            ttl,
            finished_at,
            started_at,
            delayed_until,
            queued_at,
            metadata,
            error,
            is_test,
            realtime_streams,
        } = self;
        *id == other.id
            && *task_identifier == other.task_identifier
            && same(payload.as_ref(), other.payload.as_ref())
            && same(output.as_ref(), other.output.as_ref())
            && *created_at == other.created_at
            && *number == other.number
            && *status == other.status
            && *duration_ms == other.duration_ms
            && cost_in_cents.to_bits() == other.cost_in_cents.to_bits()
            && base_cost_in_cents.to_bits() == other.base_cost_in_cents.to_bits()
            && *tags == other.tags
            && *idempotency_key == other.idempotency_key
            && *expired_at == other.expired_at
            && *ttl == other.ttl
            && *finished_at == other.finished_at
            && *started_at == other.started_at
            && *delayed_until == other.delayed_until
            && *queued_at == other.queued_at
            && same(metadata.as_ref(), other.metadata.as_ref())
            && *error == other.error
            && *is_test == other.is_test
            && *realtime_streams == other.realtime_streams
    }
}
