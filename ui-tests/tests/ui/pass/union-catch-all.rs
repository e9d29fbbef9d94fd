//! A union with a catch-all variant for runs of tasks it does not list.

use runcast::{AnyRun, RunInfo, RunUnion, realtime_union, task};

#[task(id = "a", payload = u8, output = u8)]
pub struct A;

#[task(id = "b", payload = String, output = ())]
pub struct B;

realtime_union! {
    pub enum Feed {
        A,
        B,
        /// Anything else.
        _ => Other,
    }
}

fn main() {
    let json = r#"{"id":"run_9","taskIdentifier":"c","payload":[1,2],"status":"QUEUED",
        "createdAt":"2024-11-01T12:00:00.000Z","updatedAt":"2024-11-01T12:00:00.000Z"}"#;
    let run = Feed::from_json(json).unwrap();
    let other: &AnyRun = match &run {
        Feed::A(_) | Feed::B(_) => panic!("decoded as a listed task"),
        Feed::Other(run) => run,
    };
    assert_eq!(other.payload.as_ref().unwrap().get(), "[1,2]");
    assert_eq!(run.task_identifier(), "c");
    assert_eq!(Feed::TASK_IDENTIFIERS, ["a", "b"]);
}
