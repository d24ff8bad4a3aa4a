//! A real `rollover serve` on port 0 with a fresh store, talked to over HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub struct Server {
    pub base: String,
    pub store: PathBuf,
    child: Child,
    agent: ureq::Agent,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

pub fn fresh_store() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rollover-api-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("rollover.db")
}

impl Server {
    /// A server with the simulated clock starting in 2000, no demo data.
    pub fn start() -> Server {
        Server::start_on(&fresh_store(), &[])
    }

    pub fn start_on(store: &Path, extra_env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollover"));
        command
            .arg("serve")
            .env("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0")
            .env("ROLLOVER_STORE_URL", format!("sqlite://{}", store.display()))
            .env("ROLLOVER_CLOCK", "simulated")
            .env("ROLLOVER_CLOCK_START", "2000-01-01T00:00:00Z")
            .env("ROLLOVER_DEMO", "false")
            .env("ROLLOVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("rollover serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the server prints its address");
        let address = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { base: format!("http://{address}"), store: store.to_path_buf(), child, agent }
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = response.body_mut().read_to_string().expect("a readable body");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, content_type, body }
    }

    pub fn get(&self, path: &str) -> Reply {
        Server::reply(self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        Server::reply(self.agent.post(format!("{}{path}", self.base)).header("content-type", "application/json").send(body.to_string()))
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        Server::reply(self.agent.post(format!("{}{path}", self.base)).header("content-type", content_type).send(body))
    }

    pub fn delete_json(&self, path: &str, body: &Value) -> Reply {
        Server::reply(
            self.agent
                .delete(format!("{}{path}", self.base))
                .force_send_body()
                .header("content-type", "application/json")
                .send(body.to_string()),
        )
    }

    pub fn set_clock(&self, now: &str) {
        let reply = self.post("/v1/clock", &serde_json::json!({ "now": now }));
        assert_eq!(reply.status, 200, "moving the clock to {now}: {}", reply.body);
    }

    /// Stops the server the hard way, as a crash would.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.store.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
