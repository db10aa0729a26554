//! prescale — a reverse-proxy sidecar that puts VM capacity in place before API traffic
//! needs it.
//!
//! # Map
//!
//! | module | owns | threads |
//! |---|---|---|
//! | [`config`] | `proxy.toml`: raw serde structs → validated [`config::Settings`], every error reported with key path and line | — |
//! | [`proxy`] | the data plane: listener + TLS, routing, forwarding, upstream pools, balancing, health checks, per-endpoint counters | `listen.workers` threads, each a current-thread runtime with its own SO_REUSEPORT socket and upstream pool |
//! | [`historian`] | every call recorded: `CallRecord` hand-over (`try_send`), tiered per-endpoint series, recent-calls ring, disk log, import | one ingest thread (`prescale-historian`) |
//! | [`admin`] | `/live`, `/ready`, `/metrics`, `/admin/api/*` on a separate listener; reads only | its own thread + current-thread runtime |
//! | [`app`] | composition root: binds, starts, reloads (SIGHUP), stops in order (SIGTERM/SIGINT) | control runtime (signals, health checks) |
//! | [`forecast`] | models as pure code (Holt–Winters, double-seasonal, ARIMA, Prophet-style, naive), season detection, automatic choice, the rolling-origin backtest, the forecast thread with demand conversion | `prescale-forecast`: reads historian snapshots, publishes forecasts (`ArcSwap`) |
//! | [`clock`] | real and virtual time | — |
//! | [`demo`] | `prescale demo`: in-process backends + the proxy, the Quick start's default | control runtime |
//!
//! # Data flow
//!
//! ```text
//! client ──► proxy::listener (worker) ──► proxy::forward ──► router ──► pool.pick ──► member
//!                                              │ response body ends / client leaves
//!                                              ▼
//!                                  proxy::body::CallDone ──► counters (/metrics), access log
//!                                              │ try_send(CallRecord), dropped + counted if full
//!                                              ▼
//!                                  historian thread: store (tiers, ring) ──► disk log
//!                                              │ ArcSwap<Snapshot>
//!                                              ▼
//!                                  admin (/admin/api/*) ◄── forecast thread (ArcSwap<Forecasts>)
//! ```
//!
//! Shared read-mostly state (route table, pool members, historian snapshots) has one writer and
//! lock-free readers (`ArcSwap`); the request path never takes a lock and never waits for the
//! historian.
//!
//! Dependency order: `config`, `clock` ← `historian` ← `proxy` ← `admin` ← `app`. `proxy` never
//! imports `admin`; `historian` never imports `proxy`.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod forecast;
pub mod historian;
pub mod hypervisor;
pub mod proxy;
