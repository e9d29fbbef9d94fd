//! Compile-time checks of the types given to the macros.
//!
//! `#[task]` checks a task's types in one constant of the task type (`realtime_union!`,
//! each member's in one constant of the union), as the sum of `<T as TaskPayload<...>>::OK`
//! and the like, and writes each of these types as
//! `Checked<T, { that constant }>`, which is `T`. A failed check is one error, at the
//! type, saying what it lacks; and the constant then has no value, so rustc treats every
//! type checked by it as an error and reports nothing more about it: not the bounds of the
//! `Task` impl, and not each use of the task in the program. A macro's own errors go in
//! that constant too, to the same effect. (`DistinctId`, which compares two members of a union,
//! is a `const _` of its own: a union's types do not depend on it.)

use std::convert::Infallible;
use std::fmt::{Debug, Display};
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Task;

/// `T`, once the constant `CHECK` has a value: an error type if a check failed.
pub type Checked<T, const CHECK: usize> = <T as Check<CHECK>>::Type;

/// What [`Checked`] goes through.
pub trait Check<const CHECK: usize> {
    /// `Self`.
    type Type: ?Sized;
}

impl<T: ?Sized, const CHECK: usize> Check<CHECK> for T {
    type Type = T;
}

/// What `T` implements, as constants: `<Is<T>>::SERIALIZE` is `true` if `T` implements
/// `Serialize`, and, with [`IsNot`] in scope, `false` if it does not.
#[derive(Debug)]
pub struct Is<T: ?Sized>(PhantomData<T>);

/// The answers of [`Is`] for a type that lacks the trait.
pub trait IsNot {
    /// `Serialize`.
    const SERIALIZE: bool = false;
    /// `DeserializeOwned`.
    const DESERIALIZE: bool = false;
    /// `JsonSchema`.
    const JSON_SCHEMA: bool = false;
    /// `Send + Sync + 'static`.
    const SEND_SYNC: bool = false;
    /// `Send + 'static`.
    const SEND: bool = false;
    /// `Display`.
    const DISPLAY: bool = false;
    /// `Debug`.
    const DEBUG: bool = false;
    /// A `Result`.
    const RESULT: bool = false;
    /// A task.
    const TASK: bool = false;
}

impl<T: ?Sized> IsNot for Is<T> {}

impl<T: ?Sized + Serialize> Is<T> {
    /// `T: Serialize`.
    pub const SERIALIZE: bool = true;
}

impl<T: DeserializeOwned> Is<T> {
    /// `T: DeserializeOwned`.
    pub const DESERIALIZE: bool = true;
}

impl<T: ?Sized + JsonSchema> Is<T> {
    /// `T: JsonSchema`.
    pub const JSON_SCHEMA: bool = true;
}

impl<T: ?Sized + Send + Sync + 'static> Is<T> {
    /// `T: Send + Sync + 'static`.
    pub const SEND_SYNC: bool = true;
}

impl<T: ?Sized + Send + 'static> Is<T> {
    /// `T: Send + 'static`.
    pub const SEND: bool = true;
}

impl<T: ?Sized + Display> Is<T> {
    /// `T: Display`.
    pub const DISPLAY: bool = true;
}

impl<T: ?Sized + Debug> Is<T> {
    /// `T: Debug`.
    pub const DEBUG: bool = true;
}

impl<T, E> Is<Result<T, E>> {
    /// A `Result`.
    pub const RESULT: bool = true;
}

impl<T: Task> Is<T> {
    /// `T: Task`.
    pub const TASK: bool = true;
}

/// Whether a type is a `Result`, as a type.
#[derive(Debug)]
pub struct IsResult<const RESULT: bool>;

/// The `Ok` and `Err` types of `R` if it is a `Result`; `()` and `Infallible`, which
/// pass every check, if not.
pub trait ResultParts<R: ?Sized> {
    /// The `Ok` type.
    type Ok: ?Sized;
    /// The `Err` type.
    type Err: ?Sized;
}

impl<T, E> ResultParts<Result<T, E>> for IsResult<true> {
    type Ok = T;
    type Err = E;
}

impl<R: ?Sized> ResultParts<R> for IsResult<false> {
    type Ok = ();
    type Err = Infallible;
}

