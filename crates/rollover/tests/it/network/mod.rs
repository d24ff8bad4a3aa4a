//! The real network peers the gateway tests drive: FreeRADIUS `radclient`,
//! FreeRADIUS as a NAS taking CoA and Disconnect, `python-diameter` and
//! `freeDiameterd`. `.ci/run` installs them; a missing one fails the test.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// A private scratch folder, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("rollover-{what}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // KEEP_SCRATCH=1 keeps the folders (the nodes' logs) to read after a failure.
        if std::env::var_os("KEEP_SCRATCH").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free local port (UDP and TCP), found by binding port 0.
pub fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    let port = socket.local_addr().unwrap().port();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
    if tcp.is_ok() { port } else { free_port() }
}

pub struct Radclient {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Sends the packets of `packets` (radclient's `Attribute = value` lines,
/// a blank line between packets) one after another, waiting up to 3 s for
/// each answer.
pub fn radclient(server: SocketAddr, kind: &str, secret: &str, packets: &str) -> Radclient {
    radclient_waiting(server, kind, secret, packets, 3)
}

/// `radclient` waiting `seconds` for each answer (for packets that get none).
pub fn radclient_waiting(server: SocketAddr, kind: &str, secret: &str, packets: &str, seconds: u32) -> Radclient {
    let scratch = Scratch::new("radclient");
    let file = scratch.0.join("packets.txt");
    std::fs::write(&file, packets).unwrap();
    let output = Command::new("radclient")
        .args(["-x", "-t", &seconds.to_string(), "-r", "1", "-f"])
        .arg(&file)
        .arg(server.to_string())
        .arg(kind)
        .arg(secret)
        .output()
        .expect("radclient runs (Debian package freeradius-utils; .ci/run installs it)");
    Radclient { success: output.status.success(), stdout: String::from_utf8_lossy(&output.stdout).into(), stderr: String::from_utf8_lossy(&output.stderr).into() }
}

/// FreeRADIUS standing in for a NAS: it answers CoA and Disconnect requests
/// on 127.0.0.1 and logs each one to `received.log`.
pub struct CoaNas {
    pub address: SocketAddr,
    child: Child,
    scratch: Scratch,
}

impl CoaNas {
    pub fn start(secret: &str) -> CoaNas {
        let scratch = Scratch::new("coa-nas");
        let port = free_port();
        let child = Command::new("sh")
            .arg(peers_dir().join("coa_nas.sh"))
            .arg(&scratch.0)
            .arg(port.to_string())
            .arg(secret)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("coa_nas.sh starts FreeRADIUS (Debian package freeradius)");
        let mut nas = CoaNas { address: SocketAddr::from(([127, 0, 0, 1], port)), child, scratch };
        let log = nas.scratch.0.join("freeradius.log");
        let started = Instant::now();
        loop {
            if std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Ready to process requests")) {
                break;
            }
            if let Ok(Some(status)) = nas.child.try_wait() {
                panic!("FreeRADIUS stopped ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(started.elapsed() < Duration::from_secs(20), "FreeRADIUS did not get ready: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        nas
    }

    /// The requests received so far, one line each: packet, reply, source,
    /// time, authenticator, attributes (tab-separated).
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.scratch.0.join("received.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Waits until `count` requests have arrived.
    pub fn wait_for(&self, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "the NAS received {} of {count} requests: {received:#?}", received.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CoaNas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python virtual environment with python-diameter: made by `.ci/run`
/// at `target/peers-venv`; made here when missing (in a folder of its own,
/// then renamed into place, so that tests running at once do not collide).
pub fn python() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let venv = target.join("peers-venv");
    let python = venv.join("bin/python3");
    if !python.exists() {
        let building = target.join(format!("peers-venv-{}", std::process::id()));
        let status = Command::new("python3").arg("-m").arg("venv").arg(&building).status().expect("python3 runs");
        assert!(status.success(), "cannot make {}", building.display());
        let status = Command::new(building.join("bin/python3"))
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(peers_dir().join("requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(status.success(), "cannot install the Python peers");
        if std::fs::rename(&building, &venv).is_err() {
            // Another test got there first.
            let _ = std::fs::remove_dir_all(&building);
        }
    }
    python
}

/// Writes `text` to a file in `scratch` and returns its path.
pub fn write(scratch: &Scratch, name: &str, text: &str) -> PathBuf {
    let path = scratch.0.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    path
}
