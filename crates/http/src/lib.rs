//! The REST API under `/v1`: JSON in and out, errors as RFC 9457 problem
//! details naming the offending field. This crate converts between the wire
//! and the service's types; it holds no rating rule.

pub mod auth;
pub mod console;
mod docs;
mod guard;
mod json;
mod problem;
mod routes;
pub mod server;
pub mod wire;

pub use docs::OPENAPI;
pub use problem::Problem;
pub use routes::{Limits, Site, router};
