//! Registered task functions, with their types erased: raw payload in, raw output out.

use std::any::type_name;
use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::context::{Attempt, BoxFuture, TaskContext, TaskFn, check_metadata, reads_back};
use super::error::TriggerError;
use crate::model::{MetadataError, SerializedError};
use crate::typed::Task;

/// How one attempt ended, when it ended by itself: the output as JSON, or why it failed.
pub(crate) type Outcome = Result<Box<RawValue>, Failure>;

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: SerializedError,
    /// `false` when retrying cannot help: the payload does not decode as the task's type, or
    /// the output cannot be written as JSON that decodes.
    pub(crate) retry: bool,
}

/// A task function the engine can run from a raw payload.
pub(crate) trait Executor: Send + Sync {
    /// The Rust type of the task, for messages.
    fn type_name(&self) -> &'static str;

    /// Runs one attempt.
    fn execute(
        &self,
        payload: Option<Arc<RawValue>>,
        attempt: Attempt,
    ) -> BoxFuture<'static, Outcome>;

    /// Whether raw metadata decodes as the task's metadata type.
    fn check_metadata(&self, raw: &RawValue) -> Result<(), MetadataError>;

    /// Whether a payload that came as JSON decodes as the task's payload type; if not, where
    /// and why not.
    fn check_payload(&self, raw: &RawValue) -> Result<(), TriggerError>;

    /// Whether this process runs the task (it registered its function), or only triggers
    /// and watches its runs (it declared it, or another process published it).
    fn runs_here(&self) -> bool {
        true
    }

    /// What this process publishes of the task for other processes that share its store: the
    /// tasks it runs.
    #[cfg(feature = "postgres")]
    fn published(&self) -> Option<super::catalog::Published>;
}

/// A task this process triggers and watches but does not run: another process that shares
/// the store runs it.
pub(crate) struct Declared<T>(PhantomData<fn() -> T>);

impl<T> Declared<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Task> Executor for Declared<T> {
    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }

    fn execute(
        &self,
        _payload: Option<Arc<RawValue>>,
        _attempt: Attempt,
    ) -> BoxFuture<'static, Outcome> {
        // Workers attempt only the tasks that run here (`runs_here`).
        Box::pin(std::future::ready(Err(fatal(
            "NotRunHere",
            format!(
                "task `{}` is declared in this process, not registered to run in it",
                T::ID
            ),
        ))))
    }

    fn check_metadata(&self, raw: &RawValue) -> Result<(), MetadataError> {
        check_metadata::<T>(raw)
    }

    fn check_payload(&self, raw: &RawValue) -> Result<(), TriggerError> {
        check_payload::<T>(raw)
    }

    fn runs_here(&self) -> bool {
        false
    }

    #[cfg(feature = "postgres")]
    fn published(&self) -> Option<super::catalog::Published> {
        None
    }
}

pub(crate) struct FnExecutor<T>(PhantomData<fn() -> T>);

impl<T> FnExecutor<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// Whether `raw` decodes as the payload type of `T`; if not, where and why not.
fn check_payload<T: Task>(raw: &RawValue) -> Result<(), TriggerError> {
    let mut json = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize::<_, T::Payload>(&mut json)
        .map(drop)
        .map_err(|error| {
            let path = error.path().to_string();
            let message = error.into_inner().to_string();
            // The path says where; serde's line and column of the payload's JSON say no more.
            let message = match message.rsplit_once(" at line ") {
                Some((what, _)) => what.to_owned(),
                None => message,
            };
            TriggerError::PayloadMismatch {
                task: T::ID.to_owned(),
                path,
                message,
            }
        })
}

/// A failure that no retry can mend.
pub(crate) fn fatal(name: &str, message: String) -> Failure {
    Failure {
        error: SerializedError {
            message,
            name: Some(name.into()),
            stack_trace: None,
        },
        retry: false,
    }
}

impl<T: TaskFn> Executor for FnExecutor<T> {
    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }

    fn execute(
        &self,
        payload: Option<Arc<RawValue>>,
        attempt: Attempt,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            // Decoded inside the future, where a panic of the type's `Deserialize` is caught.
            // It was checked at trigger; it fails only if another version of the task stored
            // it.
            let raw = payload.as_deref().map_or("null", RawValue::get);
            let payload = serde_json::from_str::<T::Payload>(raw).map_err(|e| {
                fatal(
                    "PayloadError",
                    format!("the payload does not match task `{}`: {e}", T::ID),
                )
            })?;
            let ctx = TaskContext::<T>::for_attempt(attempt);
            let output = T::run(payload, ctx).await.map_err(|e| Failure {
                error: SerializedError {
                    message: e.to_string(),
                    name: Some(type_name::<T::Error>().into()),
                    stack_trace: Some(format!("{e:?}")),
                },
                retry: true,
            })?;
            serde_json::value::to_raw_value(&output)
                .and_then(|raw| reads_back::<T::Output>(&raw).map(|()| raw))
                .map_err(|e| {
                    let message = format!(
                        "the output of task `{}` cannot be written as JSON that reads back as its type: {e}",
                        T::ID
                    );
                    fatal("OutputError", message)
                })
        })
    }

    fn check_metadata(&self, raw: &RawValue) -> Result<(), MetadataError> {
        check_metadata::<T>(raw)
    }

    fn check_payload(&self, raw: &RawValue) -> Result<(), TriggerError> {
        check_payload::<T>(raw)
    }

    #[cfg(feature = "postgres")]
    fn published(&self) -> Option<super::catalog::Published> {
        Some(super::catalog::Published::of::<T>())
    }
}
