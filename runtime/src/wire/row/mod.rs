//! A run as a row of Trigger.dev's run feed: the columns its realtime routes send, each value
//! as Postgres prints it, and the schema that tells a client how to read them; written by the
//! server ([`value`]) and read by the client ([`read`]).
//!
//! The official SDK reads these rows through Electric's client (`electric-shape-protocol.md`,
//! `trigger-sdk-v4-wire.md` §6.2): timestamps without a zone (it appends `Z`), booleans as
//! `t`/`f`, arrays as Postgres array literals, payload, output and metadata as JSON text with
//! their packet types, statuses by their database names.

#[cfg(feature = "client")]
pub(crate) use self::read::{RowError, read};
#[cfg(feature = "server")]
pub(crate) use self::write::{SCHEMA, key, task_run_error, value};

#[cfg(feature = "client")]
mod read;
#[cfg(feature = "server")]
mod write;
