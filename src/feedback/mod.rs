//! The feedback loop: what really happened, compared with what was predicted, fed back.
//!
//! - [`score`]: every published forecast point is kept until its minute closes, then scored
//!   (MASE, sMAPE, under-forecast rate, 80/95 % coverage per horizon group, rolling hour/day/
//!   week and since the start) and how far the 80 % band had to stretch to keep its promise —
//!   served at `/admin/api/accuracy`, exported as Prometheus gauges.
//! - [`cost`]: cores used against cost-weighted requests/s and memory per VM against requests
//!   in flight, by recursive least squares with forgetting, starting from the configured priors;
//!   VM usage comes from libvirt domain stats ([`crate::hypervisor::stats`]).
//! - [`classes`]: request classes found from the parameter that explains latency (or named in
//!   the configuration); the forecast is split by class and the cost model weighs the mix.
//! - [`conformal`]: the bands replaced by quantiles of the recent out-of-sample errors, per
//!   horizon group, with adaptive conformal steps: 80 % means 80 %; the planner reads any
//!   quantile from it.
//! - [`margin`]: the headroom follows the band's measured stretch, within bounds.
//!
//! The allocator's controller runs the loop: it reads usage every
//! `stats_interval`, uses the learned cost once it has enough samples, calibrates the margin
//! hourly, and with `auto_enable` promotes a dry-run pool whose forecasts have proven accurate.

pub(crate) mod classes;
pub mod conformal;
pub mod cost;
pub(crate) mod margin;
pub(crate) mod promote;
pub mod score;
