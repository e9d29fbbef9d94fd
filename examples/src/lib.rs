//! Runnable programs that show runcast; see the `[[example]]` entries of `Cargo.toml`.
//!
//! The dashboard's server lives here, so that its test (`tests/dashboard.rs`) starts it as
//! the example does.

pub mod dashboard;
