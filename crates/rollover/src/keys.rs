//! `rollover key new`: a fresh API key and its hash for the config file.

use std::io::Read;
use std::process::ExitCode;

use rollover_http::auth::{Scope, hex, sha256};

pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub fn new_key(id: &str, scope: &str) -> ExitCode {
    if Scope::parse(scope).is_none() {
        eprintln!("rollover key new: --scope {scope:?}: use read or read-write");
        return ExitCode::from(2);
    }
    let key = match random_bytes(24) {
        Ok(bytes) => format!("rk_{}", hex(&bytes)),
        Err(e) => {
            eprintln!("rollover key new: cannot read /dev/urandom: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("key: {key}");
    println!("(shown once; give it to the client, keep only the hash below)\n");
    println!("[[security.api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nscope = \"{scope}\"\nrequests_per_second = 1000", hex(&sha256(&key)));
    ExitCode::SUCCESS
}
