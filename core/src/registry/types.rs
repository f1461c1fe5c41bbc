//! The registry's vocabulary: what is registered ([`Instance`]), the lease that
//! keeps it alive ([`LeaseId`]), what discovery returns ([`Snapshot`]) and what the
//! registry reports for tracing ([`RegistryEvent`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One reachable server of a service, as registered by that server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instance {
    /// The logical service name clients discover by (`"arith"`).
    pub service: String,
    /// Where to connect (`"10.0.0.7:7000"`, or a turmoil host name and port); the
    /// key of the instance within its service, so it must be unique there.
    pub addr: String,
    /// Relative capacity for weighted balancers; `0` means "registered but take no
    /// new traffic" (draining).
    pub weight: u32,
    /// Free-form labels (zone, version, shard) for routing decisions that the
    /// registry itself never interprets. A `BTreeMap` so its order is stable.
    pub metadata: BTreeMap<String, String>,
}

impl Instance {
    /// An instance of `service` at `addr` with weight 1 and no metadata.
    pub fn new(service: impl Into<String>, addr: impl Into<String>) -> Instance {
        Instance {
            service: service.into(),
            addr: addr.into(),
            weight: 1,
            metadata: BTreeMap::new(),
        }
    }

    /// The same instance with another weight.
    pub fn with_weight(mut self, weight: u32) -> Instance {
        self.weight = weight;
        self
    }

    /// The same instance with one more metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Instance {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A lease granted by [`Registry::register`](super::Registry::register): the
/// registration lives while the lease is kept alive and vanishes when it expires.
///
/// Like etcd's lease ids, a `LeaseId` is only meaningful to the registry that
/// granted it; after a registry restart an old id is unknown (`NotFound`) and the
/// holder must register again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease-{:x}", self.0)
    }
}

/// The complete instance list of one service at one revision.
///
/// Discovery is level-triggered: every answer is a whole snapshot, never a delta,
/// so a client that misses intermediate changes still converges on the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The service's revision: it increases with every change to the service's
    /// instance list (register, deregister, expiry) and never decreases within one
    /// registry's lifetime. Values come from one registry-wide counter, like
    /// etcd's `mod_revision`.
    pub revision: u64,
    /// The live instances, sorted by `addr` so equal lists compare equal and
    /// traces are stable.
    pub instances: Vec<Instance>,
}

impl Snapshot {
    /// Whether the service has no live instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The addresses of the live instances, in order.
    pub fn addrs(&self) -> Vec<&str> {
        self.instances
            .iter()
            .map(|instance| instance.addr.as_str())
            .collect()
    }
}

/// A change inside a registry, reported to its observer so the simulation can
/// trace who registered, renewed, expired or left, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// An instance was registered (or replaced an earlier registration of the
    /// same `service`/`addr`, whose lease was revoked).
    Registered {
        /// The instance's service.
        service: String,
        /// The instance's address.
        addr: String,
        /// The lease now keeping it alive.
        lease: LeaseId,
        /// The service's revision after the change.
        revision: u64,
    },
    /// A lease was kept alive; the instance list did not change.
    Renewed {
        /// The instance's service.
        service: String,
        /// The instance's address.
        addr: String,
        /// The renewed lease.
        lease: LeaseId,
    },
    /// A lease ran out without a keep-alive and its instance was removed: the
    /// registry's failure detector fired.
    Expired {
        /// The instance's service.
        service: String,
        /// The instance's address.
        addr: String,
        /// The lease that ran out.
        lease: LeaseId,
        /// The service's revision after the change.
        revision: u64,
    },
    /// The holder revoked its lease (graceful shutdown) and its instance was removed.
    Deregistered {
        /// The instance's service.
        service: String,
        /// The instance's address.
        addr: String,
        /// The revoked lease.
        lease: LeaseId,
        /// The service's revision after the change.
        revision: u64,
    },
}
