//! The mistakes users make most with `#[squall::service]` fail to compile, with
//! an error at their own code that says what to write. Each `ui/*.rs` holds one
//! mistake; its `.stderr` is the message a user sees (regenerate with
//! `TRYBUILD=overwrite cargo test -p squall-macros --test compile_fail` after a
//! deliberate change, and read the diff).

#[test]
fn common_mistakes_are_compile_errors_with_readable_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
