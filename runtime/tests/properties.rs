//! Properties of every parser in runcast, checked on generated inputs: run snapshots (untyped,
//! typed and union decoding), statuses, stream chunks, timestamps, cursors and metadata
//! operations.
//!
//! Each parser reads back exactly what runcast writes (floats bit for bit), agrees with every
//! other way a user can read the same input, and refuses what it cannot read with an error:
//! never a panic, never an empty value in place of one it failed to read.
#![allow(clippy::expect_used)] // Helpers fail the test on what cannot happen.

use std::fmt;
use std::sync::Arc;

use futures::executor::block_on;
use futures::{StreamExt, stream};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use runcast::{
    AnyChunk, AnyRun, Chunk, ChunkError, Cursor, DecodeError, FromAnyChunk, FromAnyRun, JsonObject,
    MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MetadataError, MetadataOp, Run, RunField, RunId,
    RunStatus, RunStreamExt, RunUnion, SerializedError, Task, TaskContext, Timestamp,
    realtime_union, task,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

// The tasks and unions under test.

/// Floats in a struct: the payload of [`Measure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Sample {
    value: f64,
    values: Vec<f64>,
    label: String,
}

#[task(id = "props-measure", payload = Sample, output = f64)]
struct Measure;

#[task(id = "props-count", payload = u32, output = u32)]
struct Count;

/// A typed metadata: the metadata of [`Track`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Progress {
    ratio: f64,
    label: String,
}

#[task(id = "props-track", payload = u32, output = u32, metadata = Progress)]
struct Track;

#[task(id = "props-stream", payload = u32, output = u32, streams(samples = Sample, counts = u32))]
struct Streamed;

realtime_union! {
    #[derive(Debug)]
    enum Listed { Measure, Count }
}

realtime_union! {
    #[derive(Debug)]
    enum ListedOrOther { Measure, Count, _ => Other }
}

/// The identifiers of the listed tasks, which decoys in generated values also name.
const LISTED: [&str; 2] = [Measure::ID, Count::ID];

/// Cases per property: enough to reach the corners of each parser, few enough that the whole
/// file runs in seconds in a debug build.
const CASES: u32 = 256;

/// Cases of the property whose every case builds metadata as large as the limit.
const LARGE_CASES: u32 = 24;

// Helpers.

/// JSON text of a value. Two values of one type write the same text only if they are the same,
/// floats bit for bit: serde_json writes the shortest text that reads back as the same bits, and
/// `1` (an integer), `1.0` and `-0.0` apart.
fn json_text<V: Serialize + ?Sized>(value: &V) -> String {
    serde_json::to_string(value).expect("serializable")
}

/// A value as the raw JSON a run holds.
fn raw<V: Serialize + ?Sized>(value: &V) -> Arc<RawValue> {
    Arc::from(serde_json::value::to_raw_value(value).expect("serializable"))
}

/// Checks that a value read from raw JSON writes the same text again: its floats read back bit
/// for bit (`float_roundtrip`).
fn assert_reads_back_exactly(raw: Option<&RawValue>) -> Result<(), TestCaseError> {
    if let Some(raw) = raw {
        let value: Value = serde_json::from_str(raw.get())?;
        prop_assert_eq!(json_text(&value), raw.get());
    }
    Ok(())
}

// Generators.

/// The first and last instants a [`Timestamp`] holds: `-009999-01-02T01:59:59Z` and
/// `9999-12-30T22:00:00Z` (the years -9999 to 9999, less a day for any offset).
const FIRST_MILLIS: i64 = -377_705_023_201_000;
const LAST_MILLIS: i64 = 253_402_207_200_000;

/// Milliseconds within the range of a [`Timestamp`]: anywhere, near now, near 1970, near its ends.
fn millis() -> impl Strategy<Value = i64> {
    prop_oneof![
        FIRST_MILLIS..=LAST_MILLIS,
        1_600_000_000_000..1_900_000_000_000i64,
        -100_000_000..100_000_000i64,
        FIRST_MILLIS..FIRST_MILLIS + 100_000_000,
        LAST_MILLIS - 100_000_000..=LAST_MILLIS,
    ]
}

/// Any timestamp.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    millis().prop_filter_map("within range", Timestamp::from_unix_millis)
}

/// Finite floats: every magnitude and sign (subnormals, both zeros, the extremes), and amounts
/// with many decimals, as costs in cents are (such as `9925.123456789473`).
fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        (0..1_000_000_000_000_000u64, 0..18i32).prop_map(|(n, d)| n as f64 / 10f64.powi(d)),
        prop::sample::select(vec![
            9925.123456789473,
            0.1 + 0.2,
            -0.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            9_007_199_254_740_993.0,
            1e21,
        ]),
    ]
}

/// A key of a JSON object: often one of a few (so that operations meet the keys others wrote,
/// and `taskIdentifier` may hide in a payload), sometimes any text.
fn key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c", "taskIdentifier"]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A JSON string: any text, or a listed task's identifier.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => prop::sample::select(LISTED.to_vec()).prop_map(str::to_owned),
    ]
}

/// A JSON scalar: null, a boolean, any `u64` or `i64`, a finite float, a string.
fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

/// Any JSON value, nesting a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|object| Value::Object(object.into_iter().collect())),
        ]
    })
}

/// Any JSON object.
fn json_object() -> impl Strategy<Value = JsonObject> {
    prop::collection::btree_map(key(), json_value(), 0..5)
        .prop_map(|object| object.into_iter().collect())
}

/// A payload or output: any JSON but `null` (which reads as absent, as documented on [`Run`]),
/// often an object whose own `taskIdentifier` names a listed task, to fool a union's search.
fn run_value() -> impl Strategy<Value = Value> {
    let decoy = (prop::sample::select(LISTED.to_vec()), json_object()).prop_map(|(id, mut o)| {
        o.insert("taskIdentifier".to_owned(), id.into());
        Value::Object(o)
    });
    prop_oneof![
        3 => json_value().prop_filter("null reads as absent", |v| !v.is_null()),
        1 => decoy,
    ]
}

/// A task identifier: a listed one, one that looks like them, or any text.
fn task_id() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(LISTED.to_vec()).prop_map(str::to_owned),
        "props-[a-z]{0,8}",
        any::<String>(),
    ]
}

/// A [`Sample`].
fn sample() -> impl Strategy<Value = Sample> {
    (
        finite_f64(),
        prop::collection::vec(finite_f64(), 0..4),
        any::<String>(),
    )
        .prop_map(|(value, values, label)| Sample {
            value,
            values,
            label,
        })
}

