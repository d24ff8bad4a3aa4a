//! `rollover serve`: the live service on the embedded store.

use std::path::PathBuf;
use std::process::ExitCode;

use rollover_core::Instant;
use rollover_service::{Clock, Config as ServiceConfig, Service};

use crate::config::Config;
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
    init_logs(log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollover serve: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollover serve: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLOVER_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let listen = config.listen()?;
    let url = config.store.url.clone();
    let clock = if config.clock.mode == "simulated" {
        let start = match &config.clock.start {
            Some(text) => Instant::parse_rfc3339(text)?,
            None => Instant::from_micros(rollover_service::wall_micros()),
        };
        Clock::simulated(start)
    } else {
        Clock::Wall
    };
    let radius = config.radius()?;
    let coa = config.coa()?;
    let diameter = config.diameter()?;
    // Status changes drive CoA and Disconnect, when a NAS takes them.
    let (status_changes, status_watch) = if radius.is_some() && !coa.nas.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let service_config = ServiceConfig {
        workers: config.service.workers,
        max_age_micros: config.service.max_age_seconds * 1_000_000,
        future_skew_micros: config.service.future_skew_seconds * 1_000_000,
        notify: config.notify(),
        status_changes,
        ..ServiceConfig::default()
    };
    let started = std::time::Instant::now();
    let service = tokio::task::spawn_blocking(move || Service::start_url(&url, clock, service_config))
        .await
        .map_err(|e| format!("start-up failed: {e}"))??;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "state rebuilt from the store");
    if config.demo.enabled && service.is_empty() {
        demo::load(&service).await.map_err(|e| format!("loading demo data: {e}"))?;
    }
    let mut network = String::new();
    if let Some(radius) = radius {
        let server = rollover_gateway::radius::Server::bind(radius, service.clone()).await?;
        let address = server.local_addr().map_err(|e| e.to_string())?;
        network.push_str(&format!(", radius udp://{address}"));
        if let Some(watch) = status_watch {
            tokio::spawn(rollover_gateway::coa::run(coa, service.clone(), server.sessions.clone(), watch));
        }
        tokio::spawn(server.run());
    }
    if let Some(diameter) = diameter {
        let server = rollover_gateway::diameter::Server::bind(diameter, service.clone()).await?;
        let address = server.local_addr().map_err(|e| e.to_string())?;
        network.push_str(&format!(", diameter tcp://{address}"));
        tokio::spawn(server.run());
    }
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    // Scripts and tests read this line to find the ports.
    println!("rollover listening on http://{bound}{network} (store {}, clock {})", config.store_label(), config.clock.mode);
    let token_secret = match &config.security.token_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => {
            tracing::warn!("no security.token_secret: customer tokens will not survive a restart");
            crate::keys::random_bytes(32).map_err(|e| format!("cannot make a token secret: {e}"))?
        }
    };
    let security = std::sync::Arc::new(rollover_http::auth::Security::new(config.api_keys(), token_secret));
    if security.is_open() {
        tracing::warn!("no API key configured: the API is open to anyone who can reach {bound}");
    }
    let app = rollover_http::router(service, security, config.limits());
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(|e| e.to_string())
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
