//! The integration tests, in one binary (one link instead of thirteen): the
//! real `rollover` binary, driven over its CLI, HTTP, RADIUS and Diameter,
//! against real peers, on SQLite and PostgreSQL.

mod common;
mod network;
#[macro_use]
mod server;

mod advise;
mod api;
mod bad_input;
mod browser;
mod cluster;
mod crash;
mod diameter;
mod es2;
mod esim;
mod explain;
mod history;
mod hostile;
mod import;
mod orders;
mod radius;
mod schemathesis;
mod security;
mod sessions;
mod simulate;
mod webhooks;
