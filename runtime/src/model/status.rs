//! [`RunStatus`]: where a run is in its lifecycle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The status of a run, as the public run object names it.
///
/// Serialized as the exact upper-case names (`"QUEUED"`, `"COMPLETED"`, ...).
///
/// | status | [`is_queued`](Self::is_queued) | [`is_executing`](Self::is_executing) | [`is_waiting`](Self::is_waiting) | [`is_success`](Self::is_success) | [`is_failed`](Self::is_failed) | [`is_canceled`](Self::is_canceled) | [`is_final`](Self::is_final) |
/// |---|:-:|:-:|:-:|:-:|:-:|:-:|:-:|
/// | `WAITING_FOR_DEPLOY` | ✓ | | | | | | |
/// | `QUEUED`             | ✓ | | | | | | |
/// | `DELAYED`            | ✓ | | | | | | |
/// | `EXECUTING`          | | ✓ | | | | | |
/// | `REATTEMPTING`       | | ✓ | | | | | |
/// | `FROZEN`             | | ✓ | ✓ | | | | |
/// | `COMPLETED`          | | | | ✓ | | | ✓ |
/// | `CANCELED`           | | | | | | ✓ | ✓ |
/// | `FAILED`             | | | | | ✓ | | ✓ |
/// | `CRASHED`            | | | | | ✓ | | ✓ |
/// | `INTERRUPTED`        | | | | | ✓ | | ✓ |
/// | `SYSTEM_FAILURE`     | | | | | ✓ | | ✓ |
/// | `EXPIRED`            | | | | | ✓ | | ✓ |
/// | `TIMED_OUT`          | | | | | ✓ | | ✓ |
///
/// [`is_final`](Self::is_final) is exactly "success, failed or canceled": a run in a final
/// status never changes status again.
///
/// ```
/// use runcast::RunStatus;
///
/// let status: RunStatus = serde_json::from_str(r#""REATTEMPTING""#)?;
/// assert!(status.is_executing() && !status.is_final());
/// assert_eq!(status.as_str(), "REATTEMPTING");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Waiting for a deployment that contains the task.
    WaitingForDeploy,
    /// Waiting for a worker.
    Queued,
    /// Running on a worker.
    Executing,
    /// Failed an attempt and waiting to be retried.
    Reattempting,
    /// Paused while it waits (for a child run, a delay, a token) and not using a worker.
    Frozen,
    /// Finished successfully; the output is set.
    Completed,
    /// Canceled before it finished.
    Canceled,
    /// Failed on its last attempt; the error is set.
    Failed,
    /// The task's code crashed (a panic, an out-of-memory kill).
    Crashed,
    /// Interrupted by the system while it ran.
    Interrupted,
    /// Failed because of an error in the system rather than the task.
    SystemFailure,
    /// Triggered with a delay that has not passed yet.
    Delayed,
    /// Not started before its time to live ran out.
    Expired,
    /// Ran longer than its maximum duration.
    TimedOut,
}

impl RunStatus {
    /// Every status, in the order of the public run object's documentation.
    pub const ALL: [RunStatus; 14] = [
        Self::WaitingForDeploy,
        Self::Queued,
        Self::Executing,
        Self::Reattempting,
        Self::Frozen,
        Self::Completed,
        Self::Canceled,
        Self::Failed,
        Self::Crashed,
        Self::Interrupted,
        Self::SystemFailure,
        Self::Delayed,
        Self::Expired,
        Self::TimedOut,
    ];

    /// The wire name: `"QUEUED"`, `"TIMED_OUT"`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForDeploy => "WAITING_FOR_DEPLOY",
            Self::Queued => "QUEUED",
            Self::Executing => "EXECUTING",
            Self::Reattempting => "REATTEMPTING",
            Self::Frozen => "FROZEN",
            Self::Completed => "COMPLETED",
            Self::Canceled => "CANCELED",
            Self::Failed => "FAILED",
            Self::Crashed => "CRASHED",
            Self::Interrupted => "INTERRUPTED",
            Self::SystemFailure => "SYSTEM_FAILURE",
            Self::Delayed => "DELAYED",
            Self::Expired => "EXPIRED",
            Self::TimedOut => "TIMED_OUT",
        }
    }

    /// Waiting to start: `WAITING_FOR_DEPLOY`, `QUEUED` or `DELAYED`.
    pub const fn is_queued(self) -> bool {
        matches!(self, Self::WaitingForDeploy | Self::Queued | Self::Delayed)
    }

    /// Started and not finished: `EXECUTING`, `REATTEMPTING` or `FROZEN`.
    pub const fn is_executing(self) -> bool {
        matches!(self, Self::Executing | Self::Reattempting | Self::Frozen)
    }

    /// Started and paused: `FROZEN`.
    pub const fn is_waiting(self) -> bool {
        matches!(self, Self::Frozen)
    }

    /// Finished successfully: `COMPLETED`.
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Completed)
    }

    /// Finished without success for a reason other than cancellation: `FAILED`, `CRASHED`,
    /// `INTERRUPTED`, `SYSTEM_FAILURE`, `EXPIRED` or `TIMED_OUT`.
    pub const fn is_failed(self) -> bool {
        matches!(
            self,
            Self::Failed
                | Self::Crashed
                | Self::Interrupted
                | Self::SystemFailure
                | Self::Expired
                | Self::TimedOut
        )
    }

    /// Canceled: `CANCELED`.
    pub const fn is_canceled(self) -> bool {
        matches!(self, Self::Canceled)
    }

    /// Will never change status again: success, failed or canceled.
    pub const fn is_final(self) -> bool {
        self.is_success() || self.is_failed() || self.is_canceled()
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`RunStatus`] from a string that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status `{0}`; expected one of WAITING_FOR_DEPLOY, QUEUED, EXECUTING, REATTEMPTING, FROZEN, COMPLETED, CANCELED, FAILED, CRASHED, INTERRUPTED, SYSTEM_FAILURE, DELAYED, EXPIRED, TIMED_OUT"
)]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_serde_and_from_str() {
        for status in RunStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), status);
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
    }

    #[test]
    fn each_status_is_in_exactly_one_phase() {
        for status in RunStatus::ALL {
            let phases = [
                status.is_queued(),
                status.is_executing(),
                status.is_success(),
                status.is_failed(),
                status.is_canceled(),
            ];
            assert_eq!(phases.iter().filter(|p| **p).count(), 1, "{status}");
            assert_eq!(
                status.is_final(),
                !status.is_queued() && !status.is_executing(),
                "{status}"
            );
        }
    }

    #[test]
    fn unknown_names_are_rejected_with_the_name() {
        let err = "DEQUEUED".parse::<RunStatus>().unwrap_err();
        assert!(err.to_string().contains("`DEQUEUED`"), "{err}");
        let err = serde_json::from_str::<RunStatus>(r#""queued""#).unwrap_err();
        assert!(err.to_string().contains("queued"), "{err}");
    }
}
