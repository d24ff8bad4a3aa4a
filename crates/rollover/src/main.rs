//! The `rollover` command line. Parses flags and wires the library crates
//! together; rules live in `rollover-core`, file formats in `rollover-terms`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rollover_explain::{Lang, explain_plan};
use rollover_terms::file::is_scenario;
use rollover_terms::{parse_plans, parse_scenario, run};

/// mimalloc rather than the system allocator: a usage batch is read on one
/// thread and rated on another, and glibc's malloc spent about 6% of the
/// machine on those allocations and frees under load (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod clusterbench;
mod config;
mod demo;
mod historyload;
mod import;
mod keys;
mod loadgen;
mod netload;
mod orderload;
mod pageload;
mod serve;

#[derive(Parser)]
#[command(name = "rollover", version, about = "Data plans whose rules are exact and visible")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the live service: REST API on the embedded store (demo data on a new store).
    Serve {
        /// A TOML config file; ROLLOVER_<SECTION>_<KEY> variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// "wall" (default) or "simulated" (adds POST /v1/clock).
        #[arg(long)]
        clock: Option<String>,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Replay a scenario file in virtual time and check its expects.
    /// Exit 0: every expect holds; 1: some do not; 2: the file is invalid.
    Simulate {
        file: PathBuf,
        /// Print the full state at every expect as JSON.
        #[arg(long)]
        json: bool,
        /// Also print the ledger: every grant, draw, carry, forfeit, fee and charge.
        #[arg(long, conflicts_with = "json")]
        ledger: bool,
    },
    /// API keys: make a new one.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Plan files: check and explain.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Which plan of a catalog fits a history of daily usage best: the usage
    /// replayed through the engine on every plan. Exit 0; 2: a file is invalid.
    Advise {
        /// CSV with a header `date,bytes[,country]`, one row per day in date order.
        #[arg(long)]
        usage: PathBuf,
        /// A file of `[[plan]]` tables.
        #[arg(long)]
        catalog: PathBuf,
        /// When each plan is bought (RFC 3339); by default the first date's
        /// local midnight in each plan's zone.
        #[arg(long)]
        start: Option<String>,
        #[arg(long, value_enum, default_value_t = LangArg::En)]
        lang: LangArg,
        /// Print {"best", "reason", "plans": [...]} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move data into a running server: `import subscriptions FILE.csv`.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Measure the engine: rating and boundary speed, memory per subscription.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Buy many subscriptions at once (an existing base), idempotent by id,
    /// every refused line named. Exit 0: all in; 1: some lines refused; 2:
    /// the file or the server could not be used.
    Subscriptions(import::ImportSubscriptions),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new random API key and the config lines that admit it (the
    /// config holds only the key's SHA-256).
    New {
        #[arg(long, default_value = "shop")]
        id: String,
        /// "read" or "read-write".
        #[arg(long, default_value = "read-write")]
        scope: String,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Validate a file of one or more plans (or a whole scenario file).
    Check { file: PathBuf },
    /// Explain plans in plain language, with a worked example.
    Explain {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = LangArg::En)]
        lang: LangArg,
        /// Only the plan with this id.
        #[arg(long)]
        plan: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    Zh,
}

impl From<LangArg> for Lang {
    fn from(lang: LangArg) -> Lang {
        match lang {
            LangArg::En => Lang::En,
            LangArg::Zh => Lang::Zh,
        }
    }
}

fn read(path: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("{}: cannot read: {e}", path.display());
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, clock, log_format } => serve::run(config, clock, matches!(log_format, LogFormat::Json)),
        Command::Simulate { file, json, ledger } => simulate(&file, json, ledger),
        Command::Plan { command: PlanCommand::Check { file } } => plan_check(&file),
        Command::Import { command: ImportCommand::Subscriptions(options) } => import::subscriptions(options),
        Command::Plan { command: PlanCommand::Explain { file, lang, plan } } => plan_explain(&file, lang, plan.as_deref()),
        Command::Advise { usage, catalog, start, lang, json } => advise(&usage, &catalog, start.as_deref(), lang.into(), json),
        Command::Bench { command } => bench::run(command),
        Command::Key { command: KeyCommand::New { id, scope } } => keys::new_key(&id, &scope),
    }
}

