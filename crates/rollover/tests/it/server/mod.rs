//! A real `rollover serve` on port 0 with a fresh store, talked to over HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// Two small monthly plans the session tests share: one blocks when used,
/// one throttles to 64 kbps.
pub const SMALL_PLANS: &str = include_str!("../fixtures/shared-small-plans.toml");

/// Which store a test's server runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test (a `fn(Backend)`) once on SQLite and once on the
/// local PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::server::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::server::Backend::Postgres) } )*
        }
    };
}

/// A fresh, empty store: a new SQLite file, or a new PostgreSQL schema.
/// Dropping it removes the data.
pub struct TestStore {
    pub url: String,
    dir: Option<PathBuf>,
    schema: Option<String>,
}

fn postgres_base() -> String {
    std::env::var("ROLLOVER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("api_{}_{n}", std::process::id());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("rollover-{name}"));
                let _ = std::fs::remove_dir_all(&dir);
                TestStore { url: format!("sqlite://{}", dir.join("rollover.db").display()), dir: Some(dir), schema: None }
            }
            Backend::Postgres => {
                let mut client = postgres::Client::connect(&postgres_base(), postgres::NoTls)
                    .expect("the local PostgreSQL is running (127.0.0.1:5432, database test)");
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).unwrap();
                TestStore { url: format!("{}?schema={name}", postgres_base()), dir: None, schema: Some(name) }
            }
        }
    }
}

impl TestStore {
    /// The PostgreSQL schema, for a store there.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Runs SQL on the store behind the server's back (to damage it).
    pub fn sql(&self, statements: &str) {
        match (&self.dir, &self.schema) {
            (Some(dir), _) => {
                let connection = rusqlite::Connection::open(dir.join("rollover.db")).expect("the store's file");
                connection.execute_batch(&format!("PRAGMA busy_timeout = 5000; {statements}")).unwrap_or_else(|e| panic!("{statements}: {e}"));
            }
            (None, Some(schema)) => {
                let mut client = postgres::Client::connect(&postgres_base(), postgres::NoTls).expect("PostgreSQL");
                client.batch_execute(&format!("SET search_path TO {schema}; {statements}")).unwrap_or_else(|e| panic!("{statements}: {e}"));
            }
            _ => unreachable!("a store is a file or a schema"),
        }
    }

