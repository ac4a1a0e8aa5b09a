//! kubeha: turns plain Linux machines into a highly-available Kubernetes cluster.
//!
//! Functional core (`spec`, `render`) apart from the imperative shell (`cli`).

pub mod cli;
pub mod render;
pub mod spec;
