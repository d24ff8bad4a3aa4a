//! Protocol codecs for the network side of rollover. Decoders read bytes from
//! the network: they check every length before using it and return an error,
//! never panic, on anything malformed. No rating rule lives here.

pub mod diameter;
pub mod mcc;
pub mod radius;