/// A run with every field generated but its task (`""`) and values (none): what
/// [`Values::fill`] completes.
fn envelope() -> impl Strategy<Value = AnyRun> {
    let times = (
        timestamp(),
        timestamp(),
        prop::collection::vec(prop::option::of(timestamp()), 5),
    );
    let numbers = (
        any::<u64>(),
        any::<u64>(),
        finite_f64(),
        finite_f64(),
        any::<bool>(),
    );
    let error = (
        any::<String>(),
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
    )
        .prop_map(|(message, name, stack_trace)| SerializedError {
            message,
            name,
            stack_trace,
        });
    let texts = (
        any::<String>(),
        prop::sample::select(RunStatus::ALL.to_vec()),
        prop::collection::vec(any::<String>(), 0..4),
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        prop::option::of(error),
        prop::collection::vec(any::<String>(), 0..3),
    );
    (times, numbers, texts).prop_map(|(times, numbers, texts)| {
        let (created_at, updated_at, optional) = times;
        let (number, duration_ms, cost_in_cents, base_cost_in_cents, is_test) = numbers;
        let (id, status, tags, idempotency_key, ttl, error, realtime_streams) = texts;
        Run {
            id: RunId::from(id),
            task_identifier: String::new().into(),
            payload: None,
            output: None,
            created_at,
            updated_at,
            number,
            status,
            duration_ms,
            cost_in_cents,
            base_cost_in_cents,
            tags: tags.into(),
            idempotency_key,
            expired_at: optional[0],
            ttl,
            finished_at: optional[1],
            started_at: optional[2],
            delayed_until: optional[3],
            queued_at: optional[4],
            metadata: None,
            error,
            is_test,
            realtime_streams,
        }
    })
}

/// The task of a run and its values as raw JSON.
#[derive(Debug, Clone)]
struct Values {
    task: String,
    payload: Option<Arc<RawValue>>,
    output: Option<Arc<RawValue>>,
    metadata: Option<Arc<RawValue>>,
}

impl Values {
    /// Values of `task` (as raw JSON).
    fn of<P: Serialize, O: Serialize>(
        task: &str,
        payload: Option<P>,
        output: Option<O>,
        metadata: Option<JsonObject>,
    ) -> Self {
        Values {
            task: task.to_owned(),
            payload: payload.map(|p| raw(&p)),
            output: output.map(|o| raw(&o)),
            metadata: metadata.map(|m| raw(&m)),
        }
    }

    /// `run` with these task and values.
    fn fill(self, mut run: AnyRun) -> AnyRun {
        run.task_identifier = self.task.into();
        run.payload = self.payload;
        run.output = self.output;
        run.metadata = self.metadata;
        run
    }
}

/// Any task with any values.
fn any_values() -> impl Strategy<Value = Values> {
    (
        task_id(),
        prop::option::of(run_value()),
        prop::option::of(run_value()),
        prop::option::of(json_object()),
    )
        .prop_map(|(task, payload, output, metadata)| Values::of(&task, payload, output, metadata))
}

/// Values of a [`Measure`] run that fit its types.
fn measure_values() -> impl Strategy<Value = Values> {
    (
        sample(),
        prop::option::of(finite_f64()),
        prop::option::of(json_object()),
    )
        .prop_map(|(payload, output, metadata)| {
            Values::of(Measure::ID, Some(payload), output, metadata)
        })
}

/// Values of a [`Count`] run that fit its types.
fn count_values() -> impl Strategy<Value = Values> {
    (
        any::<u32>(),
        prop::option::of(any::<u32>()),
        prop::option::of(json_object()),
    )
        .prop_map(|(payload, output, metadata)| {
            Values::of(Count::ID, Some(payload), output, metadata)
        })
}

/// A run as a union meets them: of a listed task with values that fit, or anything.
fn union_run() -> impl Strategy<Value = AnyRun> {
    let values = prop_oneof![measure_values(), count_values(), any_values()];
    (envelope(), values).prop_map(|(run, values)| values.fill(run))
}

// Run snapshots.