fn simulate(path: &Path, json: bool, show_ledger: bool) -> ExitCode {
    let text = match read(path) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let scenario = match parse_scenario(&path.display().to_string(), &text) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let report = run(&scenario);
    if json {
        println!("{}", report.to_json());
    } else {
        for line in report.mismatch_lines() {
            println!("{line}");
        }
        if show_ledger {
            for line in rollover_explain::ledger_lines(&scenario.catalog, &report.ledger) {
                println!("{line}");
            }
        }
        if report.ok {
            let title = scenario.title.as_deref().unwrap_or("scenario");
            eprintln!("ok: {} expects hold ({title})", report.expects.len());
        }
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn plan_check(path: &Path) -> ExitCode {
    let text = match read(path) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let name = path.display().to_string();
    let result = if is_scenario(&text) {
        parse_scenario(&name, &text).map(|s| s.catalog.plans().len())
    } else {
        rollover_terms::parse_catalog(&name, &text).map(|(plans, addons)| {
            if !addons.is_empty() {
                println!("{name}: {} add-on{} valid", addons.len(), if addons.len() == 1 { "" } else { "s" });
            }
            plans.len()
        })
    };
    match result {
        Ok(count) => {
            println!("{name}: {count} plan{} valid", if count == 1 { "" } else { "s" });
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

fn plan_explain(path: &Path, lang: LangArg, only: Option<&str>) -> ExitCode {
    let text = match read(path) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let name = path.display().to_string();
    let plans = if is_scenario(&text) {
        parse_scenario(&name, &text).map(|s| (s.catalog.plans().to_vec(), Vec::new()))
    } else {
        rollover_terms::parse_catalog(&name, &text)
    };
    let (plans, addons) = match plans {
        Ok(plans) => plans,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let lang = match lang {
        LangArg::En => Lang::En,
        LangArg::Zh => Lang::Zh,
    };
    let chosen: Vec<_> = plans.iter().filter(|p| only.is_none_or(|id| p.id == id)).collect();
    if chosen.is_empty() {
        eprintln!("{name}: no plan with id \"{}\"", only.unwrap_or_default());
        return ExitCode::from(2);
    }
    let texts: Vec<String> = chosen
        .iter()
        .map(|plan| {
            let sold: Vec<&rollover_core::Addon> = addons.iter().filter(|a| a.plans.contains(&plan.id)).collect();
            explain_plan(plan, lang) + &rollover_explain::explain_addons(plan, &sold, lang)
        })
        .collect();
    print!("{}", texts.join("\n"));
    ExitCode::SUCCESS
}

fn advise(usage_path: &Path, catalog_path: &Path, start: Option<&str>, lang: Lang, json: bool) -> ExitCode {
    let (usage_text, catalog_text) = match (read(usage_path), read(catalog_path)) {
        (Ok(usage), Ok(catalog)) => (usage, catalog),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let start = match start.map(rollover_core::Instant::parse_rfc3339).transpose() {
        Ok(start) => start,
        Err(error) => {
            eprintln!("--start: {error}");
            return ExitCode::from(2);
        }
    };
    let days = match rollover_advise::parse_usage(&usage_path.display().to_string(), &usage_text) {
        Ok(days) => days,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let plans = match parse_plans(&catalog_path.display().to_string(), &catalog_text) {
        Ok(plans) => plans,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let mut catalog = rollover_core::Catalog::new();
    for plan in plans {
        catalog.add(plan);
    }
    let advice = rollover_advise::advise(&catalog, &days, start);
    let out = rollover_http::wire::AdviceOut::of(&catalog, &advice, lang);
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("the advice serializes"));
        return ExitCode::SUCCESS;
    }
    println!("{}", out.reason);
    let header = match lang {
        Lang::En => ["plan", "cost", "expired", "throttled", "days", "rejected", "days"],
        Lang::Zh => ["套餐", "费用", "到期清零", "降速", "天数", "拒绝", "天数"],
    };
    println!("\n{:<20} {:>14} {:>14} {:>14} {:>5} {:>14} {:>5}", header[0], header[1], header[2], header[3], header[4], header[5], header[6]);
    for (plan, outcome) in out.plans.iter().zip(&advice.outcomes) {
        let base = catalog.get(outcome.plan).unit_base;
        let data = |bytes: u64| rollover_core::amount::format_human(bytes, base);
        let marker = if out.best.as_deref() == Some(plan.plan.as_str()) { "*" } else { " " };
        println!(
            "{marker}{:<19} {:>14} {:>14} {:>14} {:>5} {:>14} {:>5}",
            plan.plan,
            format!("{} {}", plan.cost, plan.currency),
            data(plan.expired_bytes),
            data(plan.throttled_bytes),
            plan.throttled_days,
            data(plan.rejected_bytes),
            plan.rejected_days
        );
    }
    ExitCode::SUCCESS
}
