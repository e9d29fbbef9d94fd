//! Trigger.dev's database status names (`TaskRunStatus`), the ones its run table holds and its
//! run feed sends, and how they map onto runcast's [`RunStatus`].
//!
//! runcast writes each status under the name the official SDK maps back to it (`PENDING` is
//! `QUEUED`, `COMPLETED_SUCCESSFULLY` is `COMPLETED`, ...), so a row it writes reads back as the
//! same status. Names runcast never writes but Trigger.dev does (`DEQUEUED`,
//! `WAITING_TO_RESUME`, `PENDING_VERSION`) read as the public status the SDK shows for them.

use crate::model::RunStatus;

/// The database name runcast writes for `status`.
pub(crate) const fn database_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::WaitingForDeploy => "WAITING_FOR_DEPLOY",
        RunStatus::Queued => "PENDING",
        RunStatus::Executing => "EXECUTING",
        RunStatus::Reattempting => "RETRYING_AFTER_FAILURE",
        RunStatus::Frozen => "PAUSED",
        RunStatus::Completed => "COMPLETED_SUCCESSFULLY",
        RunStatus::Canceled => "CANCELED",
        RunStatus::Failed => "COMPLETED_WITH_ERRORS",
        RunStatus::Crashed => "CRASHED",
        RunStatus::Interrupted => "INTERRUPTED",
        RunStatus::SystemFailure => "SYSTEM_FAILURE",
        RunStatus::Delayed => "DELAYED",
        RunStatus::Expired => "EXPIRED",
        RunStatus::TimedOut => "TIMED_OUT",
    }
}

/// The status a database name stands for; `None` for a name Trigger.dev does not define.
#[cfg(any(feature = "postgres", feature = "client"))]
pub(crate) fn from_database_name(name: &str) -> Option<RunStatus> {
    let status = match name {
        "DEQUEUED" => RunStatus::Executing,
        "WAITING_TO_RESUME" => RunStatus::Frozen,
        "PENDING_VERSION" => RunStatus::WaitingForDeploy,
        _ => {
            return RunStatus::ALL
                .into_iter()
                .find(|&s| database_name(s) == name);
        }
    };
    Some(status)
}

/// The name of `status` in the run object of the REST API (`GET /api/v3/runs/{id}`), whose
/// schema in the SDK knows only `PENDING_VERSION`, `QUEUED`, `DEQUEUED`, `EXECUTING`,
/// `WAITING`, `COMPLETED`, `CANCELED`, `FAILED`, `CRASHED`, `SYSTEM_FAILURE`, `DELAYED`,
/// `EXPIRED` and `TIMED_OUT`: the others map as the SDK maps their database names.
#[cfg(feature = "server")]
pub(crate) const fn api_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::WaitingForDeploy => "PENDING_VERSION",
        RunStatus::Reattempting => "EXECUTING",
        RunStatus::Frozen => "WAITING",
        RunStatus::Interrupted => "FAILED",
        other => other.as_str(),
    }
}

/// The status a name of the REST run object stands for (`api_name`'s, and the public
/// names); `None` for a name the API does not define.
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn from_api_name(name: &str) -> Option<RunStatus> {
    Some(match name {
        "PENDING_VERSION" => RunStatus::WaitingForDeploy,
        "DEQUEUED" => RunStatus::Executing,
        "WAITING" => RunStatus::Frozen,
        other => return other.parse().ok(),
    })
}

#[cfg(all(test, any(feature = "postgres", feature = "client")))]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_database_name() {
        for status in RunStatus::ALL {
            assert_eq!(from_database_name(database_name(status)), Some(status));
        }
        let mut names: Vec<_> = RunStatus::ALL.map(database_name).into();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            RunStatus::ALL.len(),
            "two statuses share a name"
        );
    }

    #[test]
    fn trigger_dev_names_runcast_never_writes_read_as_the_sdk_shows_them() {
        assert_eq!(from_database_name("DEQUEUED"), Some(RunStatus::Executing));
        assert_eq!(
            from_database_name("WAITING_TO_RESUME"),
            Some(RunStatus::Frozen)
        );
        assert_eq!(
            from_database_name("PENDING_VERSION"),
            Some(RunStatus::WaitingForDeploy)
        );
        assert_eq!(from_database_name("QUEUED"), None);
        assert_eq!(from_database_name("pending"), None);
    }
}
