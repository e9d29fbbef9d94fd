//! The tasks that workers publish, so that a process that neither registers nor declares a
//! task (a server over Postgres, which runs nothing) can trigger it, and refuses what the task
//! could not read before anything is stored.
//!
//! An engine over a shared store publishes each task it registers when it starts: its
//! identifier and the JSON Schemas of its payload, output and metadata (the latest worker's
//! schemas win). An engine asked to trigger a task it does not know looks for it there, and
//! checks the payload and metadata against its schemas, as an engine that registers the task
//! checks them against its types. What it finds is kept for [`FRESH`], so a worker that starts
//! with new schemas is seen within that; a task that is not published is looked for again at
//! each trigger.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

use super::context::BoxFuture;
use super::error::TriggerError;
use super::executor::{Executor, Outcome, fatal};
use crate::model::{MetadataError, StoreError};
use crate::support::lock;
use crate::typed::Task;

/// How long a task found in the store is trusted before it is read again.
pub(crate) const FRESH: Duration = Duration::from_secs(5);

/// A task as a worker publishes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Published {
    pub(crate) id: String,
    pub(crate) payload: Value,
    pub(crate) output: Value,
    pub(crate) metadata: Value,
}

impl Published {
    /// `T`'s identifier and schemas.
    pub(crate) fn of<T: Task>() -> Self {
        Published {
            id: T::ID.to_owned(),
            payload: T::payload_schema().to_value(),
            output: T::output_schema().to_value(),
            metadata: T::metadata_schema().to_value(),
        }
    }
}

/// A task another process published: triggered here, checked against its schemas, never run
/// here.
pub(crate) struct Cataloged {
    id: String,
    payload: jsonschema::Validator,
    metadata: jsonschema::Validator,
}

impl Cataloged {
    /// Compiles a published task's schemas.
    fn new(published: Published) -> Result<Self, StoreError> {
        let compile = |schema: &Value, of: &str| {
            jsonschema::validator_for(schema).map_err(|error| {
                let task = &published.id;
                let message = format!(
                    "the {of} schema that a worker published for task `{task}` is not valid: {error}"
                );
                StoreError::new(message)
            })
        };
        Ok(Cataloged {
            payload: compile(&published.payload, "payload")?,
            metadata: compile(&published.metadata, "metadata")?,
            id: published.id,
        })
    }
}

/// The first place where `value` breaks `schema`: its path (as `serde_path_to_error` writes
/// them: `items[2].name`, `.` for the whole value) and what is wrong there.
fn mismatch(schema: &jsonschema::Validator, value: &Value) -> Option<(String, String)> {
    let error = schema.validate(value).err()?;
    let mut path = String::new();
    for segment in error.instance_path() {
        match segment {
            jsonschema::paths::LocationSegment::Index(index) => {
                // Writing to a `String` cannot fail.
                let _ = write!(path, "[{index}]");
            }
            jsonschema::paths::LocationSegment::Property(name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    // The message quotes the value that does not match: not when it is large.
    let message = error.to_string();
    let message = if message.len() > 200 {
        error.masked().to_string()
    } else {
        message
    };
    Some((path, message))
}

impl Executor for Cataloged {
    fn type_name(&self) -> &'static str {
        "a task published by another process"
    }

    fn execute(
        &self,
        _payload: Option<Arc<RawValue>>,
        _attempt: super::context::Attempt,
    ) -> BoxFuture<'static, Outcome> {
        // Workers attempt only the tasks that run here (`runs_here`).
        let message = format!(
            "task `{}` is published by another process, not run here",
            self.id
        );
        Box::pin(std::future::ready(Err(fatal("NotRunHere", message))))
    }

    fn check_metadata(&self, raw: &RawValue) -> Result<(), MetadataError> {
        let value: Value = serde_json::from_str(raw.get()).map_err(MetadataError::Unreadable)?;
        match mismatch(&self.metadata, &value) {
            None => Ok(()),
            Some((path, message)) => {
                let source = serde::de::Error::custom(format!("at `{path}`: {message}"));
                Err(MetadataError::does_not_match(&self.id, source))
            }
        }
    }

    fn check_payload(&self, raw: &RawValue) -> Result<(), TriggerError> {
        let value: Value =
            serde_json::from_str(raw.get()).map_err(|error| TriggerError::PayloadMismatch {
                task: self.id.clone(),
                path: ".".into(),
                message: error.to_string(),
            })?;
        match mismatch(&self.payload, &value) {
            None => Ok(()),
            Some((path, message)) => Err(TriggerError::PayloadMismatch {
                task: self.id.clone(),
                path,
                message,
            }),
        }
    }

    fn runs_here(&self) -> bool {
        false
    }

    fn published(&self) -> Option<Published> {
        None
    }
}

/// A published task as an engine read it, and when.
type Found = (Instant, Arc<dyn Executor>);

/// The published tasks an engine found.
#[derive(Default)]
pub(crate) struct Catalog {
    // Keyed by tasks that workers published: std's map, as for other names users choose.
    found: Mutex<HashMap<String, Found>>,
}

impl Catalog {
    /// `task`, if read less than [`FRESH`] ago.
    pub(crate) fn fresh(&self, task: &str) -> Option<Arc<dyn Executor>> {
        let found = lock(&self.found);
        let (read, executor) = found.get(task)?;
        (read.elapsed() < FRESH).then(|| executor.clone())
    }

    /// Keeps a task just read from the store.
    pub(crate) fn keep(&self, published: Published) -> Result<Arc<dyn Executor>, StoreError> {
        let id = published.id.clone();
        let executor: Arc<dyn Executor> = Arc::new(Cataloged::new(published)?);
        lock(&self.found).insert(id, (Instant::now(), executor.clone()));
        Ok(executor)
    }

    /// Forgets a task the store no longer has.
    pub(crate) fn forget(&self, task: &str) {
        lock(&self.found).remove(task);
    }
}
