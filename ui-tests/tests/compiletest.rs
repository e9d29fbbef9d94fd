//! Compile-pass and compile-fail cases of `#[task]` and `realtime_union!`.
//!
//! Re-bless the `.stderr` files with `TRYBUILD=overwrite cargo test -p runcast-ui-tests` and
//! review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
