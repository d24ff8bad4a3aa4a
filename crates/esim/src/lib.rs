//! The rules of selling an eSIM, as values: no I/O, no clock, no network.
//!
//! - `ids.rs`: ICCIDs (ITU-T E.118, Luhn) and EIDs (SGP.29, ISO 7064
//!   MOD 97-10), parsed or refused with the reason.
//! - `state.rs`: a profile's states and the only transitions GSMA SGP.22
//!   allows, each refusal with its ES2+ subject and reason codes.
//! - `code.rs`: activation codes (`1$<SM-DP+ address>$<matching id>`), the
//!   `LPA:` text a QR code holds, and the one-tap install links.
//! - `qr.rs`: QR codes of activation codes as SVG and PNG.
//! - `inventory.rs`: profile inventory files (`iccid[,profile_type][,imsi][,msisdn]`),
//!   every bad line named with its reason.
//!
//! The ES2+ client, the callback listener and the orders built on these are
//! the service's and the gateway's business.

pub mod code;
pub mod ids;
pub mod inventory;
pub mod qr;
pub mod state;

pub use code::ActivationCode;
pub use ids::{Eid, Iccid, IdError};
pub use state::{EsError, ProfileState, Step};