    /// The one integer `query` answers.
    pub fn count(&self, query: &str) -> i64 {
        match (&self.dir, &self.schema) {
            (Some(dir), _) => {
                let connection = rusqlite::Connection::open(dir.join("rollover.db")).expect("the store's file");
                connection.busy_timeout(std::time::Duration::from_secs(5)).expect("a busy timeout");
                connection.query_row(query, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{query}: {e}"))
            }
            (None, Some(schema)) => {
                let mut client = postgres::Client::connect(&postgres_base(), postgres::NoTls).expect("PostgreSQL");
                client.batch_execute(&format!("SET search_path TO {schema}")).expect("the schema");
                client.query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get(0)
            }
            _ => unreachable!("a store is a file or a schema"),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(schema) = &self.schema
            && let Ok(mut client) = postgres::Client::connect(&postgres_base(), postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

pub struct Server {
    pub base: String,
    /// The RADIUS accounting address, when the listener is on.
    pub radius: Option<std::net::SocketAddr>,
    /// The Diameter address, when the listener is on.
    pub diameter: Option<std::net::SocketAddr>,
    /// The ES2+ callback listener's address, when it is on.
    pub esim: Option<std::net::SocketAddr>,
    child: Child,
    agent: ureq::Agent,
    owned: Option<TestStore>,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Server {
    /// A server on a fresh store, the simulated clock starting on 2025-12-01, no demo data.
    pub fn start(backend: Backend) -> Server {
        let store = TestStore::new(backend);
        let mut server = Server::start_on(&store, &[]);
        server.owned = Some(store);
        server
    }

    pub fn start_on(store: &TestStore, extra_env: &[(&str, &str)]) -> Server {
        Server::start_with(store, None, extra_env)
    }

    /// A server on a fresh store with a config file and extra variables.
    pub fn start_configured(backend: Backend, config: &str, extra_env: &[(&str, &str)]) -> Server {
        let store = TestStore::new(backend);
        let path = std::env::temp_dir().join(format!("rollover-config-{}-{}.toml", std::process::id(), store.url.len() + config.len()));
        std::fs::write(&path, config).expect("config file");
        let mut server = Server::start_with(&store, Some(&path), extra_env);
        server.owned = Some(store);
        server
    }

    /// A server on an existing store with a config file: for restarts.
    pub fn start_on_configured(store: &TestStore, config: &str, extra_env: &[(&str, &str)]) -> Server {
        let path = std::env::temp_dir().join(format!("rollover-config-{}-{}.toml", std::process::id(), store.url.len() + config.len()));
        std::fs::write(&path, config).expect("config file");
        Server::start_with(store, Some(&path), extra_env)
    }

    /// [`Server::start_on_configured`] with standard error (the text log)
    /// written to `log`.
    pub fn start_logging(store: &TestStore, config: &str, extra_env: &[(&str, &str)], log: &std::path::Path) -> Server {
        let path = std::env::temp_dir().join(format!("rollover-config-{}-{}-log.toml", std::process::id(), store.url.len() + config.len()));
        std::fs::write(&path, config).expect("config file");
        Server::spawn(store, Some(&path), extra_env, Some(log))
    }

    fn start_with(store: &TestStore, config: Option<&std::path::Path>, extra_env: &[(&str, &str)]) -> Server {
        Server::spawn(store, config, extra_env, None)
    }

    fn spawn(store: &TestStore, config: Option<&std::path::Path>, extra_env: &[(&str, &str)], log: Option<&std::path::Path>) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollover"));
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command
            .env("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0")
            .env("ROLLOVER_STORE_URL", &store.url)
            .env("ROLLOVER_CLOCK", "simulated")
            .env("ROLLOVER_CLOCK_START", "2025-12-01T00:00:00Z")
            .env("ROLLOVER_DEMO", "false")
            .env("ROLLOVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::inherit(),
            });
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("rollover serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the server prints its address");
        let address = line
            .split_whitespace()
            .find_map(|word| word.trim_end_matches(',').strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let listener = |scheme: &str| line.split([' ', ',']).find_map(|word| word.strip_prefix(scheme)).map(|a| a.parse().expect("a socket address"));
        let (radius, diameter, esim) = (listener("udp://"), listener("tcp://"), listener("https://"));
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { base: format!("http://{address}"), radius, diameter, esim, child, agent, owned: None }
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = response.body_mut().read_to_string().expect("a readable body");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, content_type, body }
    }

    /// Any request, with an optional `Authorization: Bearer` credential.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>, bearer: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.base);
        let auth = bearer.map(|b| format!("Bearer {b}"));
        macro_rules! with_auth {
            ($request:expr) => {{
                let request = $request;
                match &auth {
                    Some(value) => request.header("authorization", value),
                    None => request,
                }
            }};
        }
        let response = match method {
            "GET" => with_auth!(self.agent.get(&url)).call(),
            "POST" => with_auth!(self.agent.post(&url)).header("content-type", "application/json").send(body.map(Value::to_string).unwrap_or_default()),
            "DELETE" => with_auth!(self.agent.delete(&url)).force_send_body().header("content-type", "application/json").send(body.map(Value::to_string).unwrap_or_default()),
            other => panic!("method {other}"),
        };
        Server::reply(response)
    }

    pub fn get(&self, path: &str) -> Reply {
        Server::reply(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// A GET whose body is bytes (an image): status, content type, body.
    pub fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let mut response = self.agent.get(format!("{}{path}", self.base)).call().expect("the server answers");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = response.body_mut().read_to_vec().expect("a readable body");
        (response.status().as_u16(), content_type, body)
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

    /// Waits up to `seconds` for the server to stop by itself (a failpoint
    /// that aborts it); whether it did.
    pub fn wait_exit(mut self, seconds: u64) -> bool {
        for _ in 0..seconds * 10 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc::SIGSTOP`, `SIGCONT`, ...) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the child's own pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Stops the server as an operator does (SIGTERM) and waits up to
    /// `seconds` for it to finish; whether it did.
    pub fn stop_gracefully(mut self, seconds: u64) -> bool {
        self.signal(libc::SIGTERM);
        for _ in 0..seconds * 10 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// Stops the server the hard way, as a crash would; hands back its store
    /// if it owned one.
    pub fn kill(mut self) -> Option<TestStore> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.owned.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
