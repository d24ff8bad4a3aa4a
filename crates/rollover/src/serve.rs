//! `rollover serve`: the live service on the embedded store.

use std::path::PathBuf;
use std::process::ExitCode;

use rollover_core::Instant;
use rollover_service::{Clock, Config as ServiceConfig, Service};

use crate::config::{ClockMode, Config, Settings};
use crate::demo;

pub fn run(config_file: Option<PathBuf>, clock_flag: Option<String>, log_json: bool) -> ExitCode {
    let mut config = match Config::load(config_file.as_ref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("rollover serve: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(mode) = clock_flag {
        config.clock.mode = mode;
    }
    let settings = match config.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("rollover serve: {error}");
            return ExitCode::from(2);
        }
    };
    init_logs(log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollover serve: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(settings));
    // Not dropped: tasks still holding the service would drop PostgreSQL
    // clients inside the runtime, and those block on drop. Everything
    // acknowledged is committed by now (a node of a cluster has handed its
    // shards over); the process exits next.
    std::mem::forget(runtime);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollover serve: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLOVER_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        // JSON escapes every value already.
        builder.with_writer(std::io::stderr).json().init();
    } else {
        builder.with_writer(EscapedLines).with_ansi(false).init();
    }
}

/// Text logs, one line per event, whatever a client put in a value: a CR, LF
/// or other control character inside an event (an `Acct-Session-Id`, a
/// Diameter `Origin-Host`, a session id) is written as `\n`, `\r` or
/// `\xNN`, so no client can forge a log line.
struct EscapedLines;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapedLines {
    type Writer = EscapedLine;

    fn make_writer(&'a self) -> EscapedLine {
        EscapedLine(Vec::with_capacity(256))
    }
}

/// One event's text, written to standard error when the event is done.
struct EscapedLine(Vec<u8>);

impl std::io::Write for EscapedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EscapedLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let line = escape_line(&self.0);
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

/// Escapes control characters except one final newline.
fn escape_line(text: &[u8]) -> Vec<u8> {
    let (body, newline) = match text.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let mut out = Vec::with_capacity(text.len() + 8);
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b'\t'),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

async fn serve(settings: Settings) -> Result<(), String> {
    let listen = settings.listen;
    let url = settings.store_url.clone();
    let clock = match settings.clock {
        ClockMode::Simulated { start } => Clock::simulated(start.unwrap_or_else(|| Instant::from_micros(rollover_service::wall_micros()))),
        ClockMode::Wall => Clock::Wall,
    };
    let (radius, coa, diameter) = (settings.radius.clone(), settings.coa.clone(), settings.diameter.clone());
    // Status changes drive CoA and Disconnect, when a NAS takes them.
    let (status_changes, status_watch) = if radius.is_some() && !coa.nas.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let service_config = ServiceConfig { status_changes, ..settings.service.clone() };
    let started = std::time::Instant::now();
    let cluster = settings.cluster.clone();
    let node = cluster.as_ref().map(|c| c.service.clone());
    let service = tokio::task::spawn_blocking(move || match node {
        Some(node) => Service::start_cluster(&url, service_config, node),
        None => Service::start_url(&url, clock, service_config),
    })
    .await
    .map_err(|e| format!("start-up failed: {e}"))?
    .map_err(|e| e.to_string())?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "state rebuilt from the store");
    if let Some(cluster) = &cluster {
        let schema = rollover_store::schema_of(&settings.store_url).map_err(|e| e.to_string())?;
        rollover_cluster::connect(&cluster.nats_urls, &schema, service.clone()).await?;
        // A NATS URL may carry a password: the log gets the hosts only.
        let hosts: Vec<&str> = cluster.nats_urls.iter().map(|url| url.rsplit('@').next().unwrap_or(url)).collect();
        tracing::info!(node = %cluster.service.node_id, nats = ?hosts, "cluster mode: taking this node's share of the shards");
    } else if settings.demo && service.is_empty() {
        demo::load(&service).await.map_err(|e| format!("loading demo data: {e}"))?;
    }
    let network = start_network(&settings, &service, (radius, coa, diameter), status_watch).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    // Scripts and tests read this line to find the ports.
    println!("rollover listening on http://{bound}{network} (store {}, clock {})", settings.store_label, settings.clock.name());
    let token_secret = match &settings.token_secret {
        Some(secret) => secret.clone(),
        None => {
            tracing::warn!("no security.token_secret: customer tokens will not survive a restart");
            crate::keys::random_bytes(32).map_err(|e| format!("cannot make a token secret: {e}"))?
        }
    };
    let security = std::sync::Arc::new(rollover_http::auth::Security::new(settings.api_keys.clone(), token_secret, settings.token_requests_per_second));
    if security.is_open() {
        tracing::warn!("no API key configured: the API is open to anyone who can reach {bound}");
    }
    let server_metrics = std::sync::Arc::new(rollover_http::server::ServerMetrics::default());
    let rendered = server_metrics.clone();
    service.add_metrics(Box::new(move |out| rendered.render(out)));
    raise_open_file_limit(settings.server.max_connections);
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    links(&service, &security, &public_url, settings.demo);
    let site = rollover_http::Site { public_url };
    let orders = rollover_service::orders::Orders::new(service.clone(), settings.esim_orders.clone());
    if orders.is_configured() {
        // Pending orders (a restart in the middle of one) go on now.
        tokio::spawn(orders.clone().run());
    }
    let app = rollover_http::router(service.clone(), orders, security, settings.limits, site);
    rollover_http::server::serve(listener, app, settings.server, server_metrics, shutdown()).await;
    if cluster.is_some() {
        // Every shard committed and released, for the others to take at once.
        let leaving = service.clone();
        let _ = tokio::task::spawn_blocking(move || leaving.leave_cluster()).await;
        tracing::info!("left the cluster");
    }
    // A PostgreSQL client closes by blocking: the last handle goes off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(service)).await;
    Ok(())
}

