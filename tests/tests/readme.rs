//! The README's example, verbatim except for the port: if the README's code
//! stops compiling or working, this fails.

use squall::{
    Channel, ChannelConfig, Client, Context, Listener, Router, Server, Status, Tcp, Transport,
};

#[tokio::test]
async fn the_readme_example_multiplies_now_and_later() -> Result<(), Box<dyn std::error::Error>> {
    // Proves the README's server/client snippet compiles and returns what it claims.
    let router = Router::new().route(
        "Arith.Multiply",
        |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<_, Status>(a * b) },
    );
    let listener = Tcp.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(Server::new(router).serve(listener, std::future::pending()));

    let client = Client::new(Channel::connect(&Tcp, &addr, ChannelConfig::default()).await?);
    let product: i64 = client.call("Arith.Multiply", &(7, 8)).await?;
    assert_eq!(product, 56);
    let later = client.go::<_, i64>("Arith.Multiply", &(6, 9));
    assert_eq!(later.await?, 54);
    Ok(())
}
