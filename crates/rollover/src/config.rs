//! `rollover serve` configuration: a TOML file, then environment variables
//! `ROLLOVER_<SECTION>_<KEY>` over it, then flags over both. They are read
//! into [`Config`], the raw shape (strings and numbers as written), and
//! converted once by [`Config::settings`] into [`Settings`]: socket
//! addresses, a clock mode, durations, hashed keys, the listeners' own
//! configurations. Everything after start-up takes `Settings` as given.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub store: StoreSection,
    pub service: ServiceSection,
    pub clock: ClockSection,
    pub demo: Demo,
    pub security: SecuritySection,
    pub notifications: NotificationsSection,
    pub webhooks: Vec<WebhookSection>,
    pub limits: LimitsSection,
    pub radius: RadiusSection,
    pub diameter: DiameterSection,
    pub esim: EsimSection,
    pub retention: RetentionSection,
    pub cluster: ClusterSection,
}

/// Cluster mode (docs/cluster.md): several nodes on one PostgreSQL store,
/// each serving the shards it leases. Off unless `node_id` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// This node's name, unique in the cluster: 1 to 64 of a-z, A-Z, 0-9,
    /// '-', '_' and '.'.
    pub node_id: Option<String>,
    /// NATS servers, comma-separated (`nats://127.0.0.1:4222,...`): how
    /// requests reach the node that owns their subscription.
    pub nats_url: Option<String>,
    /// How long a shard's lease lasts without renewal (500 to 60,000 ms).
    pub lease_ttl_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> ClusterSection {
        ClusterSection { node_id: None, nats_url: None, lease_ttl_ms: 3000 }
    }
}

/// How long raw events are kept (docs/history.md, "Retention"). Off unless
/// `months` is set; then `export_dir` is needed: every event dropped is
/// written there first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Calendar months (UTC) an event is kept at least; 0 (the default) keeps everything.
    pub months: u32,
    /// Directory the JSON-lines files of dropped events are written to.
    pub export_dir: Option<String>,
}

/// Selling the eSIM: the SM-DP+ rollover orders profiles from (ES2+ over
/// HTTPS with a client certificate), and the listener it reports back to.
/// Orders are off unless `smdp_url` is set; then the other files are needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsimSection {
    /// `https://HOST[:PORT]` of the SM-DP+.
    pub smdp_url: Option<String>,
    /// Our `functionRequesterIdentifier`.
    pub requester_id: Option<String>,
    /// PEM: our client certificate chain and its key.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// PEM: the only CA trusted for the SM-DP+'s server certificate.
    pub ca_cert: Option<String>,
    /// How long one ES2+ call may take (connect, TLS, answer).
    pub timeout_seconds: u64,
    /// The first wait before an unanswered call is sent again; it doubles
    /// per try, up to `retry_max_seconds`.
    pub retry_base_ms: u64,
    pub retry_max_seconds: u64,
    pub callback: EsimCallbackSection,
}

impl Default for EsimSection {
    fn default() -> EsimSection {
        EsimSection {
            smdp_url: None,
            requester_id: None,
            client_cert: None,
            client_key: None,
            ca_cert: None,
            timeout_seconds: 10,
            retry_base_ms: 1000,
            retry_max_seconds: 300,
            callback: EsimCallbackSection::default(),
        }
    }
}

/// The HTTPS listener the SM-DP+ sends `handleDownloadProgressInfo` to.
/// Off unless `listen` is set; then `cert`, `key` and `client_ca` are needed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsimCallbackSection {
    /// TCP address, e.g. `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// PEM: our certificate chain, and its key.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// PEM: the CA the SM-DP+'s client certificates must chain to.
    pub client_ca: Option<String>,
}

/// The RADIUS accounting listener and CoA/Disconnect enforcement. Off
/// unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusSection {
    /// UDP address, e.g. `0.0.0.0:1813`.
    pub listen: Option<String>,
    /// NASes allowed to send accounting: `{ address = "10.0.0.0/24", secret = "..." }`.
    pub clients: Vec<RadiusClientSection>,
    /// Set from `ROLLOVER_RADIUS_SECRET`: the secret of clients on loopback.
    #[serde(skip)]
    pub loopback_secret: Option<String>,
    /// Attributes that name the subscription, tried in order:
    /// "3gpp-imsi", "calling-station-id", "user-name".
    pub identify: Vec<String>,
    /// NASes that take CoA and Disconnect requests.
    pub nas: Vec<NasSection>,
    /// How long to wait for a CoA or Disconnect answer.
    pub coa_timeout_ms: u64,
    /// Sends of one CoA or Disconnect before giving up.
    pub coa_attempts: u32,
}