/// `run`'s JSON with its fields in another order (by name, so `metadata`, `output` and
/// `payload` come before `taskIdentifier`) and, if `escape_task`, its `taskIdentifier` written
/// with `\u` escapes: the same run, in text that a byte search for the task may misread.
fn reordered_text(run: &AnyRun, escape_task: bool) -> String {
    let fields: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(&json_text(run)).expect("a run's own JSON");
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            let value = if escape_task && name == "taskIdentifier" {
                let escaped: String = run
                    .task_identifier
                    .encode_utf16()
                    .map(|unit| format!("\\u{unit:04x}"))
                    .collect();
                format!("\"{escaped}\"")
            } else {
                value.get().to_owned()
            };
            format!("{}:{value}", json_text(name))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A feed of one snapshot, as the stream adaptors take it.
type Feed = stream::Iter<std::array::IntoIter<Result<AnyRun, DecodeError>, 1>>;

/// Decodes `text` every way a user can (`direct`, from a parsed [`AnyRun`], through a stream
/// adaptor), checks that all agree to the last bit and error position, and returns the result.
fn decode_every_way<D: FromAnyRun + fmt::Debug>(
    text: &str,
    direct: Result<D, DecodeError>,
    stream: impl FnOnce(Feed) -> Option<Result<D, DecodeError>>,
) -> Result<Result<D, DecodeError>, TestCaseError> {
    let parse = || serde_json::from_str::<AnyRun>(text).map_err(DecodeError::Malformed);
    let from_any = parse().and_then(D::from_any_run);
    let streamed = stream(stream::iter([parse()]));
    let direct_text = format!("{direct:?}");
    prop_assert_eq!(&direct_text, &format!("{from_any:?}"), "input: {}", text);
    prop_assert_eq!(&direct_text, &format!("{:?}", streamed.expect("one item")));
    Ok(direct)
}

/// [`decode_every_way`] for a run of `T`.
fn decode_run<T: Task>(text: &str) -> Result<Result<Run<T>, DecodeError>, TestCaseError>
where
    Run<T>: fmt::Debug,
{
    decode_every_way(text, Run::<T>::from_json(text), |feed| {
        block_on(feed.typed::<T>().next())
    })
}

/// [`decode_every_way`] for a union.
fn decode_union<U: RunUnion + fmt::Debug>(
    text: &str,
) -> Result<Result<U, DecodeError>, TestCaseError> {
    decode_every_way(text, U::from_json(text), |feed| {
        block_on(feed.union::<U>().next())
    })
}

/// The bits of a sample's floats, and its label.
fn sample_bits(sample: &Sample) -> (u64, Vec<u64>, &str) {
    let values = sample.values.iter().map(|v| v.to_bits()).collect();
    (sample.value.to_bits(), values, &sample.label)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// An untyped run writes, reads back and writes again the same text; every field reads
    /// back as it was, costs and the floats of its values bit for bit.
    #[test]
    fn any_run_reads_back_what_it_writes(
        run in (envelope(), any_values()).prop_map(|(run, values)| values.fill(run)),
    ) {
        let text = json_text(&run);
        let back: AnyRun = serde_json::from_str(&text)?;
        prop_assert_eq!(&json_text(&back), &text);
        prop_assert_eq!(back.cost_in_cents.to_bits(), run.cost_in_cents.to_bits());
        prop_assert_eq!(back.base_cost_in_cents.to_bits(), run.base_cost_in_cents.to_bits());
        // Debug shows every field, floats to the last bit and raw values as their text.
        prop_assert_eq!(format!("{back:?}"), format!("{run:?}"));
        for value in [&back.payload, &back.output, &back.metadata] {
            assert_reads_back_exactly(value.as_deref())?;
        }
    }

    /// A run of a task with floats in its payload and output decodes them bit for bit, every
    /// way it can be decoded, and writes the same text as the untyped run.
    #[test]
    fn typed_runs_decode_floats_bit_for_bit(
        run in envelope(),
        sample in sample(),
        output in prop::option::of(finite_f64()),
        metadata in prop::option::of(json_object()),
    ) {
        let run = Values::of(Measure::ID, Some(&sample), output, metadata).fill(run);
        let text = json_text(&run);
        let Ok(Listed::Measure(from_union)) = Listed::from_json(&text) else {
            return Err(TestCaseError::fail(format!("not a Measure run: {text}")));
        };
        for typed in [
            decode_run::<Measure>(&text)??,
            serde_json::from_str::<Run<Measure>>(&text)?,
            from_union,
        ] {
            prop_assert_eq!(sample_bits(&typed.payload), sample_bits(&sample));
            prop_assert_eq!(typed.output.map(f64::to_bits), output.map(f64::to_bits));
            prop_assert_eq!(typed.cost_in_cents.to_bits(), run.cost_in_cents.to_bits());
            prop_assert_eq!(&json_text(&typed), &text);
        }
    }

    /// A status reads from its wire name, and from nothing else, alike as text and as JSON.
    #[test]
    fn statuses_read_their_names_and_nothing_else(
        text in prop_oneof![
            prop::sample::select(RunStatus::ALL.to_vec()).prop_map(|s| s.as_str().to_owned()),
            "[A-Z_]{0,20}",
            any::<String>(),
        ],
    ) {
        let named = RunStatus::ALL.into_iter().find(|status| status.as_str() == text);
        prop_assert_eq!(text.parse::<RunStatus>().ok(), named);
        prop_assert_eq!(serde_json::from_str::<RunStatus>(&json_text(&text)).ok(), named);
        if let Some(status) = named {
            prop_assert_eq!(&status.to_string(), &text);
        }
    }
}

// Union decoding.

/// The variant a union holds: a listed task's, or the catch-all with the run it keeps.
#[derive(Debug)]
enum Variant<'a> {
    Listed(&'static str),
    Other(&'a AnyRun),
}

/// A union under test, whose variant can be told.
trait Variants {
    fn variant(&self) -> Variant<'_>;
}

impl Variants for Listed {
    fn variant(&self) -> Variant<'_> {
        match self {
            Listed::Measure(_) => Variant::Listed(Measure::ID),
            Listed::Count(_) => Variant::Listed(Count::ID),
        }
    }
}

impl Variants for ListedOrOther {
    fn variant(&self) -> Variant<'_> {
        match self {
            ListedOrOther::Measure(_) => Variant::Listed(Measure::ID),
            ListedOrOther::Count(_) => Variant::Listed(Count::ID),
            ListedOrOther::Other(run) => Variant::Other(run),
        }
    }
}

/// Whether `run`'s values decode as `T`'s types, by serde alone: what a typed decode of a run
/// of `T` must accept (and otherwise refuse with [`DecodeError::Field`]).
fn fits<T: Task>(run: &AnyRun) -> bool {
    fn decodes<V: DeserializeOwned>(raw: Option<&RawValue>) -> bool {
        serde_json::from_str::<V>(raw.map_or("null", RawValue::get)).is_ok()
    }
    decodes::<T::Payload>(run.payload.as_deref())
        && run
            .output
            .as_deref()
            .is_none_or(|o| decodes::<T::Output>(Some(o)))
        && (run.metadata.as_deref()).is_none_or(|m| decodes::<T::Metadata>(Some(m)))
}

/// Whether a run of `task` fits its listed task's types; `None` for a task not listed.
fn fits_listed(task: &str, run: &AnyRun) -> Option<bool> {
    match task {
        Measure::ID => Some(fits::<Measure>(run)),
        Count::ID => Some(fits::<Count>(run)),
        _ => None,
    }
}

/// Checks what a union decoded `run` as: the variant of the run's own task if it fits, a field
/// error if it does not, and for a task not listed an [`DecodeError::UnexpectedTask`] naming it
/// or, with a catch-all, the run unchanged.
fn check_union<U: Variants>(
    run: &AnyRun,
    decoded: &Result<U, DecodeError>,
) -> Result<(), TestCaseError> {
    let task = &*run.task_identifier;
    match (fits_listed(task, run), decoded) {
        (Some(true), Ok(union)) => {
            let variant = union.variant();
            prop_assert!(
                matches!(variant, Variant::Listed(t) if t == task),
                "{:?}",
                variant
            );
        }
        (
            Some(false),
            Err(DecodeError::Field {
                run_id,
                task_identifier,
                ..
            }),
        ) => {
            prop_assert_eq!((run_id, task_identifier.as_str()), (&run.id, task));
        }
        (None, Ok(union)) => match union.variant() {
            Variant::Other(other) => prop_assert_eq!(json_text(other), json_text(run)),
            Variant::Listed(listed) => {
                prop_assert!(false, "a run of `{}` decoded as one of `{}`", task, listed);
            }
        },
        (
            None,
            Err(DecodeError::UnexpectedTask {
                run_id,
                task_identifier,
                expected,
            }),
        ) => {
            prop_assert_eq!((run_id, task_identifier.as_str()), (&run.id, task));
            prop_assert_eq!(*expected, &LISTED[..]);
        }
        (fits, decoded) => prop_assert!(
            false,
            "fits {:?}, decoded {:?}",
            fits,
            decoded.as_ref().err()
        ),
    }
    Ok(())
}

