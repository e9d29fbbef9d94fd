//! Trigger.dev's wire and storage forms of runcast's values, shared by the backends that
//! speak or store them: the Postgres store, the HTTP server and the remote client.

#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod packet;
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod row;
#[cfg(feature = "server")]
pub(crate) mod scope;
pub(crate) mod status;