impl Default for RadiusSection {
    fn default() -> RadiusSection {
        RadiusSection {
            listen: None,
            clients: Vec::new(),
            loopback_secret: None,
            identify: vec!["3gpp-imsi".into(), "calling-station-id".into(), "user-name".into()],
            nas: Vec::new(),
            coa_timeout_ms: 2_000,
            coa_attempts: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClientSection {
    /// An address or network (`10.0.0.0/24`).
    pub address: String,
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NasSection {
    /// The NAS as its accounting names it (NAS-IP-Address, or its source address).
    pub address: String,
    /// Where it listens for CoA and Disconnect; the NAS address, port 3799, when absent.
    pub coa_address: Option<String>,
    pub secret: String,
    /// Throttle and restore attributes: "mikrotik", "cisco" or "filter-id"; or give them below.
    pub vendor: Option<String>,
    #[serde(default)]
    pub throttle: Vec<AttributeSection>,
    #[serde(default)]
    pub restore: Vec<AttributeSection>,
}

/// One attribute of a CoA template; `{kbps}` in the value becomes the rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSection {
    /// Vendor-Id of a Vendor-Specific attribute (e.g. 14988 for Mikrotik).
    pub vendor: Option<u32>,
    /// Attribute type (the vendor's type for a vendor attribute).
    pub attribute: u8,
    pub value: String,
}

/// The Diameter Gy listener. Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiameterSection {
    /// TCP address, e.g. `0.0.0.0:3868`.
    pub listen: Option<String>,
    pub origin_host: String,
    pub origin_realm: String,
    /// Seconds of silence on a connection before rollover sends a
    /// Device-Watchdog-Request (RFC 3539's Tw).
    pub watchdog_seconds: u64,
    /// Volume-Quota-Threshold as a percentage of each grant (0 sends none).
    pub quota_threshold_percent: u8,
}

impl Default for DiameterSection {
    fn default() -> DiameterSection {
        DiameterSection { listen: None, origin_host: "ocs.rollover.local".into(), origin_realm: "rollover.local".into(), watchdog_seconds: 30, quota_threshold_percent: 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Most usage records in one request (at most 10,000).
    pub max_records_per_request: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        LimitsSection { max_records_per_request: 10_000, max_body_bytes: 4 << 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSection {
    /// Warn this many days before carried data or a pass expires.
    pub notice_days: u32,
    /// First retry delay of a failed delivery; doubles each time, up to an hour.
    pub retry_base_ms: u64,
    /// The longest wait between two attempts.
    pub max_backoff_ms: u64,
    pub max_attempts: u32,
}

impl Default for NotificationsSection {
    fn default() -> NotificationsSection {
        NotificationsSection { notice_days: 3, retry_base_ms: 1_000, max_backoff_ms: 3_600_000, max_attempts: 15 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub id: String,
    /// `http://HOST:PORT/PATH` (put a TLS proxy in front for https).
    pub url: String,
    /// Signs every delivery (HMAC-SHA256).
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// Signs customer tokens. When absent a random one is made at start, and
    /// tokens do not survive a restart.
    pub token_secret: Option<String>,
    pub api_keys: Vec<ApiKeySection>,
    /// The rate limit of the key from `ROLLOVER_API_KEY`.
    pub env_key_requests_per_second: u32,
    /// Requests a second for the customer tokens of one subscription.
    pub token_requests_per_second: u32,
    /// Set from `ROLLOVER_API_KEY` (never from the file: keys are stored hashed).
    #[serde(skip)]
    pub env_key: Option<String>,
}

impl Default for SecuritySection {
    fn default() -> SecuritySection {
        SecuritySection { token_secret: None, api_keys: Vec::new(), env_key_requests_per_second: 2_000, token_requests_per_second: 20, env_key: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    pub id: String,
    /// SHA-256 of the key, in hex (`rollover key new` prints it).
    pub sha256: String,
    /// "read" or "read-write".
    pub scope: String,
    #[serde(default = "default_rate")]
    pub requests_per_second: u32,
}

fn default_rate() -> u32 {
    1_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    pub listen: String,
    /// Most HTTP connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Longest wait for a request's head (line and headers) to arrive; also
    /// how long a kept-alive connection may wait idle for its next request.
    pub header_timeout_seconds: u64,
    /// Longest one request may take, its body included; then 408 or 503.
    pub request_timeout_seconds: u64,
    /// `scheme://host[:port]` customers reach the service at, for the page
    /// links in tokens; `http://` and the bound address when absent.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `sqlite://PATH` (created on first start).
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection {
    pub workers: usize,
    pub max_age_seconds: i64,
    pub future_skew_seconds: i64,
    /// Purchases and lifecycle events may be stamped at most this far back.
    pub max_backdate_seconds: i64,
    /// A checkpoint is written once this many events came after the last
    /// (0: never).
    pub checkpoint_every_events: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockSection {
    /// "wall" (the default) or "simulated".
    pub mode: String,
    /// Where a simulated clock starts on a new store (RFC 3339); the wall
    /// time when absent.
    pub start: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Demo {
    /// Load the demo catalog and demo subscriptions into a new store.
    pub enabled: bool,
}

impl Default for Server {
    fn default() -> Server {
        Server { listen: "127.0.0.1:8080".into(), max_connections: 4096, header_timeout_seconds: 10, request_timeout_seconds: 30, public_url: None }
    }
}

impl Default for StoreSection {
    fn default() -> StoreSection {
        StoreSection { url: "sqlite://rollover-data/rollover.db".into() }
    }
}

impl Default for ServiceSection {
    fn default() -> ServiceSection {
        ServiceSection { workers: 2, max_age_seconds: 7 * 86_400, future_skew_seconds: 300, max_backdate_seconds: 400 * 86_400, checkpoint_every_events: 1_000_000 }
    }
}

impl Default for ClockSection {
    fn default() -> ClockSection {
        ClockSection { mode: "wall".into(), start: None }
    }
}

impl Default for Demo {
    fn default() -> Demo {
        Demo { enabled: true }
    }
}

/// A webhook address: `http://HOST[:PORT][/PATH]`, printable ASCII only (a
/// CR or LF would split the request line), with a host and a numeric port.
fn check_webhook_url(url: &str) -> Result<(), &'static str> {
    if url.starts_with("https://") {
        return Err("https is not built in yet: send to an http:// address behind a TLS proxy");
    }
    let Some(rest) = url.strip_prefix("http://") else { return Err("use http://HOST:PORT/PATH") };
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only printable ASCII without spaces: percent-encode anything else");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("no user or password in the address: the secret signs every delivery");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err("the address has no host");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("the port must be a number from 0 to 65535");
    }
    Ok(())
}

/// The address customers open their pages at: http or https, a host, an
/// optional port, no path, no user.
fn check_public_url(url: &str) -> Result<(), &'static str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or("use http://HOST[:PORT] or https://HOST[:PORT]")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
        return Err("a host and an optional port only: letters, digits, '.', '-', ':' and [ ] for IPv6; no path, user or query");
    }
    Ok(())
}

/// The clock `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    Wall,
    /// Starts at `start` on a new store (now when absent); a store's own
    /// clock wins over it.
    Simulated { start: Option<rollover_core::Instant> },
}

impl ClockMode {
    pub fn name(self) -> &'static str {
        match self {
            ClockMode::Wall => "wall",
            ClockMode::Simulated { .. } => "simulated",
        }
    }
}

/// The settings `serve` runs with, checked and converted from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store_url: String,
    /// The store URL without a password, for logs.
    pub store_label: String,
    pub clock: ClockMode,
    pub demo: bool,
    /// The service's settings; `status_changes` is wired by `serve`.
    pub service: rollover_service::Config,
    pub api_keys: Vec<rollover_http::auth::ApiKey>,
    /// `None`: make a random one at start.
    pub token_secret: Option<Vec<u8>>,
    pub token_requests_per_second: u32,
    pub limits: rollover_http::Limits,
    pub server: rollover_http::server::ServerLimits,
    /// `server.public_url` without a trailing slash; `None`: the bound address.
    pub public_url: Option<String>,
    pub radius: Option<rollover_gateway::radius::Config>,
    pub coa: rollover_gateway::coa::Config,
    pub diameter: Option<rollover_gateway::diameter::Config>,
    pub esim_callback: Option<rollover_gateway::esim::Config>,
    pub esim_orders: Option<rollover_service::orders::OrderSettings>,
    /// Cluster mode: this node and where NATS is; `None` runs alone.
    pub cluster: Option<ClusterSettings>,
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub service: rollover_service::cluster::ClusterConfig,
    /// NATS server URLs, one or more.
    pub nats_urls: Vec<String>,
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{name}={value:?} is not valid"))
}

fn boolean(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{name}={value:?}: use true or false")),
    }
}

impl Config {
    /// Reads `file` (if given) and applies `ROLLOVER_*` variables from `env`.
    pub fn load(file: Option<&PathBuf>, env: impl Iterator<Item = (String, String)>) -> Result<Config, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
                toml::from_str::<Config>(&text).map_err(|e| {
                    let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(1);
                    format!("{}:{line}: {}", path.display(), e.message())
                })?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            match name.as_str() {
                "ROLLOVER_SERVER_LISTEN" => config.server.listen = value,
                "ROLLOVER_SERVER_MAX_CONNECTIONS" => config.server.max_connections = parse_env(&name, &value)?,
                "ROLLOVER_SERVER_HEADER_TIMEOUT_SECONDS" => config.server.header_timeout_seconds = parse_env(&name, &value)?,
                "ROLLOVER_SERVER_REQUEST_TIMEOUT_SECONDS" => config.server.request_timeout_seconds = parse_env(&name, &value)?,
                "ROLLOVER_SERVER_PUBLIC_URL" => config.server.public_url = Some(value),
                "ROLLOVER_STORE_URL" => config.store.url = value,
                "ROLLOVER_SERVICE_WORKERS" => config.service.workers = parse_env(&name, &value)?,
                "ROLLOVER_SERVICE_MAX_AGE_SECONDS" => config.service.max_age_seconds = parse_env(&name, &value)?,
                "ROLLOVER_SERVICE_FUTURE_SKEW_SECONDS" => config.service.future_skew_seconds = parse_env(&name, &value)?,
                "ROLLOVER_SERVICE_MAX_BACKDATE_SECONDS" => config.service.max_backdate_seconds = parse_env(&name, &value)?,
                "ROLLOVER_SERVICE_CHECKPOINT_EVERY_EVENTS" => config.service.checkpoint_every_events = parse_env(&name, &value)?,
                "ROLLOVER_RETENTION_MONTHS" => config.retention.months = parse_env(&name, &value)?,
                "ROLLOVER_RETENTION_EXPORT_DIR" => config.retention.export_dir = Some(value),
                "ROLLOVER_CLOCK" | "ROLLOVER_CLOCK_MODE" => config.clock.mode = value,
                "ROLLOVER_CLOCK_START" => config.clock.start = Some(value),
                "ROLLOVER_DEMO" | "ROLLOVER_DEMO_ENABLED" => config.demo.enabled = boolean(&name, &value)?,
                "ROLLOVER_API_KEY" => {
                    if value.len() < 16 {
                        return Err("ROLLOVER_API_KEY: use a key of at least 16 characters (rollover key new makes one)".into());
                    }
                    config.security.env_key = Some(value);
                }
                "ROLLOVER_SECURITY_TOKEN_SECRET" => config.security.token_secret = Some(value),
                "ROLLOVER_SECURITY_TOKEN_REQUESTS_PER_SECOND" => config.security.token_requests_per_second = parse_env(&name, &value)?,
                "ROLLOVER_WEBHOOK_URL" => match config.webhooks.iter_mut().find(|w| w.id == "env") {
                    Some(hook) => hook.url = value,
                    None => config.webhooks.push(WebhookSection { id: "env".into(), url: value, secret: String::new() }),
                },
                "ROLLOVER_WEBHOOK_SECRET" => match config.webhooks.iter_mut().find(|w| w.id == "env") {
                    Some(hook) => hook.secret = value,
                    None => config.webhooks.push(WebhookSection { id: "env".into(), url: String::new(), secret: value }),
                },
                "ROLLOVER_LIMITS_MAX_RECORDS_PER_REQUEST" => config.limits.max_records_per_request = parse_env(&name, &value)?,
                "ROLLOVER_LIMITS_MAX_BODY_BYTES" => config.limits.max_body_bytes = parse_env(&name, &value)?,
                "ROLLOVER_NOTIFICATIONS_NOTICE_DAYS" => config.notifications.notice_days = parse_env(&name, &value)?,
                "ROLLOVER_NOTIFICATIONS_RETRY_BASE_MS" => config.notifications.retry_base_ms = parse_env(&name, &value)?,
                "ROLLOVER_NOTIFICATIONS_MAX_ATTEMPTS" => config.notifications.max_attempts = parse_env(&name, &value)?,
                "ROLLOVER_NOTIFICATIONS_MAX_BACKOFF_MS" => config.notifications.max_backoff_ms = parse_env(&name, &value)?,
                "ROLLOVER_RADIUS_LISTEN" => config.radius.listen = Some(value),
                "ROLLOVER_RADIUS_SECRET" => config.radius.loopback_secret = Some(value),
                "ROLLOVER_DIAMETER_LISTEN" => config.diameter.listen = Some(value),
                "ROLLOVER_ESIM_SMDP_URL" => config.esim.smdp_url = Some(value),
                "ROLLOVER_ESIM_REQUESTER_ID" => config.esim.requester_id = Some(value),
                "ROLLOVER_ESIM_CLIENT_CERT" => config.esim.client_cert = Some(value),
                "ROLLOVER_ESIM_CLIENT_KEY" => config.esim.client_key = Some(value),
                "ROLLOVER_ESIM_CA_CERT" => config.esim.ca_cert = Some(value),
                "ROLLOVER_ESIM_TIMEOUT_SECONDS" => config.esim.timeout_seconds = parse_env(&name, &value)?,
                "ROLLOVER_ESIM_RETRY_BASE_MS" => config.esim.retry_base_ms = parse_env(&name, &value)?,
                "ROLLOVER_ESIM_RETRY_MAX_SECONDS" => config.esim.retry_max_seconds = parse_env(&name, &value)?,
                "ROLLOVER_ESIM_CALLBACK_LISTEN" => config.esim.callback.listen = Some(value),
                "ROLLOVER_ESIM_CALLBACK_CERT" => config.esim.callback.cert = Some(value),
                "ROLLOVER_ESIM_CALLBACK_KEY" => config.esim.callback.key = Some(value),
                "ROLLOVER_ESIM_CALLBACK_CLIENT_CA" => config.esim.callback.client_ca = Some(value),
                "ROLLOVER_CLUSTER_NODE_ID" => config.cluster.node_id = Some(value),
                "ROLLOVER_CLUSTER_NATS_URL" => config.cluster.nats_url = Some(value),
                "ROLLOVER_CLUSTER_LEASE_TTL_MS" => config.cluster.lease_ttl_ms = parse_env(&name, &value)?,
                "ROLLOVER_DIAMETER_ORIGIN_HOST" => config.diameter.origin_host = value,
                "ROLLOVER_DIAMETER_ORIGIN_REALM" => config.diameter.origin_realm = value,
                _ if name.starts_with("ROLLOVER_") && !matches!(name.as_str(), "ROLLOVER_SEED" | "ROLLOVER_LOG" | "ROLLOVER_FAILPOINT" | "ROLLOVER_BENCH_LOG") => {
                    return Err(format!("{name}: unknown setting"));
                }
                _ => {}
            }
        }
        config.check()?;
        Ok(config)
    }

    /// Checks everything once more (flags may have changed the shape since
    /// [`Config::load`]) and converts it into the settings `serve` runs with.
    pub fn settings(&self) -> Result<Settings, String> {
        self.check()?;
        let clock = match self.clock.mode.as_str() {
            "simulated" => ClockMode::Simulated {
                start: self.clock.start.as_deref().map(rollover_core::Instant::parse_rfc3339).transpose().map_err(|e| format!("clock.start: {e}"))?,
            },
            _ => ClockMode::Wall,
        };
        let seconds = |s: i64| s.saturating_mul(1_000_000);
        Ok(Settings {
            listen: self.listen()?,
            store_url: self.store.url.clone(),
            store_label: self.store_label(),
            clock,
            demo: self.demo.enabled,
            service: rollover_service::Config {
                workers: self.service.workers,
                max_age_micros: seconds(self.service.max_age_seconds),
                future_skew_micros: seconds(self.service.future_skew_seconds),
                max_backdate_micros: seconds(self.service.max_backdate_seconds),
                checkpoint_every_events: self.service.checkpoint_every_events,
                retention: self.retention()?,
                notify: self.notify(),
                ..rollover_service::Config::default()
            },
            api_keys: self.api_keys(),
            token_secret: self.security.token_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            token_requests_per_second: self.security.token_requests_per_second,
            limits: self.limits(),
            server: self.server_limits(),
            public_url: self.server.public_url.as_ref().map(|url| url.trim_end_matches('/').to_string()),
            radius: self.radius()?,
            coa: self.coa()?,
            diameter: self.diameter()?,
            esim_callback: self.esim_callback()?,
            esim_orders: self.esim_orders()?,
            cluster: self.cluster()?,
        })
    }

    /// The cluster settings, checked: a node id that a NATS subject and a
    /// log line can carry, the PostgreSQL store, the wall clock, NATS URLs.
    fn cluster(&self) -> Result<Option<ClusterSettings>, String> {
        let section = &self.cluster;
        let Some(node) = &section.node_id else {
            if section.nats_url.is_some() {
                return Err("cluster.nats_url is set without cluster.node_id: set both to run as a node of a cluster".into());
            }
            return Ok(None);
        };
        if node.is_empty() || node.len() > 64 || !node.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(format!("cluster.node_id = {node:?}: use 1 to 64 of a-z, A-Z, 0-9, '-', '_' and '.'"));
        }
        if !(self.store.url.starts_with("postgres://") || self.store.url.starts_with("postgresql://")) {
            return Err(format!("cluster.node_id is set, but store.url = {:?}: cluster mode needs the PostgreSQL store (postgres://...), which every node shares", self.store_label()));
        }
        if self.clock.mode == "simulated" {
            return Err("cluster mode runs on the wall clock: clock.mode = \"simulated\" cannot be used with cluster.node_id".into());
        }
        if !(500..=60_000).contains(&section.lease_ttl_ms) {
            return Err(format!("cluster.lease_ttl_ms = {}: use 500 to 60000", section.lease_ttl_ms));
        }
        let nats = section.nats_url.as_deref().ok_or("cluster.nats_url is required in cluster mode: the NATS servers requests are routed through")?;
        let nats_urls: Vec<String> = nats.split(',').map(|u| u.trim().to_string()).collect();
        if let Some(bad) = nats_urls.iter().find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")) || u.len() > 256) {
            let shown = bad.rsplit('@').next().unwrap_or(bad);
            return Err(format!("cluster.nats_url: {shown:?} is not a NATS URL (nats://HOST:PORT)"));
        }
        Ok(Some(ClusterSettings {
            service: rollover_service::cluster::ClusterConfig { node_id: node.clone(), lease_ttl: std::time::Duration::from_millis(section.lease_ttl_ms) },
            nats_urls,
        }))
    }

    fn check(&self) -> Result<(), String> {
        self.listen()?;
        self.check_store_url()?;
        if !matches!(self.clock.mode.as_str(), "wall" | "simulated") {
            return Err(format!("clock.mode = {:?}: use \"wall\" or \"simulated\"", self.clock.mode));
        }
        if let Some(start) = &self.clock.start {
            rollover_core::Instant::parse_rfc3339(start).map_err(|e| format!("clock.start: {e}"))?;
        }
        self.check_service()?;
        self.check_server()?;
        self.check_security()?;
        self.check_webhooks()?;
        self.coa()?;
        self.radius()?;
        self.diameter()?;
        self.esim_callback()?;
        self.esim_orders()?;
        self.cluster()?;
        Ok(())
    }

    fn check_service(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.service.workers) {
            return Err(format!("service.workers = {}: use 1 to 64", self.service.workers));
        }
        if self.service.max_age_seconds <= 0 || self.service.future_skew_seconds < 0 {
            return Err("service.max_age_seconds must be positive and future_skew_seconds not negative".into());
        }
        // Ten years: enough for any migration; beyond it one backdated
        // purchase on a daily plan would make a worker run thousands of days.
        if !(1..=3660 * 86_400).contains(&self.service.max_backdate_seconds) {
            return Err(format!("service.max_backdate_seconds = {}: use 1 to 316224000 (ten years)", self.service.max_backdate_seconds));
        }
        if self.service.checkpoint_every_events < 0 {
            return Err(format!("service.checkpoint_every_events = {}: use 0 (never) or more", self.service.checkpoint_every_events));
        }
        self.retention()?;
        Ok(())
    }

