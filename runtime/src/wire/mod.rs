//! Trigger.dev's wire and storage forms of runcast's values, shared by the backends that
//! speak or store them: the Postgres store now, the HTTP server and the remote client later.

pub(crate) mod status;
