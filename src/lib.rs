//! prescale — a reverse-proxy sidecar that puts VM capacity in place before API traffic
//! needs it.
//!
//! # Map
//!
//! | module | owns | threads |
//! |---|---|---|
//! | [`config`] | `proxy.toml`: raw serde structs → validated [`config::Settings`], every error reported with key path and line | — |
//! | [`proxy`] | the data plane: listener + TLS, routing, forwarding, upstream pools, balancing, health checks, per-endpoint counters | tokio multi-thread runtime |
//! | [`admin`] | `/live`, `/ready`, `/metrics` on a separate listener; reads only | its own OS thread + current-thread runtime |
//! | [`app`] | composition root: binds, starts, reloads (SIGHUP), stops in order (SIGTERM/SIGINT) | — |
//! | [`demo`] | `prescale demo`: in-process backends + the proxy, the Quick start's default | runs on the proxy runtime |
//!
//! # Data flow
//!
//! ```text
//! client ──► proxy::listener ──► proxy::forward ──► router ──► pool.pick ──► upstream member
//!                                      │ response body ends / client leaves
//!                                      ▼
//!                              proxy::body::CallDone ──► per-endpoint counters, access log
//!                                                          ▲ read by admin (/metrics)
//! ```
//!
//! Shared read-mostly state (route table, pool members) has one writer and lock-free readers
//! (`ArcSwap`); the request path never takes a lock.
//!
//! Dependency order: `config` ← `proxy` ← `admin` ← `app`. `proxy` never imports `admin`.

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod historian;
pub mod proxy;
