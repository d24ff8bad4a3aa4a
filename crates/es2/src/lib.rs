//! GSMA SGP.22 ES2+: the HTTPS calls between an operator (rollover) and an
//! SM-DP+, both ways authenticated by TLS client certificates.
//!
//! - `tls.rs`: TLS settings from PEM files: a client that trusts only the
//!   configured CA and shows its own certificate, and a server that
//!   requires a client certificate signed by the configured CA.
//! - `client.rs`: one ES2+ call: `POST <smdp>/gsma/rsp2/es2plus/<function>`
//!   with its `header`, the answer's `functionExecutionStatus` read into a
//!   result, a timeout on every step.
//! - `double.rs`: an SM-DP+ for tests and demos (no installable one
//!   exists): its own inventory, the SGP.22 state rules and error codes, and
//!   switches to make it fail.

pub mod client;
pub mod double;
pub mod tls;

pub use client::{Call, Es2Client, Es2Error};
