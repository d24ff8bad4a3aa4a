//! `rollover bench orders`: eSIM orders a second against the SM-DP+ test
//! double over mutual TLS, and the latency of the whole flow (a profile
//! taken from the inventory, `downloadOrder`, `confirmOrder`, the plan
//! bought), as a reseller's client sees it. Certificates are made for the
//! run with `openssl`.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock};

use crate::loadgen::{agent, percentile, post, start_server_with, store_url};

#[derive(clap::Args)]
pub struct OrdersBench {
    /// Orders placed, each on a profile of its own.
    #[arg(long, default_value_t = 2_000)]
    orders: usize,
    /// Clients ordering at once.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// `sqlite` or `postgres` (the local server, a schema of its own).
    #[arg(long, default_value = "sqlite")]
    store: String,
}

pub fn orders(options: OrdersBench) -> ExitCode {
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollover bench orders: {e}");
            ExitCode::FAILURE
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("openssl").current_dir(dir).args(args).output().map_err(|e| format!("openssl: {e} (the bench makes its certificates with it)"))?;
    if !output.status.success() {
        return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(())
}

/// A CA, a server certificate for localhost and a client certificate, in `dir`.
fn certificates(dir: &Path) -> Result<(), String> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(dir, &[&["req", "-x509"], &ec[..], &["-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]].concat())?;
    for (name, extensions) in [("server", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"), ("client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")] {
        openssl(dir, &[&["req"], &ec[..], &["-subj", &format!("/CN={name}"), "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")]].concat())?;
        std::fs::write(dir.join(format!("{name}.ext")), extensions).map_err(|e| e.to_string())?;
        openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", &format!("{name}.pem"), "-extfile", &format!("{name}.ext")])?;
    }
    Ok(())
}

/// ICCID number `n` of the bench's range, with its Luhn check digit.
fn iccid(n: usize) -> String {
    let body = format!("8944599{n:012}");
    format!("{body}{}", rollover_esim::ids::luhn_check_digit(&body))
}

fn run(o: OrdersBench) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("rollover-bench-es2-certificates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    certificates(&dir)?;
    let file = |name: &str| dir.join(name);
    // The SM-DP+ double, in this process, on its own runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| e.to_string())?;
    let double = rollover_es2::double::Double::new("smdp.bench.example");
    for n in 0..o.orders {
        double.add_profile(&iccid(n), "bench");
    }
    let tls = rollover_es2::tls::server_config(&file("server.pem"), &file("server.key"), &file("ca.pem")).map_err(|e| e.to_string())?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    runtime.spawn(double.clone().serve(listener, tls));
    let (url, cleanup) = store_url(&o.store, "orders")?;
    let smdp_url = format!("https://localhost:{port}");
    let paths: Vec<String> = ["client.pem", "client.key", "ca.pem"].iter().map(|n| file(n).display().to_string()).collect();
    let env = [
        ("ROLLOVER_ESIM_SMDP_URL", smdp_url.as_str()),
        ("ROLLOVER_ESIM_REQUESTER_ID", "rollover.bench"),
        ("ROLLOVER_ESIM_CLIENT_CERT", paths[0].as_str()),
        ("ROLLOVER_ESIM_CLIENT_KEY", paths[1].as_str()),
        ("ROLLOVER_ESIM_CA_CERT", paths[2].as_str()),
    ];
    let server = start_server_with(&url, "wall", cleanup, &env)?;
    let client = agent();
    let plan = "[[plan]]\nid = \"bench-travel\"\nname = \"bench\"\ncurrency = \"USD\"\nprice = \"9.90\"\ntimezone = \"UTC\"\nprofile_type = \"bench\"\nperiod = { kind = \"once\", length = \"7 days\", starts = \"install\", activate_within = \"30 days\" }\nallowance = { data = \"5GiB\" }\n";
    post(&client, &format!("{}/v1/plans", server.base), "application/toml", plan.to_string())?;
    let mut csv = String::from("iccid,profile_type\n");
    for n in 0..o.orders {
        csv.push_str(&format!("{},bench\n", iccid(n)));
    }
    post(&client, &format!("{}/v1/esim/profiles", server.base), "text/csv", csv)?;
    println!("rollover bench orders: {} orders from {} clients, store {}; the SM-DP+ double on loopback, a new mutual-TLS connection per ES2+ call", o.orders, o.clients, o.store);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(o.orders)));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = WallClock::now();
    let threads: Vec<_> = (0..o.clients.max(1))
        .map(|_| {
            let (next, latencies, failures, base, total) = (next.clone(), latencies.clone(), failures.clone(), server.base.clone(), o.orders);
            std::thread::spawn(move || {
                let client = agent();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    let begun = WallClock::now();
                    let answer = post(&client, &format!("{base}/v1/orders"), "application/json", format!(r#"{{"id":"bench-{n}","plan":"bench-travel"}}"#));
                    let took = begun.elapsed();
                    match answer {
                        Ok(text) if text.contains(r#""status":"completed""#) => latencies.lock().expect("latencies").push(took),
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a client thread panicked")?;
    }
    let elapsed = started.elapsed();
    let mut latencies = Arc::try_unwrap(latencies).map_err(|_| "latencies still shared")?.into_inner().map_err(|_| "latencies lock")?;
    latencies.sort();
    let done = latencies.len();
    println!("  completed: {done} ({} not completed) in {:.2} s: {:.0} orders/s", failures.load(Ordering::Relaxed), elapsed.as_secs_f64(), done as f64 / elapsed.as_secs_f64());
    println!("  the whole flow at the client: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", percentile(&latencies, 0.50), percentile(&latencies, 0.99), latencies.last().map_or(0.0, Duration::as_secs_f64) * 1000.0);
    println!("  calls the SM-DP+ received: {}", double.calls().len());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
