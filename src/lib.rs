//! prescale — a reverse-proxy sidecar that puts VM capacity in place before API traffic
//! needs it.
//!
//! # Map
//!
//! | module | owns | threads |
//! |---|---|---|
//! | [`config`] | `proxy.toml`: raw serde structs → validated [`config::Settings`], every error reported with key path and line | — |
//! | [`proxy`] | the data plane: listener + TLS, request-target checks (dot-segments, Host), routing, forwarding, WebSocket tunnels (held under the connection cap), upstream pools, balancing, health checks, per-endpoint counters | `listen.workers` threads, each a current-thread runtime with its own SO_REUSEPORT socket and upstream pool |
//! | [`historian`] | every call recorded: `CallRecord` hand-over (`try_send`), tiered per-endpoint series, recent-calls ring, disk log, import | one ingest thread (`prescale-historian`) |
//! | [`admin`] | `/live`, `/ready`, `/metrics`, the `/admin` page (server-rendered, strict CSP), `/admin/api/*` (paged, bounded), and `POST /admin/action` (mode, manual scale, refit: token or a per-page-load form secret) on a separate listener; guards: connection cap, timeouts, Host allow-list, same-origin POSTs, failed-login limit | its own thread + current-thread runtime; pages and APIs rendered on its blocking workers (two at a time) |
//! | [`app`] | composition root: binds, starts, reloads (SIGHUP), stops in order (SIGTERM/SIGINT) | control runtime (signals, health checks) |
//! | [`forecast`] | models as pure code (Holt–Winters, double-seasonal, ARIMA, Prophet-style, naive), season detection, automatic choice, the rolling-origin backtest, the per-endpoint engine (shared with the simulator), the forecast thread with demand conversion and class split | `prescale-forecast`: reads historian snapshots, publishes forecasts (`ArcSwap`) |
//! | [`allocator`] | planning as a pure function (forecast, pool state, policy, now → decisions with reasons); the live manager: adopts VMs, health-gated join, drain-then-stop, dry_run/enabled, learned lead time, decision log | `prescale-allocator` (libvirt calls block) |
//! | [`hypervisor`] | the `Hypervisor` trait; libvirt implementation (`virt` crate: placement across hosts, back-off, panic guard, clone with overlay/port/metadata, domain stats through the raw records); usage decoding ([`hypervisor::stats`]); an in-memory fake for executor tests | runs on the allocator's thread |
//! | [`feedback`] | forecast scoring (rolling MASE, sMAPE, under-rate, coverage, band stretch per horizon group), cost models (RLS with forgetting: cores per request, memory per request in flight), request classes, margin calibration, dry-run promotion; run by the forecast thread and the allocator | — |
//! | [`simulate`] | `prescale simulate`: a trace replayed on a virtual clock through the historian series, the forecast engine, the planner and the margin calibration, against a simulated hypervisor; policies (HPA-style reactive, static, predictive, predictive+reactive, oracle), SLO and SPEC elasticity metrics, SVG chart | — (the caller's) |
//! | [`clock`] | real and virtual time | — |
//! | [`fuzzing`] | what the fuzz targets (`fuzz/`, cargo-fuzz) and the corpus replay test check, per input: config parser, importers, segment decoder, admin query parameters, the request-target checks (path normaliser, Host validator) | — |
//! | [`demo`] | `prescale demo`: seeded history, an accelerated clock, libvirt test-driver VMs backed by in-process servers, a load generator — the Quick start's default | the demo's runtime |
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
//!                                       ▲                          │ pool forecasts
//!                                       │ ArcSwap<AllocatorState>  ▼
//!                                       └──────────────── allocator thread ──► hypervisor (libvirt)
//!                                                                  │ add/drain/remove members
//!                                                                  ▼
//!                                                            proxy pools
//! ```
//!
//! Shared read-mostly state (route table, pool members, historian snapshots) has one writer and
//! lock-free readers (`ArcSwap`); the request path never takes a lock and never waits for the
//! historian.
//!
//! Dependency order: `config`, `clock` ← `historian` ← `forecast` ← `proxy` ← `hypervisor` ←
//! `allocator` ← `admin` ← `app`. `proxy` never imports `forecast`, `allocator` or `admin`;
//! `historian` never imports `proxy`; only `hypervisor` talks to libvirt.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod feedback;
pub mod forecast;
pub mod fuzzing;
pub mod historian;
pub mod hypervisor;
pub mod proxy;
pub mod simulate;
pub mod trace;
