//! A squall registry service on a port: servers register through it, clients
//! discover through it (see `discovery_demo`).
//!
//! Run: `cargo run -p squall --example registry_server -- 127.0.0.1:7100`

use squall::registry::service::router;
use squall::{MemoryRegistry, RegistryEvent, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7100".into());
    // Log every registration, renewal, expiry and departure.
    let registry = MemoryRegistry::builder()
        .observer(std::sync::Arc::new(|event: &RegistryEvent| match event {
            RegistryEvent::Renewed { .. } => tracing::debug!(?event, "registry"),
            _ => tracing::info!(?event, "registry"),
        }))
        .build();
    let listener = squall::Tcp.bind(&addr).await?;
    tracing::info!(%addr, "registry service listening; Ctrl-C to stop");
    Server::new(router(registry))
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
