//! File formats of rehearse: the topology of a cluster, the golden images its
//! nodes boot from, and the scenarios (steps and checks) run on it.
//!
//! Everything a user writes is parsed and fully validated here, before any node
//! starts, and every refusal says where (file:line:column and field path), what is
//! wrong and how to fix it. The engine then works only with the explicit,
//! validated [`Topology`], [`ImageSpec`] and [`scenario::Scenario`].

pub mod confidence;
pub mod image;
pub mod scenario;
pub mod task;
pub mod topology;

mod error;
mod names;
mod source;

pub use error::{ErrorKind, Location, SpecError};
pub use image::{builtin_image, ImageSpec, BUILTIN_IMAGES};
pub use topology::limits;
pub use topology::{
    Egress, NetworkSpec, NodeBackend, NodeLimits, NodeSpec, Topology, DEFAULT_IMAGE,
    DEFAULT_NETWORK, MAX_NETWORKS, MAX_NODES,
};