/// Decodes `text` as each union and task under test, checking that every way of decoding it
/// agrees; what it decodes to does not matter.
fn check_decoders_agree(text: &str) -> Result<(), TestCaseError> {
    let _ = decode_union::<Listed>(text)?;
    let _ = decode_union::<ListedOrOther>(text)?;
    let _ = decode_run::<Measure>(text)?;
    let _ = decode_run::<Count>(text)?;
    Ok(())
}

/// `text` with the character at `at` replaced by `with`: a run damaged in one place.
fn damage(text: &str, at: prop::sample::Index, with: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at.index(chars.len());
    chars[at] = with;
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A union decodes a run as the variant of its own task, from its text and from a parsed
    /// snapshot alike, however the text orders or escapes its fields; a run of a task it does
    /// not list is never a listed variant.
    #[test]
    fn unions_decode_a_run_as_its_own_task(run in union_run(), form in 0..3u8) {
        let text = match form {
            0 => json_text(&run),
            1 => reordered_text(&run, false),
            _ => reordered_text(&run, true),
        };
        check_union(&run, &decode_union::<Listed>(&text)?)?;
        check_union(&run, &decode_union::<ListedOrOther>(&text)?)?;
    }

    /// Arbitrary text decodes as an error, never a panic, and every way of decoding agrees.
    #[test]
    fn unions_refuse_arbitrary_text(
        text in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200)
                .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            any::<String>(),
        ],
    ) {
        check_decoders_agree(&text)?;
        // The catch-all takes any run: refused, the text is no run at all.
        prop_assert!(decode_union::<ListedOrOther>(&text)?.is_err());
    }

    /// A run damaged in one place decodes (or fails) the same every way, never panicking.
    #[test]
    fn damaged_runs_decode_the_same_every_way(
        run in union_run(),
        at in any::<prop::sample::Index>(),
        with in prop_oneof![any::<char>(), prop::sample::select(r#"{}[]:,"\0-e."#.chars().collect::<Vec<_>>())],
    ) {
        check_decoders_agree(&damage(&json_text(&run), at, with))?;
    }
}

// Typed decode errors.

/// A value that does not match the type of `field` in a [`Measure`] run: not a [`Sample`]
/// payload, not a number output, not an object metadata (`null` reads as absent for the last
/// two).
fn wrong_value() -> impl Strategy<Value = (RunField, Value)> {
    let not_a_sample = |v: &Value| serde_json::from_value::<Sample>(v.clone()).is_err();
    prop_oneof![
        json_value()
            .prop_filter("not a Sample", not_a_sample)
            .prop_map(|v| (RunField::Payload, v)),
        json_value()
            .prop_filter("not null nor a number", |v| !v.is_null() && !v.is_number())
            .prop_map(|v| (RunField::Output, v)),
        json_value()
            .prop_filter("not null nor an object", |v| !v.is_null() && !v.is_object())
            .prop_map(|v| (RunField::Metadata, v)),
    ]
}

/// Text of `levels` objects nested in each other: `{"a":{"a":1}}` for 2.
fn nested_object_text(levels: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A payload, output or metadata of the wrong shape is an error naming the run, the task
    /// and the field, every way the run is decoded: never a panic, never a default.
    #[test]
    fn a_value_of_the_wrong_shape_is_an_error_naming_run_task_and_field(
        run in envelope(),
        sample in sample(),
        (field, wrong) in wrong_value(),
    ) {
        let mut values = Values::of(Measure::ID, Some(&sample), Some(1.5), None);
        let wrong_raw = Some(raw(&wrong));
        match field {
            RunField::Payload => values.payload = wrong_raw,
            RunField::Output => values.output = wrong_raw,
            RunField::Metadata => values.metadata = wrong_raw,
        }
        let run = values.fill(run);
        let text = json_text(&run);
        let errors = [
            decode_run::<Measure>(&text)?.err(),
            decode_union::<Listed>(&text)?.err(),
            decode_union::<ListedOrOther>(&text)?.err(),
        ];
        for error in errors {
            let Some(DecodeError::Field { task_identifier, run_id, field: failed, .. }) = &error else {
                return Err(TestCaseError::fail(format!("{field} {wrong}: {error:?}")));
            };
            prop_assert_eq!((task_identifier.as_str(), run_id, *failed), (Measure::ID, &run.id, field));
            let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
            let start = format!("run `{}` of task `{}`: {field} does not match", run.id, Measure::ID);
            prop_assert!(message.starts_with(&start), "{}", message);
        }
    }

    /// Metadata nested deeper than a parser reads is an error naming the field, never absent
    /// or empty metadata; metadata within runcast's limit always reads back.
    #[test]
    fn metadata_no_parser_reads_is_an_error_never_nothing(
        run in envelope(),
        levels in prop_oneof![1..=MAX_METADATA_DEPTH, 100..300usize],
    ) {
        let metadata = nested_object_text(levels);
        let mut values = Values::of(Count::ID, Some(7), None::<u32>, None);
        values.metadata = Some(Arc::from(RawValue::from_string(metadata.clone())?));
        let run = values.fill(run);
        let text = json_text(&run);
        let read = [
            run.metadata_as::<JsonObject>().map(|m| m.map(|m| json_text(&m))),
            decode_run::<Count>(&text)?.map(|run| run.metadata.map(|m| json_text(&m))),
        ];
        for read in read {
            match read {
                Ok(read) => prop_assert_eq!(read.as_deref(), Some(metadata.as_str())),
                Err(DecodeError::Field { field: RunField::Metadata, .. }) => {
                    prop_assert!(levels > MAX_METADATA_DEPTH, "{} levels refused", levels);
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
    }
}

// Stream chunks.

/// A chunk as a subscriber of [`Streamed`] may meet them: of its run or another task's, of
/// one of its streams or another, with data of either stream's type or any JSON.
fn any_chunk() -> impl Strategy<Value = AnyChunk> {
    let task = prop_oneof![3 => Just(Streamed::ID.to_owned()), 1 => task_id()];
    let stream = prop_oneof![
        3 => prop::sample::select(vec!["samples", "counts"]).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let data = prop_oneof![
        sample().prop_map(|sample| raw(&sample)),
        any::<u32>().prop_map(|count| raw(&count)),
        json_value().prop_map(|value| raw(&value)),
    ];
    let cursor = (cursor_number(), cursor_number())
        .prop_map(|(epoch, position)| format!("{epoch:x}-{position}").parse().expect("a cursor"));
    (cursor, any::<String>(), task, stream, data).prop_map(|(cursor, run, task, stream, data)| {
        AnyChunk {
            cursor,
            run_id: RunId::from(run),
            task_identifier: task.into(),
            stream: stream.into(),
            data,
        }
    })
}

/// A decoded chunk of [`Streamed`] as its stream and its data's JSON.
fn chunk_text(chunk: &StreamedChunk) -> (&'static str, String) {
    match chunk {
        StreamedChunk::Samples(sample) => ("samples", json_text(sample)),
        StreamedChunk::Counts(count) => ("counts", json_text(count)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A chunk decodes as the variant of its stream when its data fits the stream's type, and
    /// is otherwise an error naming the run, the task and the stream: a chunk of another task
    /// is never decoded, one of an undeclared stream never guessed.
    #[test]
    fn chunks_decode_as_their_streams_type(chunk in any_chunk()) {
        let decoded = Chunk::<Streamed>::from_any_chunk(chunk.clone());
        if &*chunk.task_identifier != Streamed::ID {
            let Err(DecodeError::UnexpectedTask { run_id, task_identifier, .. }) = &decoded else {
                return Err(TestCaseError::fail(format!("{decoded:?}")));
            };
            prop_assert_eq!((run_id, task_identifier.as_str()), (&chunk.run_id, &*chunk.task_identifier));
            return Ok(());
        }
        let data = chunk.data.get();
        // What serde alone reads the data as for its stream, written again.
        let fits = match &*chunk.stream {
            "samples" => Some(serde_json::from_str::<Sample>(data).map(|s| json_text(&s))),
            "counts" => Some(serde_json::from_str::<u32>(data).map(|n| json_text(&n))),
            _ => None,
        };
        match (decoded, fits) {
            (Ok(decoded), Some(Ok(text))) => {
                prop_assert_eq!(chunk_text(&decoded.data), (&*chunk.stream, text));
                prop_assert_eq!((decoded.cursor, &decoded.run_id), (chunk.cursor, &chunk.run_id));
            }
            (Err(DecodeError::Chunk { run_id, task_identifier, stream, source }), fits) => {
                prop_assert_eq!((&run_id, task_identifier.as_str()), (&chunk.run_id, Streamed::ID));
                prop_assert_eq!(stream.as_str(), &*chunk.stream);
                match (source, fits) {
                    (ChunkError::UnknownStream(unknown), None) => prop_assert_eq!(unknown, stream),
                    (ChunkError::Json(_), Some(Err(_))) => {}
                    (source, fits) => prop_assert!(false, "{:?} for {:?}", source, fits),
                }
            }
            (decoded, fits) => prop_assert!(false, "{:?} for {:?}", decoded, fits),
        }
    }

    /// A chunk a task writes to its stream reads back from the engine as written, its floats
    /// bit for bit.
    #[test]
    fn chunks_read_back_bit_for_bit(sample in sample()) {
        let (runtime, engine) = echo_engine();
        let back = runtime.block_on(async {
            let run = engine.trigger::<Echo>(sample.clone()).await.expect("triggered");
            let reader = runcast::RunFeed::read_stream(engine, run.id(), Echo::SAMPLES);
            let reader = reader.await.expect("read");
            let chunks = reader.map(|chunk| chunk.expect("a chunk").value).collect::<Vec<_>>();
            tokio::time::timeout(std::time::Duration::from_secs(30), chunks)
                .await
                .expect("the stream ends with its run")
        });
        let [back] = &back[..] else {
            return Err(TestCaseError::fail(format!("one chunk, not {back:?}")));
        };
        prop_assert_eq!(sample_bits(back), sample_bits(&sample));
    }
}

/// Writes its payload to its stream.
#[task(id = "props-echo", streams(samples = Sample))]
async fn echo(sample: Sample, ctx: TaskContext) -> Result<(), runcast::StreamError> {
    ctx.stream(Echo::SAMPLES).append(&sample).await.map(drop)
}

/// An engine running [`Echo`], shared by the cases of a property, on a runtime of its own.
fn echo_engine() -> &'static (tokio::runtime::Runtime, runcast::Engine) {
    static ENGINE: std::sync::OnceLock<(tokio::runtime::Runtime, runcast::Engine)> =
        std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let engine = runtime.block_on(async { runcast::Engine::builder().task::<Echo>().build() });
        (runtime, engine.expect("an engine"))
    })
}

// Timestamps.

/// The instant `ms` as a civil date and time in UTC: `(YYYY-MM-DD, HH:MM:SS, milliseconds)`,
/// with years outside 0 to 9999 written `±YYYYYY`, as JavaScript does. Computed here without
/// runcast or jiff (Howard Hinnant's `civil_from_days`), to check them against.
fn civil(ms: i64) -> (String, String, i64) {
    const DAY: i64 = 86_400_000;
    let (days, in_day) = (ms.div_euclid(DAY), ms.rem_euclid(DAY));
    let z = days + 719_468;
    let (era, day_of_era) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    let time = format!(
        "{:02}:{:02}:{:02}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60
    );
    (format!("{year}-{month:02}-{day:02}"), time, in_day % 1000)
}

/// What JavaScript's `new Date(ms).toISOString()` writes.
fn iso_text(ms: i64) -> String {
    let (date, time, millis) = civil(ms);
    format!("{date}T{time}.{millis:03}Z")
}

/// Text shaped like a date-time, often slightly wrong: what reaches the deeper paths of the
/// parser.
const TIMESTAMP_LIKE: &str = "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}(:[0-9]{1,2}(:[0-9]{1,2}([.,][0-9]{0,10})?)?)?)?([Zz]|[+-][0-9]{1,2}(:?[0-9]{2}(:?[0-9]{2})?)?)?(\\[[!A-Za-z/_+-]{0,12}\\])?";

/// A time zone suffix and its offset from UTC in minutes: `Z`, none (UTC, as Postgres'
/// `timestamp` columns), Postgres' `+00`, `+02`, and `±HH:MM` or `±HHMM`.
fn zone() -> impl Strategy<Value = (String, i64)> {
    let sign = |minutes: i64| if minutes < 0 { '-' } else { '+' };
    prop_oneof![
        prop::sample::select(vec!["Z", "z", "", "+00", "-00", "+00:00", "-00:00"])
            .prop_map(|zone| (zone.to_owned(), 0)),
        (-15..=15i64).prop_map(move |h| (format!("{}{:02}", sign(h), h.abs()), h * 60)),
        (-(15 * 60 + 59)..=15 * 60 + 59i64, any::<bool>()).prop_map(move |(m, colon)| {
            let colon = if colon { ":" } else { "" };
            (
                format!("{}{:02}{colon}{:02}", sign(m), m.abs() / 60, m.abs() % 60),
                m,
            )
        }),
    ]
}

/// The fraction of a second as it may be written for `millis`: three digits, Postgres' (trailing
/// zeros and an empty fraction left out), or with up to six more digits, which are truncated.
fn fraction(millis: i64, form: u8, more: &str) -> String {
    match form {
        0 => format!(".{millis:03}"),
        1 if millis == 0 => String::new(),
        1 => format!(".{millis:03}").trim_end_matches('0').to_owned(),
        _ => format!(".{millis:03}{more}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A timestamp is exactly the milliseconds within its range and nothing outside; it writes
    /// what JavaScript's `toISOString` writes, and reads that back.
    #[test]
    fn timestamps_write_what_javascript_writes_and_read_it_back(
        ms in prop_oneof![
            millis(),
            any::<i64>(),
            FIRST_MILLIS - 1000..=FIRST_MILLIS + 1000,
            LAST_MILLIS - 1000..=LAST_MILLIS + 1000,
        ],
    ) {
        let Some(t) = Timestamp::from_unix_millis(ms) else {
            prop_assert!(!(FIRST_MILLIS..=LAST_MILLIS).contains(&ms), "{} refused", ms);
            return Ok(());
        };
        prop_assert!((FIRST_MILLIS..=LAST_MILLIS).contains(&ms), "{} accepted", ms);
        prop_assert_eq!(t.unix_millis(), ms);
        let text = t.to_string();
        prop_assert_eq!(&text, &iso_text(ms));
        prop_assert_eq!(text.parse::<Timestamp>()?, t);
        prop_assert_eq!(json_text(&t), json_text(&text));
        prop_assert_eq!(serde_json::from_str::<Timestamp>(&json_text(&t))?, t);
    }

    /// Any text parses to a timestamp or an error quoting it, never a panic, and the same as a
    /// JSON string; what parses writes canonical text that reads back the same.
    #[test]
    fn timestamps_read_any_text_without_panicking(
        text in prop_oneof![any::<String>(), TIMESTAMP_LIKE],
    ) {
        let parsed = text.parse::<Timestamp>();
        let from_json = serde_json::from_str::<Timestamp>(&json_text(&text));
        prop_assert_eq!(parsed.as_ref().ok(), from_json.as_ref().ok());
        match parsed {
            Ok(t) => {
                prop_assert_eq!(t.to_string(), iso_text(t.unix_millis()));
                prop_assert_eq!(t.to_string().parse::<Timestamp>()?, t);
            }
            Err(error) => {
                prop_assert!(error.to_string().starts_with("invalid timestamp `"), "{}", error);
                let kept = error.input();
                let prefix = kept.strip_suffix('…').filter(|_| kept != text);
                prop_assert!(
                    kept == text || prefix.is_some_and(|p| p.len() <= 64 && text.starts_with(p)),
                    "kept {:?} of {:?}", kept, text
                );
            }
        }
    }

    /// The forms Postgres, Electric and other ISO 8601 writers use (a space or `t` for `T`,
    /// `+00` or no offset, other offsets, fewer or more fraction digits) read as the instant
    /// the canonical text names, extra digits truncated.
    #[test]
    fn other_writers_forms_read_as_the_same_instant(
        ms in millis().prop_map(|ms| ms.clamp(FIRST_MILLIS + 86_400_000, LAST_MILLIS - 86_400_000)),
        separator in prop::sample::select(vec!['T', 't', ' ']),
        (form, more) in (0..3u8, "[0-9]{1,6}"),
        (zone, offset) in zone(),
    ) {
        let expected = Timestamp::from_unix_millis(ms).expect("within range");
        prop_assert_eq!(expected.to_string().parse::<Timestamp>()?, expected);
        let (date, time, millis) = civil(ms + offset * 60_000);
        let text = format!("{date}{separator}{time}{}{zone}", fraction(millis, form, &more));
        prop_assert_eq!(text.parse::<Timestamp>()?, expected, "{}", text);
    }

    /// A date alone reads as its midnight, UTC.
    #[test]
    fn a_date_alone_reads_as_midnight_utc(
        day in (FIRST_MILLIS / 86_400_000 + 1)..=(LAST_MILLIS / 86_400_000),
    ) {
        let (date, _, _) = civil(day * 86_400_000);
        prop_assert_eq!(date.parse::<Timestamp>()?.unix_millis(), day * 86_400_000);
    }
}

// Cursors.

/// What `text` means as `<epoch>-<position>`, read by hand: hexadecimal digits, `-`, decimal
/// digits, each number within a `u64`, nothing else (no sign, no space).
fn cursor_parts(text: &str) -> Option<(u64, u64)> {
    fn number(digits: &str, radix: u32) -> Option<u64> {
        if digits.is_empty() {
            return None;
        }
        digits.chars().try_fold(0u64, |n, c| {
            n.checked_mul(radix.into())?
                .checked_add(c.to_digit(radix)?.into())
        })
    }
    let (epoch, position) = text.split_once('-')?;
    Some((number(epoch, 16)?, number(position, 10)?))
}

/// Small numbers and any `u64`.
fn cursor_number() -> impl Strategy<Value = u64> {
    prop_oneof![0..20u64, any::<u64>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A cursor's text reads back as the cursor, which writes the same text; cursors of one
    /// history compare by position, and none precedes the start.
    #[test]
    fn cursors_read_back_what_they_write(
        epoch in cursor_number(),
        position in cursor_number(),
        other in cursor_number(),
    ) {
        let text = format!("{epoch:x}-{position}");
        let cursor: Cursor = text.parse()?;
        prop_assert_eq!(&cursor.to_string(), &text);
        prop_assert_eq!(cursor.to_string().parse::<Cursor>()?, cursor);
        let other_cursor: Cursor = format!("{epoch:x}-{other}").parse()?;
        prop_assert_eq!(cursor.cmp(&other_cursor), position.cmp(&other));
        prop_assert!(Cursor::START <= cursor);
    }

    /// Any text reads as the cursor it spells or as an error quoting it, never a panic.
    #[test]
    fn cursors_refuse_what_is_not_one(
        text in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F]{1,17}-[0-9]{1,21}",
            "[0-9a-fA-Fg+ -]{0,6}-[0-9+ -]{0,6}",
        ],
    ) {
        match (text.parse::<Cursor>(), cursor_parts(&text)) {
            (Ok(cursor), Some((epoch, position))) => {
                prop_assert_eq!(cursor.to_string(), format!("{epoch:x}-{position}"));
            }
            (Err(error), None) => {
                prop_assert!(error.to_string().starts_with("invalid cursor `"), "{}", error);
            }
            (parsed, expected) => prop_assert!(false, "{:?}: {:?}, expected {:?}", text, parsed, expected),
        }
    }
}

// Metadata operations.

/// Why the model expects a change of metadata to be refused, to compare with the error runcast
/// returns.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    /// `increment` of the key, which holds this JSON.
    NotANumber(String, String),
    /// `increment` of the key to a number that is not finite.
    NotFinite(String),
    TooDeep,
    /// The metadata would be this many bytes of JSON.
    TooLarge(usize),
    DoesNotMatch,
}

/// The refusal `error` says, if it is one the model knows (with the documented limits).
fn refusal(error: &MetadataError) -> Option<Refusal> {
    Some(match error {
        MetadataError::NotANumber { key, found } => Refusal::NotANumber(key.clone(), found.clone()),
        MetadataError::NotFinite { key } => Refusal::NotFinite(key.clone()),
        MetadataError::TooDeep { limit } if *limit == MAX_METADATA_DEPTH => Refusal::TooDeep,
        MetadataError::TooLarge { size, limit } if *limit == MAX_METADATA_BYTES => {
            Refusal::TooLarge(*size)
        }
        MetadataError::DoesNotMatch { .. } => Refusal::DoesNotMatch,
        _ => return None,
    })
}

/// How deep a value nests: 0 for a scalar, 1 for `[]` or `{"a": 1}`, 3 for `{"a": [{}]}`.
fn depth(value: &Value) -> usize {
    let deepest = |values: &mut dyn Iterator<Item = &Value>| values.map(depth).max().unwrap_or(0);
    match value {
        Value::Array(items) => 1 + deepest(&mut items.iter()),
        Value::Object(object) => 1 + deepest(&mut object.values()),
        _ => 0,
    }
}

/// `ops` applied to `metadata` by the rules [`MetadataOp`] documents, written again here, then
/// the limits: the new metadata, or why it is refused.
fn model(metadata: &JsonObject, ops: &[MetadataOp]) -> Result<JsonObject, Refusal> {
    let mut next = metadata.clone();
    for op in ops.iter().cloned() {
        match op {
            MetadataOp::Set(key, value) => {
                next.insert(key, value);
            }
            MetadataOp::Delete(key) => {
                next.remove(&key);
            }
            MetadataOp::Append(key, value) => {
                let items = match next.remove(&key) {
                    None => vec![value],
                    Some(Value::Array(mut items)) => {
                        items.push(value);
                        items
                    }
                    Some(old) => vec![old, value],
                };
                next.insert(key, Value::Array(items));
            }
            MetadataOp::Remove(key, value) => {
                if let Some(Value::Array(items)) = next.get_mut(&key) {
                    items.retain(|item| *item != value);
                }
            }
            MetadataOp::Increment(key, by) => {
                let current = match next.get(&key) {
                    None | Some(Value::Null) => 0.0,
                    Some(Value::Number(n)) => n.as_f64().expect("a JSON number"),
                    Some(other) => return Err(Refusal::NotANumber(key, json_text(other))),
                };
                let sum = current + by;
                if !sum.is_finite() {
                    return Err(Refusal::NotFinite(key));
                }
                // A whole number is written as an integer, as JavaScript does: `1 + 1` is `2`.
                let exact_integer = sum.fract() == 0.0 && sum.abs() <= 9_007_199_254_740_991.0;
                let number = if exact_integer {
                    Value::from(sum as i64)
                } else {
                    Value::from(sum)
                };
                next.insert(key, number);
            }
            MetadataOp::Update(object) => next.extend(object),
            other => panic!("no model of {other:?}: write one"),
        }
    }
    if depth(&Value::Object(next.clone())) > MAX_METADATA_DEPTH {
        return Err(Refusal::TooDeep);
    }
    let size = json_text(&next).len();
    if size > MAX_METADATA_BYTES {
        return Err(Refusal::TooLarge(size));
    }
    Ok(next)
}

/// The metadata `ctx` holds, as JSON text.
fn held<T: Task>(ctx: &TaskContext<T>) -> Result<Option<String>, TestCaseError> {
    Ok(block_on(ctx.metadata())?.map(|metadata| json_text(&metadata)))
}

/// What a context of a task reads back for the metadata `next`: its text as the task's
/// metadata type, or why that type refuses it.
type ReadsAs = fn(&JsonObject) -> Result<String, Refusal>;

/// [`ReadsAs`] of a task with [`JsonObject`] metadata: the object itself.
fn as_object(next: &JsonObject) -> Result<String, Refusal> {
    Ok(json_text(next))
}

/// [`ReadsAs`] of [`Track`]: the object decoded as a [`Progress`].
fn as_progress(next: &JsonObject) -> Result<String, Refusal> {
    serde_json::from_str::<Progress>(&json_text(next))
        .map(|progress| json_text(&progress))
        .map_err(|_| Refusal::DoesNotMatch)
}

/// Applies `ops` through `ctx` and checks the outcome against the model, whose metadata
/// `model_metadata` holds and follows: the metadata the model computes, to the last bit, or
/// the refusal it predicts and the metadata unchanged.
fn check_update<T: Task>(
    ctx: &TaskContext<T>,
    model_metadata: &mut Option<JsonObject>,
    ops: Vec<MetadataOp>,
    reads_as: ReadsAs,
) -> Result<(), TestCaseError> {
    let before = held(ctx)?;
    let expected = model(&model_metadata.clone().unwrap_or_default(), &ops)
        .and_then(|next| Ok((reads_as(&next)?, next)));
    let outcome = block_on(ctx.update_metadata(ops.clone()));
    match (expected, outcome) {
        (Ok((text, next)), Ok(())) => {
            prop_assert_eq!(held(ctx)?, Some(text), "after {:?}", ops);
            *model_metadata = Some(next);
        }
        (Err(expected), Err(error)) => {
            prop_assert_eq!(refusal(&error), Some(expected), "{:?}: {}", ops, error);
            prop_assert_eq!(
                held(ctx)?,
                before,
                "a refused {:?} changed the metadata",
                ops
            );
        }
        (expected, outcome) => {
            prop_assert!(
                false,
                "{:?}: expected {:?}, got {:?}",
                ops,
                expected.map(|(text, _)| text),
                outcome
            );
        }
    }
    Ok(())
}

/// An amount to increment by: small whole numbers, any finite float, and the ones that make a
/// result that is not finite.
fn increment() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-3..=3i32).prop_map(f64::from),
        finite_f64(),
        prop::sample::select(vec![f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MAX]),
    ]
}

/// A value an operation sets, appends or removes: often one of a few (so that `remove` finds
/// what `append` added), or any JSON.
fn op_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            Value::from(1),
            Value::from(1.5),
            Value::from("x"),
            Value::Null,
            Value::Array(vec![Value::from(1)]),
        ]),
        json_value(),
    ]
}

