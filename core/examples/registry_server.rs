//! A squall registry service on a port: servers register through it, clients
//! discover through it (see `discovery_demo`).
//!
//! Run: `cargo run -p squall --example registry_server -- 127.0.0.1:7100`
//!
//! With `SQUALL_REGISTRY_TOKEN=<secret>` in the environment, every call must
//! carry that token (`RemoteRegistry::with_token`; `discovery_demo` sends it
//! when the same variable is set).

use squall::registry::service::{authenticated_router, router};
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
    let router = match std::env::var("SQUALL_REGISTRY_TOKEN") {
        Ok(token) if !token.is_empty() => {
            tracing::info!("registry service requires a token (SQUALL_REGISTRY_TOKEN)");
            authenticated_router(registry, [token])
        }
        _ => {
            tracing::warn!(
                "registry service is open: set SQUALL_REGISTRY_TOKEN to require a token"
            );
            router(registry)
        }
    };
    Server::new(router)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
