//! Compile-pass and compile-fail tests of runcast's macros; see `tests/`.
