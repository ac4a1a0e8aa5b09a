//! kubeha: turns plain Linux machines into a highly-available Kubernetes cluster.
//!
//! Functional core: `spec` (the cluster as written), `render` (every file's bytes),
//! `facts` (parsing what a host is), `plan` (spec + facts → steps), `pki`.
//! Imperative shell: `remote` (SSH), `api` (Kubernetes), `probe` (API availability),
//! `apply` (runs a plan), `dr` and `node` (day-two operations), `cli`.

pub mod api;
pub mod apply;
pub mod cli;
pub mod dr;
pub mod facts;
pub mod node;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod quote;
pub mod remote;
pub mod render;
pub mod spec;
pub mod verify;
pub mod wait;