/// Any operation on the keys `key` generates.
fn metadata_op<K: Strategy<Value = String> + Clone>(key: K) -> impl Strategy<Value = MetadataOp> {
    prop_oneof![
        (key.clone(), op_value()).prop_map(|(k, v)| MetadataOp::Set(k, v)),
        key.clone().prop_map(MetadataOp::Delete),
        (key.clone(), op_value()).prop_map(|(k, v)| MetadataOp::Append(k, v)),
        (key.clone(), op_value()).prop_map(|(k, v)| MetadataOp::Remove(k, v)),
        (key.clone(), increment()).prop_map(|(k, by)| MetadataOp::Increment(k, by)),
        (key.clone(), increment()).prop_map(|(k, by)| MetadataOp::decrement(k, by)),
        prop::collection::btree_map(key, op_value(), 0..4)
            .prop_map(|object| MetadataOp::Update(object.into_iter().collect())),
    ]
}

/// Batches of operations, each one `update_metadata` call.
fn batches<K: Strategy<Value = String> + Clone>(
    key: K,
) -> impl Strategy<Value = Vec<Vec<MetadataOp>>> {
    prop::collection::vec(prop::collection::vec(metadata_op(key), 1..5), 1..6)
}

/// A value nesting `levels` arrays and objects (chosen by `objects`) around a scalar.
fn nested_value(levels: usize, objects: &[bool], leaf: Value) -> Value {
    (0..levels).fold(leaf, |inner, level| {
        if objects[level % objects.len()] {
            Value::Object([("k".to_owned(), inner)].into_iter().collect())
        } else {
            Value::Array(vec![inner])
        }
    })
}

