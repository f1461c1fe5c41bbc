//! Shared by the registry integration tests (`tests/registry.rs`, `tests/etcd.rs`).

pub mod contract;
