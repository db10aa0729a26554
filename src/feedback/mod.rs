//! The feedback loop: scores forecasts against what happened ([`score`]) and learns what a
//! request costs ([`cost`]). Built so far: scoring, served at `/admin/api/accuracy`, and the
//! online cost estimator; VM usage collection, margin calibration and model promotion are not.

pub mod cost;
pub mod score;

pub mod margin;