/// The `Ok` type of `R`, a `Result` if `RESULT`.
pub type OkOf<R, const RESULT: bool> = <IsResult<RESULT> as ResultParts<R>>::Ok;

/// The `Err` type of `R`, a `Result` if `RESULT`.
pub type ErrOf<R, const RESULT: bool> = <IsResult<RESULT> as ResultParts<R>>::Err;

/// A task's payload type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's payload: it must implement `Serialize`, `Deserialize`, `JsonSchema`, `Send` and `Sync`",
    label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `JsonSchema`: {SCHEMA}, `Send + Sync`: {SEND}",
    note = "a payload is stored and sent between processes as JSON, and its JSON Schema describes the task: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait TaskPayload<const SER: bool, const DE: bool, const SCHEMA: bool, const SEND: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> TaskPayload<true, true, true, true> for T {}

/// A task's output type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's output: it must implement `Serialize`, `Deserialize`, `JsonSchema`, `Send` and `Sync`",
    label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `JsonSchema`: {SCHEMA}, `Send + Sync`: {SEND}",
    note = "an output is stored and sent to subscribers as JSON, and its JSON Schema describes the task: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait TaskOutput<const SER: bool, const DE: bool, const SCHEMA: bool, const SEND: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> TaskOutput<true, true, true, true> for T {}

/// A task's metadata type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's metadata: it must implement `Serialize`, `Deserialize`, `JsonSchema`, `Send` and `Sync`",
    label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `JsonSchema`: {SCHEMA}, `Send + Sync`: {SEND}",
    note = "metadata is stored and sent to subscribers as JSON, and its JSON Schema lets other processes check what they write: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]`"
)]
pub trait TaskMetadata<const SER: bool, const DE: bool, const SCHEMA: bool, const SEND: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> TaskMetadata<true, true, true, true> for T {}

/// The chunk type of a task's stream.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the chunk type of a stream: it must implement `Serialize`, `Deserialize` and `Send`",
    label = "implements `Serialize`: {SER}, `Deserialize`: {DE}, `Send`: {SEND}",
    note = "chunks are stored and sent to subscribers as JSON: derive the traits, as in `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait StreamChunk<const SER: bool, const DE: bool, const SEND: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> StreamChunk<true, true, true> for T {}

/// The return type of a task function.
#[diagnostic::on_unimplemented(
    message = "a task function must return `Result<Output, Error>`, not `{Self}`",
    label = "not a `Result`",
    note = "the `Ok` type is the task's output, what subscribers receive, and the error's `Display` becomes the run's error message; an alias such as `std::io::Result<T>` works too"
)]
pub trait TaskFnReturn<const RESULT: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> TaskFnReturn<true> for T {}

/// The error type of a task function's `Result`.
#[diagnostic::on_unimplemented(
    message = "a task function cannot return `{Self}`: its error type must implement `Display`, `Debug` and `Send`",
    label = "error type implements `Display`: {DISPLAY}, `Debug`: {DEBUG}, `Send + 'static`: {SEND}",
    note = "the error's `Display` becomes the run's error message, sent from the worker that ran the task; a boxed error must be `Send`: `Box<dyn std::error::Error + Send + Sync>`"
)]
pub trait TaskFnError<const DISPLAY: bool, const DEBUG: bool, const SEND: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> TaskFnError<true, true, true> for T {}

/// A type listed in `realtime_union!`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task, so `realtime_union!` cannot list it",
    label = "not declared with `#[task]`",
    note = "list the types `#[task]` declares: a task struct, or the struct named after a task function (`ResizeImage` for `async fn resize_image`)"
)]
pub trait UnionMember<const TASK: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized> UnionMember<true> for T {}

/// Two tasks of a union, whose identifiers must differ.
#[diagnostic::on_unimplemented(
    message = "`{Self}` and `{Other}` have the same task identifier, so a run of one could not be told from a run of the other",
    label = "same identifier as `{Other}`",
    note = "a union matches runs to its tasks by identifier: give one of them another `#[task(id = \"...\")]`"
)]
pub trait DistinctId<Other: ?Sized, const DISTINCT: bool> {
    /// `0`, when the check passes.
    const OK: usize = 0;
}

#[diagnostic::do_not_recommend]
impl<T: ?Sized, Other: ?Sized> DistinctId<Other, true> for T {}
