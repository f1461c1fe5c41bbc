//! The README's "Over real TCP" example, run. The block between the markers
//! below is the README's code with two changes for a test (a free port, and
//! the line that learns it, marked `// test only`); a second test checks the
//! two still match, so the README cannot drift from code that compiles and
//! works.

#[tokio::test]
async fn the_readme_example_multiplies_now_and_later() -> Result<(), Box<dyn std::error::Error>> {
    // Proves the README's server/client snippet compiles and returns what it claims.
    // README:begin
    use squall::{Context, Server, Status, Tcp};

    // The contract, shared by server and client: `Arith.Multiply`.
    #[squall::service]
    trait Arith {
        #[idempotent]
        async fn multiply(&self, ctx: Context, a: i64, b: i64) -> Result<i64, Status>;
    }

    // Server: implement the trait, serve it.
    struct Calculator;
    impl Arith for Calculator {
        async fn multiply(&self, _ctx: Context, a: i64, b: i64) -> Result<i64, Status> {
            Ok(a * b)
        }
    }
    let listener = Tcp.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string(); // test only
    tokio::spawn(Server::new(ArithServer::new(Calculator)).serve(listener, std::future::pending()));

    // Client: typed methods over one multiplexed connection; MessagePack by default.
    let client = ArithClient::connect(&addr).await?;
    assert_eq!(client.multiply(7, 8).await?, 56);
    let later = client.multiply(6, 9); // sent now, awaited later
    assert_eq!(later.await?, 54);
    // README:end
    Ok(())
}

/// The lines between `start` and `end` (exclusive), trimmed, blank lines kept.
fn block<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|line| !line.trim().starts_with(start))
        .skip(1)
        .take_while(|line| !line.trim().starts_with(end))
        .map(str::trim)
        .collect()
}

#[test]
fn the_readme_example_is_the_code_the_test_above_runs() {
    // Proves the README's block and this file's block are the same code, up
    // to indentation and the test's free port.
    let readme = include_str!("../../README.md");
    let after_heading = readme
        .split("## Over real TCP")
        .nth(1)
        .expect("README has an \"Over real TCP\" section");
    let readme_block = block(after_heading, "```rust", "```");
    let this_file = include_str!("readme.rs");
    let test_block: Vec<String> = block(this_file, "// README:begin", "// README:end")
        .into_iter()
        .filter(|line| !line.ends_with("// test only"))
        .map(|line| {
            line.replace("\"127.0.0.1:0\"", "\"127.0.0.1:7000\"")
                .replace("(&addr)", "(\"127.0.0.1:7000\")")
        })
        .collect();
    assert!(
        !readme_block.is_empty(),
        "no ```rust block under the heading"
    );
    assert_eq!(
        readme_block, test_block,
        "README's \"Over real TCP\" example and tests/tests/readme.rs differ: update both"
    );
    let imports = readme_block
        .iter()
        .filter(|line| line.starts_with("use "))
        .flat_map(|line| line.split(','))
        .count();
    assert!(
        imports <= 5,
        "the README example needs {imports} imports (at most 5)"
    );
}
