//! The commented starter spec that `kubeha init` writes: the seed's topology.

pub const STARTER_SPEC: &str = include_str!("starter.yaml");
