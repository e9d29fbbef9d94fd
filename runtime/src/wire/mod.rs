//! Trigger.dev's wire and storage forms of runcast's values, shared by the backends that
//! speak or store them: the Postgres store, the HTTP server and the remote client.

#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod packet;
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod row;
#[cfg(feature = "server")]
pub(crate) mod scope;
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) mod shape;
pub(crate) mod status;

/// The issuer and audience Trigger.dev writes into its public access tokens.
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) const TOKEN_ISSUER: &str = "https://id.trigger.dev";
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) const TOKEN_AUDIENCE: &str = "https://api.trigger.dev";
