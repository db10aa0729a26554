//! prescale — a reverse-proxy sidecar that puts VM capacity in place before API traffic
//! needs it.
//!
//! # Map
//!
//! | module | owns | threads |
//! |---|---|---|
//! | [`clock`] | real and virtual time | — |
//! | [`trace`] | a regular series of counts per step (`timestamp,value` CSV in, checked): what the backtest, the simulator and recorded history exchange | — |
//! | [`historian`] | every call recorded: `CallRecord` hand-over (`try_send`), tiered per-endpoint series, recent-calls ring, disk log, import | one ingest thread (`prescale-historian`) |
//! | [`feedback`] | forecast scoring (rolling MASE, sMAPE, under-rate, coverage, band stretch per horizon group), cost models (RLS with forgetting: cores per request, memory per request in flight), request classes, conformal calibration of the bands (per endpoint and horizon group), margin calibration, dry-run promotion — pure code the forecast thread and the controller run | — |
//! | [`forecast`] | models as pure code (Holt–Winters, double-seasonal, ARIMA, Prophet-style, naive), season detection, automatic choice, the rolling-origin backtest, the per-endpoint engine (shared with the simulator); `settings`, `published` (what the thread publishes), `view` (the read side), `demand` (rates → cores, memory, I/O), `exclusions` (periods the models skip: configured, added by operators, saved in the data_dir), `thread` | `prescale-forecast`: reads historian snapshots, publishes forecasts (`ArcSwap`) |
//! | [`hypervisor`] | the `Hypervisor` trait; libvirt implementation (`virt` crate: placement across hosts, reconnect within 2 s, panic guard, clone with overlay/port/metadata and per-domain paths, domain stats through the raw records); usage decoding; an in-memory hypervisor on virtual time (a fake, for the simulator and the controller's tests) | runs on the allocator's thread |
//! | [`proxy`] | the data plane: its settings, listener + TLS, the request path as one tower stack per worker (`stack/`, a layer a file: request id → limits (target checks: dot-segments, Host) → route → record → rewrite (headers, body limit, WebSocket tunnels held under the connection cap) → retry → upstream), each worker's own upstream connections, HTTP/1.1 or h2c (`upstream`), upstream pools (each member tagged with its owner: config or allocator), balancing, health checks, per-worker counters summed when read, W3C trace context (`traceparent`), the access log (text or JSON, `access`), OTLP span export (`otlp`: its own thread) | `listen.workers` threads, each a current-thread runtime + `LocalSet` with its own SO_REUSEPORT socket, route-table copy, stack and upstream pool (`worker`) |
//! | [`allocator`] | planning as a pure function (`plan`) with known events (`schedule`); the per-pool `controller`, a tick of named phases (reconcile, join, usage, calibrate, plan, execute with back-off, log) on the injected clock behind three traits (membership, prober, signals); `live`: the thread that runs it on the proxy's pools, health prober and the historian/forecast views | `prescale-allocator` (libvirt calls block) |
//! | [`fleet`] | `[cluster]`: several instances on the same pools through etcd — its settings, the instance id, one leader per scaled pool (a key under the instance's lease; the allocator's `Coordinator`), the fence every action passes (a transaction comparing the leader key's lease), closed minutes published and peers' read back into the historian (`PeerSink`: the fleet series), the leader's decisions and drains shared, degraded while etcd is away | `prescale-fleet`: the etcd client on its own small runtime |
//! | [`simulate`] | `prescale simulate`: a trace replayed on a virtual clock through the historian series, the forecast engine and the allocator's own controller against the in-memory hypervisor; policies (HPA-style reactive, static, predictive, predictive+reactive, oracle), the proxy's hold (held, failed, wait), SLO and SPEC elasticity metrics, SVG chart | — (the caller's) |
//! | [`admin`] | its settings, `/live`, `/ready`, `/metrics`, the `/admin` page (server-rendered through `maud` templates, which escape every value; strict CSP), `/admin/api/*` (paged, bounded), and `POST /admin/action` (mode, manual scale, refit: token or a per-page-load form secret) on a separate listener; guards: connection cap, timeouts, Host allow-list, same-origin POSTs, failed-login limit | its own thread + current-thread runtime; pages and APIs rendered on its blocking workers (two at a time) |
//! | [`config`] | the assembly layer: `proxy.toml` → raw serde structs → every module's validated settings (each type lives in the module it configures), every error reported with key path and line | — |
//! | [`app`] | composition root: binds, starts, reloads (SIGHUP; `[pool.scaling]` applied live), stops in order (SIGTERM/SIGINT) | control runtime (signals, health checks) |
//! | [`fuzzing`] | what the fuzz targets (`fuzz/`, cargo-fuzz) and the corpus replay test check, per input: config parser, importers, segment decoder, admin query parameters, the request-target checks (path normaliser, Host validator) | — |
//! | [`demo`] | `prescale demo` by concern: its accelerated clock, seeded history, libvirt test-driver VMs backed by in-process servers, the load generator, the terminal status — the Quick start's default | the demo's runtime |
//! | [`cli`] | the `prescale` command line: one file per subcommand (`main.rs` only calls it) | — |
//!
//! # Data flow
//!
//! ```text
//! client ──► proxy::listener (worker) ──► proxy::stack (tower) ──► pool.pick ──► worker's upstream conn
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
//! With `[cluster]`, the fleet thread sits beside them: closed minutes from the historian go to
//! etcd and peers' minutes come back into the historian's series; the allocator asks it, per
//! pool, whether this instance leads (plan and act, each action fenced), follows (show the
//! leader's decisions, apply its drains) or is paused (etcd away).
//!
//! Shared read-mostly state (route table, pool members, historian snapshots) has one writer and
//! lock-free readers (`ArcSwap`); the request path never takes a lock and never waits for the
//! historian.
//!
//! Dependency order, bottom first — a module's code names only modules before it (checked by
//! `tests/layout.rs`): `clock`, `trace` ← `historian` ← `feedback` ← `forecast` ←
//! `hypervisor` ← `proxy` ← `allocator` ← `fleet` ← `simulate` ← `admin` ← `config` ← `app` ← `fuzzing`,
//! `demo` ← `cli`. The data plane (`proxy`) never names the control plane; `config` is the
//! assembly layer that builds every module's settings; only `hypervisor` talks to libvirt and
//! only `fleet` to etcd.

#![warn(unreachable_pub)]

pub mod admin;
pub mod allocator;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod feedback;
pub mod fleet;
pub mod forecast;
pub mod fuzzing;
pub mod historian;
pub mod hypervisor;
pub mod proxy;
pub mod simulate;
pub mod trace;
