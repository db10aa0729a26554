//! The resource allocation manager: turns each pool's demand forecast into VM actions early
//! enough that capacity is ready when traffic arrives. [`plan`] is the pure planning function.

pub mod plan;