    /// Retention, checked: a number of months within reason, somewhere to
    /// export to, and checkpoints (it drops only what one holds).
    fn retention(&self) -> Result<Option<rollover_service::Retention>, String> {
        let r = &self.retention;
        if r.months == 0 {
            return Ok(None);
        }
        if r.months > 1200 {
            return Err(format!("retention.months = {}: use 1 to 1200, or 0 to keep everything", r.months));
        }
        let Some(dir) = r.export_dir.as_deref().filter(|d| !d.trim().is_empty()) else {
            return Err(format!("retention.months = {} needs retention.export_dir: every event dropped is written there first", r.months));
        };
        if self.service.checkpoint_every_events == 0 {
            return Err("retention.months needs checkpoints (service.checkpoint_every_events above 0): it drops only events a checkpoint holds".into());
        }
        Ok(Some(rollover_service::Retention { months: r.months, export_dir: std::path::PathBuf::from(dir) }))
    }

    /// The listener's limits and the request limits.
    fn check_server(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(format!("server.max_connections = {}: use 1 to 1000000", self.server.max_connections));
        }
        for (name, seconds) in [
            ("header_timeout_seconds", self.server.header_timeout_seconds),
            ("request_timeout_seconds", self.server.request_timeout_seconds),
        ] {
            if !(1..=3600).contains(&seconds) {
                return Err(format!("server.{name} = {seconds}: use 1 to 3600"));
            }
        }
        if let Some(url) = &self.server.public_url {
            check_public_url(url).map_err(|why| format!("server.public_url = {url:?}: {why}"))?;
        }
        if !(1..=10_000).contains(&self.limits.max_records_per_request) {
            return Err(format!("limits.max_records_per_request = {}: use 1 to 10000", self.limits.max_records_per_request));
        }
        if !(1024..=64 << 20).contains(&self.limits.max_body_bytes) {
            return Err(format!("limits.max_body_bytes = {}: use 1024 to 67108864", self.limits.max_body_bytes));
        }
        Ok(())
    }

    /// Keys, the token secret and their rates; an open API only on loopback.
    fn check_security(&self) -> Result<(), String> {
        if let Some(secret) = &self.security.token_secret
            && secret.len() < rollover_http::auth::MIN_TOKEN_SECRET_BYTES
        {
            return Err(format!(
                "security.token_secret (ROLLOVER_SECURITY_TOKEN_SECRET): use at least {} bytes; this one has {} (rollover key new makes a good one)",
                rollover_http::auth::MIN_TOKEN_SECRET_BYTES,
                secret.len()
            ));
        }
        if self.security.token_requests_per_second == 0 {
            return Err("security.token_requests_per_second: must be at least 1".into());
        }
        for (index, key) in self.security.api_keys.iter().enumerate() {
            if rollover_http::auth::Scope::parse(&key.scope).is_none() {
                return Err(format!("security.api_keys[{index}].scope = {:?}: use \"read\" or \"read-write\"", key.scope));
            }
            if rollover_http::auth::from_hex(&key.sha256).is_none_or(|h| h.len() != 32) {
                return Err(format!("security.api_keys[{index}].sha256: 64 hex digits, the SHA-256 of the key"));
            }
            if key.requests_per_second == 0 {
                return Err(format!("security.api_keys[{index}].requests_per_second: must be at least 1"));
            }
        }
        let has_keys = !self.security.api_keys.is_empty() || self.security.env_key.is_some();
        if !has_keys && !self.listen()?.ip().is_loopback() {
            return Err(format!(
                "server.listen = {:?} is not a loopback address and no API key is configured: set ROLLOVER_API_KEY or security.api_keys",
                self.server.listen
            ));
        }
        Ok(())
    }

    /// Webhook endpoints and their retry schedule.
    fn check_webhooks(&self) -> Result<(), String> {
        for (index, hook) in self.webhooks.iter().enumerate() {
            if let Err(why) = check_webhook_url(&hook.url) {
                return Err(format!("webhooks[{index}].url = {:?}: {why}", hook.url));
            }
            if hook.secret.len() < 16 {
                return Err(format!("webhooks[{index}].secret: use at least 16 characters (ROLLOVER_WEBHOOK_SECRET for the environment's hook)"));
            }
            if self.webhooks.iter().filter(|h| h.id == hook.id).count() > 1 {
                return Err(format!("webhooks[{index}].id = {:?} is used twice", hook.id));
            }
        }
        if self.notifications.max_attempts == 0 || self.notifications.retry_base_ms == 0 || self.notifications.max_backoff_ms == 0 {
            return Err("notifications.max_attempts, retry_base_ms and max_backoff_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The RADIUS listener's settings, when it is on.
    pub fn radius(&self) -> Result<Option<rollover_gateway::radius::Config>, String> {
        use rollover_gateway::Cidr;
        use rollover_gateway::radius::{Client, Config as RadiusConfig, Identify};
        let Some(listen) = &self.radius.listen else {
            if self.radius.loopback_secret.is_some() || !self.radius.clients.is_empty() || !self.radius.nas.is_empty() {
                return Err("RADIUS clients, a secret or NASes are set but radius.listen is not: set it (or ROLLOVER_RADIUS_LISTEN) to turn the listener on".into());
            }
            return Ok(None);
        };
        let listen = listen.parse().map_err(|_| format!("radius.listen = {listen:?}: use HOST:PORT, e.g. 0.0.0.0:1813"))?;
        let mut clients = Vec::new();
        for (index, client) in self.radius.clients.iter().enumerate() {
            let network = Cidr::parse(&client.address).map_err(|e| format!("radius.clients[{index}].address: {e}"))?;
            if client.secret.is_empty() {
                return Err(format!("radius.clients[{index}].secret: must not be empty"));
            }
            clients.push(Client { network, secret: client.secret.as_bytes().to_vec() });
        }
        if let Some(secret) = &self.radius.loopback_secret {
            if secret.is_empty() {
                return Err("ROLLOVER_RADIUS_SECRET: must not be empty".into());
            }
            for network in ["127.0.0.0/8", "::1"] {
                clients.push(Client { network: Cidr::parse(network).expect("a valid network"), secret: secret.as_bytes().to_vec() });
            }
        }
        if clients.is_empty() {
            return Err("radius.listen is set but no client may send: add radius.clients = [{ address, secret }] or set ROLLOVER_RADIUS_SECRET".into());
        }
        let identify = self
            .radius
            .identify
            .iter()
            .enumerate()
            .map(|(index, way)| Identify::parse(way).map_err(|e| format!("radius.identify[{index}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if identify.is_empty() {
            return Err("radius.identify: name at least one attribute".into());
        }
        Ok(Some(RadiusConfig { listen, clients, identify }))
    }

    /// The CoA/Disconnect settings: one entry per NAS.
    pub fn coa(&self) -> Result<rollover_gateway::coa::Config, String> {
        use rollover_gateway::coa::{AttributeTemplate, Config as CoaConfig, Nas, vendor_preset};
        let mut nas = Vec::new();
        for (index, section) in self.radius.nas.iter().enumerate() {
            let address: std::net::IpAddr = section.address.parse().map_err(|_| format!("radius.nas[{index}].address = {:?}: an IP address", section.address))?;
            let coa = match &section.coa_address {
                Some(text) => text.parse().map_err(|_| format!("radius.nas[{index}].coa_address = {text:?}: use HOST:PORT"))?,
                None => std::net::SocketAddr::new(address, 3799),
            };
            if section.secret.is_empty() {
                return Err(format!("radius.nas[{index}].secret: must not be empty"));
            }
            let (mut throttle, mut restore) = match &section.vendor {
                Some(vendor) => vendor_preset(vendor).ok_or_else(|| format!("radius.nas[{index}].vendor = {vendor:?}: use \"mikrotik\", \"cisco\" or \"filter-id\", or give throttle and restore attributes"))?,
                None => (Vec::new(), Vec::new()),
            };
            let template = |a: &AttributeSection| AttributeTemplate { vendor: a.vendor, attribute: a.attribute, value: a.value.clone() };
            if !section.throttle.is_empty() {
                throttle = section.throttle.iter().map(template).collect();
            }
            if !section.restore.is_empty() {
                restore = section.restore.iter().map(template).collect();
            }
            for (what, list) in [("throttle", &throttle), ("restore", &restore)] {
                if let Some(bad) = list.iter().position(|a| a.value.len() > 247) {
                    return Err(format!("radius.nas[{index}].{what}[{bad}].value: at most 247 octets"));
                }
            }
            nas.push(Nas { address, coa, secret: section.secret.as_bytes().to_vec(), throttle, restore });
        }
        if self.radius.coa_attempts == 0 || self.radius.coa_timeout_ms == 0 {
            return Err("radius.coa_attempts and radius.coa_timeout_ms must be at least 1".into());
        }
        Ok(CoaConfig { nas, timeout: std::time::Duration::from_millis(self.radius.coa_timeout_ms), attempts: self.radius.coa_attempts })
    }

    /// The Diameter listener's settings, when it is on.
    pub fn diameter(&self) -> Result<Option<rollover_gateway::diameter::Config>, String> {
        let Some(listen) = &self.diameter.listen else { return Ok(None) };
        let listen = listen.parse().map_err(|_| format!("diameter.listen = {listen:?}: use HOST:PORT, e.g. 0.0.0.0:3868"))?;
        let identity = |name: &str, value: &str| {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                Err(format!("diameter.{name} = {value:?}: a DiameterIdentity, e.g. ocs.example.net"))
            } else {
                Ok(value.to_string())
            }
        };
        if self.diameter.watchdog_seconds < 6 {
            return Err(format!("diameter.watchdog_seconds = {}: at least 6 (RFC 3539)", self.diameter.watchdog_seconds));
        }
        if self.diameter.quota_threshold_percent > 100 {
            return Err(format!("diameter.quota_threshold_percent = {}: 0 to 100", self.diameter.quota_threshold_percent));
        }
        Ok(Some(rollover_gateway::diameter::Config {
            listen,
            origin_host: identity("origin_host", &self.diameter.origin_host)?,
            origin_realm: identity("origin_realm", &self.diameter.origin_realm)?,
            watchdog: std::time::Duration::from_secs(self.diameter.watchdog_seconds),
            quota_threshold_percent: self.diameter.quota_threshold_percent,
        }))
    }

    /// The ES2+ callback listener's settings, when it is on: the files read
    /// now, so that a missing or unreadable one stops the start.
    pub fn esim_callback(&self) -> Result<Option<rollover_gateway::esim::Config>, String> {
        let callback = &self.esim.callback;
        let Some(listen) = &callback.listen else { return Ok(None) };
        let listen = listen.parse().map_err(|_| format!("esim.callback.listen = {listen:?}: use HOST:PORT, e.g. 0.0.0.0:8443"))?;
        let file = |value: &Option<String>, name: &str| value.clone().ok_or_else(|| format!("esim.callback.{name}: needed with esim.callback.listen (a PEM file)"));
        let (cert, key, client_ca) = (file(&callback.cert, "cert")?, file(&callback.key, "key")?, file(&callback.client_ca, "client_ca")?);
        let tls = rollover_es2::tls::server_config(std::path::Path::new(&cert), std::path::Path::new(&key), std::path::Path::new(&client_ca)).map_err(|e| format!("esim.callback: {e}"))?;
        Ok(Some(rollover_gateway::esim::Config { listen, tls }))
    }

    /// The ES2+ client's settings, when orders are on: the files read now.
    pub fn esim_orders(&self) -> Result<Option<rollover_service::orders::OrderSettings>, String> {
        let esim = &self.esim;
        let Some(url) = &esim.smdp_url else { return Ok(None) };
        let needed = |value: &Option<String>, name: &str| value.clone().filter(|v| !v.is_empty()).ok_or_else(|| format!("esim.{name}: needed with esim.smdp_url"));
        let requester = needed(&esim.requester_id, "requester_id")?;
        let (cert, key, ca) = (needed(&esim.client_cert, "client_cert")?, needed(&esim.client_key, "client_key")?, needed(&esim.ca_cert, "ca_cert")?);
        if !(1..=120).contains(&esim.timeout_seconds) {
            return Err(format!("esim.timeout_seconds = {}: use 1 to 120", esim.timeout_seconds));
        }
        if !(10..=600_000).contains(&esim.retry_base_ms) || !(1..=86_400).contains(&esim.retry_max_seconds) {
            return Err(format!("esim.retry_base_ms = {}, esim.retry_max_seconds = {}: use 10 to 600000 ms and 1 to 86400 s", esim.retry_base_ms, esim.retry_max_seconds));
        }
        let tls = rollover_es2::tls::client_config(std::path::Path::new(&ca), std::path::Path::new(&cert), std::path::Path::new(&key)).map_err(|e| format!("esim: {e}"))?;
        let client = rollover_es2::Es2Client::new(url, &requester, tls, std::time::Duration::from_secs(esim.timeout_seconds)).map_err(|e| format!("esim.smdp_url: {e}"))?;
        Ok(Some(rollover_service::orders::OrderSettings {
            client,
            retry_base: std::time::Duration::from_millis(esim.retry_base_ms),
            retry_max: std::time::Duration::from_secs(esim.retry_max_seconds),
        }))
    }

    pub fn listen(&self) -> Result<SocketAddr, String> {
        self.server.listen.parse().map_err(|_| format!("server.listen = {:?}: use HOST:PORT, e.g. 127.0.0.1:8080", self.server.listen))
    }

    pub fn check_store_url(&self) -> Result<(), String> {
        let url = &self.store.url;
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(()),
            _ if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(()),
            _ => Err(format!("store.url = {url:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE")),
        }
    }

    /// The configured keys, hashed; the environment's key with full access.
    pub fn api_keys(&self) -> Vec<rollover_http::auth::ApiKey> {
        use rollover_http::auth::{ApiKey, Scope, from_hex, sha256};
        let mut keys: Vec<ApiKey> = self
            .security
            .api_keys
            .iter()
            .map(|k| ApiKey {
                id: k.id.clone(),
                sha256: from_hex(&k.sha256).and_then(|h| h.try_into().ok()).expect("checked when loaded"),
                scope: Scope::parse(&k.scope).expect("checked when loaded"),
                requests_per_second: k.requests_per_second,
            })
            .collect();
        if let Some(key) = &self.security.env_key {
            keys.push(ApiKey { id: "ROLLOVER_API_KEY".into(), sha256: sha256(key), scope: Scope::ReadWrite, requests_per_second: self.security.env_key_requests_per_second });
        }
        keys
    }

    pub fn notify(&self) -> rollover_service::notify::NotifyConfig {
        use rollover_service::notify::{Endpoint, NotifyConfig};
        NotifyConfig {
            endpoints: self.webhooks.iter().map(|h| Endpoint { id: h.id.clone(), url: h.url.clone(), secret: h.secret.as_bytes().to_vec() }).collect(),
            notice_micros: self.notifications.notice_days as i64 * 86_400 * 1_000_000,
            retry_base_micros: self.notifications.retry_base_ms as i64 * 1_000,
            max_backoff_micros: self.notifications.max_backoff_ms as i64 * 1_000,
            max_attempts: self.notifications.max_attempts,
        }
    }

    pub fn limits(&self) -> rollover_http::Limits {
        rollover_http::Limits {
            max_records: self.limits.max_records_per_request,
            max_body_bytes: self.limits.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(self.server.request_timeout_seconds),
        }
    }

    pub fn server_limits(&self) -> rollover_http::server::ServerLimits {
        rollover_http::server::ServerLimits {
            max_connections: self.server.max_connections,
            header_timeout: std::time::Duration::from_secs(self.server.header_timeout_seconds),
            ..rollover_http::server::ServerLimits::default()
        }
    }

    /// The store URL for logs, without a password.
    pub fn store_label(&self) -> String {
        let url = &self.store.url;
        if let Some((scheme, rest)) = url.split_once("://")
            && let Some((credentials, host)) = rest.rsplit_once('@')
        {
            let user = credentials.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}@{host}");
        }
        url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = Config::load(
            None,
            env(&[("ROLLOVER_SERVER_LISTEN", "127.0.0.1:0"), ("ROLLOVER_STORE_URL", "sqlite:///tmp/x.db"), ("ROLLOVER_CLOCK", "simulated"), ("ROLLOVER_DEMO", "false")]),
        )
        .unwrap();
        assert_eq!(config.listen().unwrap().port(), 0);
        assert_eq!(config.store.url, "sqlite:///tmp/x.db");
        assert_eq!(config.clock.mode, "simulated");
        assert!(!config.demo.enabled);
    }

    #[test]
    fn a_config_file_error_names_the_file_and_line() {
        let path = std::env::temp_dir().join(format!("rollover-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurll = \"sqlite://x.db\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.starts_with(&format!("{}:5: ", path.display())), "{err}");
        assert!(err.contains("urll"), "{err}");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\n[[webhooks]]\nid = \"shop\"\nurl = \"https://shop.example/hook\"\nsecret = \"0123456789abcdef\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.contains("webhooks[0].url") && err.contains("https is not built in"), "{err}");
        for (url, why) in [
            ("http://shop.example/hook\r\nX-Injected: 1", "printable ASCII"),
            ("http://", "no host"),
            ("http://:8080/hook", "no host"),
            ("http://shop.example:http/hook", "port"),
            ("http://user:pw@shop.example/hook", "no user"),
        ] {
            let err = check_webhook_url(url).unwrap_err();
            assert!(err.contains(why), "{url:?}: {err}");
        }
        for url in ["http://127.0.0.1:9000/hook", "http://shop.example/hook?x=1", "http://[::1]:9000/"] {
            assert_eq!(check_webhook_url(url), Ok(()), "{url}");
        }
        let err = Config::load(None, env(&[("ROLLOVER_SECURITY_TOKEN_SECRET", "x")])).unwrap_err();
        assert!(err.contains("at least 32 bytes"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn settings_are_converted_once() {
        let config = Config::load(None, env(&[("ROLLOVER_CLOCK", "simulated"), ("ROLLOVER_CLOCK_START", "2026-01-01T00:00:00Z"), ("ROLLOVER_SERVICE_MAX_AGE_SECONDS", "60")])).unwrap();
        let settings = config.settings().unwrap();
        assert_eq!(settings.clock, ClockMode::Simulated { start: Some(rollover_core::Instant::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()) });
        assert_eq!(settings.service.max_age_micros, 60_000_000);
        assert_eq!(settings.listen.port(), 8080);
        let mut flagged = config.clone();
        flagged.clock.mode = "sideways".into();
        assert!(flagged.settings().unwrap_err().contains("clock.mode"), "a flag is checked like the file");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Config::load(None, env(&[("ROLLOVER_SERVER_LISTEN", "localhost")])).unwrap_err();
        assert!(err.contains("server.listen"), "{err}");
        let err = Config::load(None, env(&[("ROLLOVER_DEMO", "maybe")])).unwrap_err();
        assert!(err.contains("ROLLOVER_DEMO"), "{err}");
        let config = Config::load(None, env(&[("ROLLOVER_STORE_URL", "postgres://app:secret@db:5432/rollover")])).unwrap();
        assert_eq!(config.store_label(), "postgres://app@db:5432/rollover", "no password in logs");
        let err = Config::load(None, env(&[("ROLLOVER_STORE_URL", "mysql://x")])).unwrap_err();
        assert!(err.contains("store.url"), "{err}");
        let err = Config::load(None, env(&[("ROLLOVER_SERVER_LISTEN", "0.0.0.0:8080")])).unwrap_err();
        assert!(err.contains("no API key"), "{err}");
        let config = Config::load(None, env(&[("ROLLOVER_SERVER_LISTEN", "0.0.0.0:8080"), ("ROLLOVER_API_KEY", "0123456789abcdef0123")])).unwrap();
        assert_eq!(config.api_keys().len(), 1);
        let err = Config::load(None, env(&[("ROLLOVER_API_KEY", "short")])).unwrap_err();
        assert!(err.contains("16 characters"), "{err}");
        let err = Config::load(None, env(&[("ROLLOVER_SERVR_LISTEN", "x")])).unwrap_err();
        assert!(err.contains("unknown setting"), "{err}");
    }

    #[test]
    fn network_settings_are_checked_and_named() {
        let path = std::env::temp_dir().join(format!("rollover-config-net-{}.toml", std::process::id()));
        let load = |text: &str, vars: &[(&str, &str)]| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), env(vars))
        };
        let err = load("[radius]\nlisten = \"127.0.0.1:0\"\n", &[]).unwrap_err();
        assert!(err.contains("no client may send"), "{err}");
        let err = load("[radius]\nlisten = \"127.0.0.1:0\"\nclients = [{ address = \"10.0.0.0/40\", secret = \"x\" }]\n", &[]).unwrap_err();
        assert!(err.contains("radius.clients[0].address") && err.contains("0 to 32"), "{err}");
        let err = load("[radius]\nlisten = \"127.0.0.1:0\"\nidentify = [\"imei\"]\n", &[("ROLLOVER_RADIUS_SECRET", "s")]).unwrap_err();
        assert!(err.contains("radius.identify[0]"), "{err}");
        let err = load("", &[("ROLLOVER_RADIUS_SECRET", "s")]).unwrap_err();
        assert!(err.contains("radius.listen is not"), "a secret without a listener: {err}");
        let err = load("[[radius.nas]]\naddress = \"10.0.0.1\"\nsecret = \"s\"\nvendor = \"huawei\"\n", &[]).unwrap_err();
        assert!(err.contains("radius.nas[0].vendor"), "{err}");
        let err = load("[[radius.nas]]\naddress = \"10.0.0.1\"\nsecret = \"s\"\nscret = \"t\"\n", &[]).unwrap_err();
        assert!(err.contains(":4:") && err.contains("scret"), "the file and line: {err}");
        let err = load("[diameter]\nlisten = \"127.0.0.1:0\"\nwatchdog_seconds = 2\n", &[]).unwrap_err();
        assert!(err.contains("diameter.watchdog_seconds"), "{err}");
        let err = load("[diameter]\nlisten = \"127.0.0.1:0\"\norigin_host = \"ocs example\"\n", &[]).unwrap_err();
        assert!(err.contains("diameter.origin_host"), "{err}");
        // The variables alone make a working setup on loopback.
        let config = load("", &[("ROLLOVER_RADIUS_LISTEN", "127.0.0.1:0"), ("ROLLOVER_RADIUS_SECRET", "s3cret"), ("ROLLOVER_DIAMETER_LISTEN", "127.0.0.1:0")]).unwrap();
        let radius = config.radius().unwrap().unwrap();
        assert!(radius.clients.iter().any(|c| c.network.contains("127.0.0.1".parse().unwrap())));
        assert!(!radius.clients.iter().any(|c| c.network.contains("10.0.0.1".parse().unwrap())), "only loopback clients");
        assert_eq!(config.diameter().unwrap().unwrap().origin_host, "ocs.rollover.local");
        let config = load("[radius]\nlisten = \"127.0.0.1:0\"\nclients = [{ address = \"10.0.0.0/8\", secret = \"s\" }]\n[[radius.nas]]\naddress = \"10.0.0.1\"\nsecret = \"s\"\nvendor = \"mikrotik\"\n", &[]).unwrap();
        let coa = config.coa().unwrap();
        assert_eq!(coa.nas[0].coa, "10.0.0.1:3799".parse().unwrap(), "port 3799 by default");
        assert_eq!(coa.nas[0].throttle[0].value, "{kbps}k/{kbps}k");
        let _ = std::fs::remove_file(&path);
    }
}
