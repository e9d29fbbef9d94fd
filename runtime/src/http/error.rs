//! Errors as Trigger.dev's API answers them: a status code and `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::{CancelError, FeedError, TriggerError};

/// A request refused or failed: its status and message.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    /// Extra fields of the body (a scope refusal's `code`, ...).
    extra: Option<serde_json::Value>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(super) fn run_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Run not found")
    }

    /// The same error, its message after `prefix`.
    pub(super) fn prefixed(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }

    /// A token whose scopes do not reach what it asked for.
    pub(super) fn forbidden() -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: "Unauthorized".to_owned(),
            extra: Some(serde_json::json!({
                "code": "unauthorized",
                "param": "access_token",
                "type": "authorization",
            })),
        }
    }

    /// The engine failed; the details go to the log, not to the client.
    pub(super) fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Something went wrong: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(object)) =
            (self.extra, body.as_object_mut())
        {
            object.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<TriggerError> for ApiError {
    fn from(error: TriggerError) -> Self {
        match error {
            TriggerError::UnknownTask(task) => Self::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Task not found: no task `{task}` is registered with this server (or published by a worker that shares its database)"
                ),
            ),
            TriggerError::PayloadTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            TriggerError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
            TriggerError::Store(ref store) => Self::internal(store),
            _ => Self::unprocessable(error.to_string()),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(error: CancelError) -> Self {
        match error {
            CancelError::UnknownRun(_) => Self::run_not_found(),
            _ => Self::internal(&error),
        }
    }
}

impl From<FeedError> for ApiError {
    fn from(error: FeedError) -> Self {
        match error {
            FeedError::UnknownRun(_) => Self::new(StatusCode::NOT_FOUND, "Not found"),
            FeedError::Stopped => Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
            _ => Self::internal(&error),
        }
    }
}

/// A request's JSON body, or `400` saying what is wrong with it.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// Any path the API does not serve.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not found")
}
