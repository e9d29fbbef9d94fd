//! Runnable programs that show runcast; see the `[[example]]` entries of `Cargo.toml`.