/// Starts the network listeners that are configured (RADIUS with CoA,
/// Diameter, the ES2+ callbacks); what the start-up line says of them.
async fn start_network(
    settings: &Settings,
    service: &rollover_service::Service,
    (radius, coa, diameter): (Option<rollover_gateway::radius::Config>, rollover_gateway::coa::Config, Option<rollover_gateway::diameter::Config>),
    status_watch: Option<tokio::sync::mpsc::UnboundedReceiver<rollover_service::StatusChange>>,
) -> Result<String, String> {
    let mut network = String::new();
    if let Some(radius) = radius {
        let server = rollover_gateway::radius::Server::bind(radius, service.clone()).await.map_err(|e| e.to_string())?;
        let address = server.local_addr().map_err(|e| e.to_string())?;
        network.push_str(&format!(", radius udp://{address}"));
        if let Some(watch) = status_watch {
            tokio::spawn(rollover_gateway::coa::run(coa, service.clone(), server.sessions.clone(), watch));
        }
        tokio::spawn(server.run());
    }
    if let Some(diameter) = diameter {
        let server = rollover_gateway::diameter::Server::bind(diameter, service.clone()).await.map_err(|e| e.to_string())?;
        let address = server.local_addr().map_err(|e| e.to_string())?;
        network.push_str(&format!(", diameter tcp://{address}"));
        tokio::spawn(server.run());
    }
    if let Some(esim) = settings.esim_callback.clone() {
        let server = rollover_gateway::esim::Server::bind(esim, service.clone()).await.map_err(|e| e.to_string())?;
        let address = server.local_addr().map_err(|e| e.to_string())?;
        network.push_str(&format!(", esim callbacks https://{address}"));
        tokio::spawn(server.run());
    }
    Ok(network)
}

/// The lines after the first: the console's address, and with the demo
/// data a customer link for each demo subscription, so that the pages open
/// in one step after `rollover serve`. Whoever started the server may have
/// stopped reading after the first line: a closed stdout stops nothing.
fn links(service: &rollover_service::Service, security: &rollover_http::auth::Security, public_url: &str, demo: bool) {
    use std::io::Write as _;
    let sign_in = if security.is_open() { " (no key configured: sign in without one)" } else { " (sign in with an API key)" };
    let _ = writeln!(std::io::stdout(), "  support console: {public_url}/console{sign_in}");
    if demo {
        demo_links(service, security, public_url);
    }
}

/// A customer link for each demo subscription.
fn demo_links(service: &rollover_service::Service, security: &rollover_http::auth::Security, public_url: &str) {
    use std::io::Write as _;
    let expires = service.now().plus_micros(30 * 86_400 * 1_000_000);
    for (id, _, _, imsi) in crate::demo::SUBSCRIPTIONS {
        if service.subscription_by("imsi", imsi).as_deref() != Some(id) {
            continue;
        }
        let _ = writeln!(std::io::stdout(), "  customer page of {id}: {public_url}/my/{}", security.customer_token(id, expires));
    }
}

/// Raises the soft limit on open files towards the hard one, so that
/// `server.max_connections` and the store fit under it; warns when they
/// cannot.
fn raise_open_file_limit(max_connections: usize) {
    let wanted = max_connections as u64 + 256;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    if limit.rlim_cur < wanted {
        tracing::warn!(open_files = limit.rlim_cur, max_connections, "the open-file limit is below server.max_connections plus room for the store; raise it (ulimit -n) or lower server.max_connections");
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_cannot_be_forged() {
        let line = super::escape_line(b"WARN radius: session=\"a\nINFO forged\r\x1b[31m\" done\n");
        assert_eq!(String::from_utf8(line).unwrap(), "WARN radius: session=\"a\\nINFO forged\\r\\x1b[31m\" done\n");
    }
}