/// A fresh context of a task, with no metadata.
fn context<T: Task>() -> TaskContext<T> {
    TaskContext::new(RunId::from("run_properties"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Batches of operations make the metadata the model makes, to the last bit of every float;
    /// a batch that fails changes nothing.
    #[test]
    fn metadata_operations_do_what_they_document(batches in batches(key())) {
        let ctx = context::<Count>();
        let mut model = None;
        for ops in batches {
            check_update(&ctx, &mut model, ops, as_object)?;
        }
    }

    /// Metadata deeper than the limit is refused, however it gets deep, and the metadata held
    /// before stays, never wiped; metadata up to the limit is accepted and reads back.
    #[test]
    fn metadata_deeper_than_the_limit_is_refused_and_nothing_is_lost(
        start in json_object(),
        levels in prop_oneof![MAX_METADATA_DEPTH - 3..=MAX_METADATA_DEPTH + 3, 0..=2 * MAX_METADATA_DEPTH],
        objects in prop::collection::vec(any::<bool>(), 1..4),
        leaf in json_scalar(),
        how in 0..3u8,
    ) {
        let ctx = context::<Count>();
        let mut model = None;
        check_update(&ctx, &mut model, vec![MetadataOp::Update(start)], as_object)?;
        let deep = nested_value(levels, &objects, leaf);
        let op = match how {
            0 => MetadataOp::Set("deep".to_owned(), deep),
            1 => MetadataOp::Append("deep".to_owned(), deep),
            _ => MetadataOp::Update([("deep".to_owned(), deep)].into_iter().collect()),
        };
        check_update(&ctx, &mut model, vec![op], as_object)?;
        prop_assert!(held(&ctx)?.is_some(), "the metadata was wiped");
    }
}

// Metadata size limit: a quarter of a megabyte of JSON per case is slow to build in a debug
// build, and a few dozen cases straddle the limit as well as hundreds would.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(LARGE_CASES))]

    /// Metadata larger than the limit is refused, its size counted as the bytes of its JSON
    /// (escapes and multi-byte characters included), and nothing changes.
    #[test]
    fn metadata_larger_than_the_limit_is_refused(
        start in json_object(),
        piece in "[a-z\"\\\\é😀\u{1}]{1,4}",
        slack in -3..=3i64,
    ) {
        let ctx = context::<Count>();
        let mut model = None;
        check_update(&ctx, &mut model, vec![MetadataOp::Update(start.clone())], as_object)?;
        let mut empty = start;
        empty.insert("big".to_owned(), Value::from(""));
        let room = MAX_METADATA_BYTES - json_text(&empty).len();
        let piece_bytes = json_text(&piece).len() - 2;
        let count = usize::try_from(i64::try_from(room / piece_bytes)? + slack).unwrap_or(0);
        let op = MetadataOp::Set("big".to_owned(), Value::from(piece.repeat(count)));
        check_update(&ctx, &mut model, vec![op], as_object)?;
    }
}

// Typed metadata.

/// A [`Progress`].
fn progress() -> impl Strategy<Value = Progress> {
    (finite_f64(), any::<String>()).prop_map(|(ratio, label)| Progress { ratio, label })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Typed metadata reads back exactly as it was set, its float bit for bit.
    #[test]
    fn typed_metadata_reads_back_exactly(values in prop::collection::vec(progress(), 1..4)) {
        let ctx = context::<Track>();
        for progress in values {
            block_on(ctx.set_metadata(&progress))?;
            let back = block_on(ctx.metadata())?.expect("just set");
            prop_assert_eq!(back.ratio.to_bits(), progress.ratio.to_bits());
            prop_assert_eq!(back, progress);
        }
    }

    /// Untyped operations on typed metadata (set or not yet) apply when the result decodes as
    /// the type, and are refused with nothing changed when it would not.
    #[test]
    fn operations_on_typed_metadata_are_refused_unless_they_decode(
        start in prop::option::of(progress()),
        batches in batches(prop::sample::select(vec!["ratio", "label", "other"]).prop_map(str::to_owned)),
    ) {
        let ctx = context::<Track>();
        let mut model = None;
        if let Some(start) = start {
            block_on(ctx.set_metadata(&start))?;
            let Value::Object(start) = serde_json::to_value(&start)? else {
                unreachable!("a struct is an object");
            };
            model = Some(start);
        }
        for ops in batches {
            check_update(&ctx, &mut model, ops, as_progress)?;
        }
    }
}
