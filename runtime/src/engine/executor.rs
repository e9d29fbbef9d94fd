//! Registered task functions, with their types erased: raw payload in, raw output out.

use std::any::type_name;
use std::marker::PhantomData;

use serde_json::value::RawValue;

use crate::run::SerializedError;
use crate::task::{BoxFuture, TaskContext, TaskFn};

/// One attempt's result: the output as JSON, or why the attempt failed.
pub(crate) type Attempt = Result<Box<RawValue>, SerializedError>;

/// A task function the engine can run from a raw payload.
pub(crate) trait Executor: Send + Sync {
    fn execute(&self, payload: Option<&RawValue>, ctx: TaskContext) -> BoxFuture<'static, Attempt>;
}

pub(crate) struct FnExecutor<T>(PhantomData<fn() -> T>);

impl<T> FnExecutor<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: TaskFn> Executor for FnExecutor<T> {
    fn execute(&self, payload: Option<&RawValue>, ctx: TaskContext) -> BoxFuture<'static, Attempt> {
        // The payload was serialized from `T::Payload` at trigger; it decodes unless it was
        // stored by another version of the task.
        let payload = serde_json::from_str::<T::Payload>(payload.map_or("null", RawValue::get));
        Box::pin(async move {
            let payload = payload.map_err(|e| SerializedError {
                message: format!("the payload does not match task `{}`: {e}", T::ID),
                name: Some("PayloadError".into()),
                stack_trace: None,
            })?;
            let output = T::run(payload, ctx).await.map_err(|e| SerializedError {
                message: e.to_string(),
                name: Some(type_name::<T::Error>().into()),
                stack_trace: Some(format!("{e:?}")),
            })?;
            serde_json::value::to_raw_value(&output).map_err(|e| SerializedError {
                message: format!(
                    "the output of task `{}` could not be serialized: {e}",
                    T::ID
                ),
                name: Some("OutputError".into()),
                stack_trace: None,
            })
        })
    }
}
