//! `rollover import subscriptions FILE.csv`: an existing subscriber base
//! moved into a running server, through `POST /v1/subscriptions/batch`.
//!
//! The file is `id,plan[,at][,iccid][,imsi][,msisdn][,external_id]` with a
//! header naming the columns (in any order). Lines are read and checked
//! here for their shape, sent in batches, and every line the file or the
//! server refuses is printed with its number and reason. The import is
//! idempotent by id: run it again after a stop and the lines already in
//! are answered `unchanged`. On a terminal, a progress line is kept on
//! standard error.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Columns an import file may have.
const COLUMNS: [&str; 7] = ["id", "plan", "at", "iccid", "imsi", "msisdn", "external_id"];

/// Most lines one file may hold.
pub const MAX_LINES: usize = 10_000_000;

#[derive(clap::Args)]
pub struct ImportSubscriptions {
    /// CSV: a header `id,plan[,at][,iccid][,imsi][,msisdn][,external_id]`, one subscription a line.
    file: std::path::PathBuf,
    /// The running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A read-write API key, when the server has keys (or ROLLOVER_IMPORT_KEY).
    #[arg(long)]
    key: Option<String>,
    /// Subscriptions a request, 1 to 10,000.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
}

#[derive(Default)]
struct Tally {
    created: usize,
    unchanged: usize,
    refused: usize,
}

pub fn subscriptions(options: ImportSubscriptions) -> ExitCode {
    match run(&options) {
        Ok(tally) if tally.refused == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rollover import: {e}");
            ExitCode::from(2)
        }
    }
}

/// The header's columns, in file order, each known and none twice.
fn header(line: &str) -> Result<Vec<&'static str>, String> {
    let mut columns = Vec::new();
    for name in line.trim_end_matches('\r').split(',') {
        let name = name.trim();
        let known = COLUMNS.iter().find(|c| **c == name).ok_or_else(|| format!("line 1: unknown column {name:?}; the columns are {}", COLUMNS.join(", ")))?;
        if columns.contains(known) {
            return Err(format!("line 1: column {name:?} is named twice"));
        }
        columns.push(*known);
    }
    for needed in ["id", "plan"] {
        if !columns.contains(&needed) {
            return Err(format!("line 1: the header needs a column {needed:?}"));
        }
    }
    Ok(columns)
}

/// One line as the JSON `POST /v1/subscriptions` takes; the server checks
/// the values.
fn subscription(columns: &[&str], line: &str) -> Result<Value, String> {
    if line.contains('"') {
        return Err("quotes are not read: no value holds a comma or a quote".into());
    }
    let values: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    if values.len() != columns.len() {
        return Err(format!("{} fields, the header has {}", values.len(), columns.len()));
    }
    let mut object = Map::new();
    let mut identifiers = Map::new();
    for (column, value) in columns.iter().zip(values) {
        let value = value.trim();
        if value.is_empty() {
            if matches!(*column, "id" | "plan") {
                return Err(format!("{column} is empty"));
            }
            continue;
        }
        match *column {
            "id" | "plan" | "at" => object.insert(column.to_string(), json!(value)),
            _ => identifiers.insert(column.to_string(), json!(value)),
        };
    }
    if !identifiers.is_empty() {
        object.insert("identifiers".into(), Value::Object(identifiers));
    }
    Ok(Value::Object(object))
}

fn run(o: &ImportSubscriptions) -> Result<Tally, String> {
    if !(1..=10_000).contains(&o.batch) {
        return Err(format!("--batch {}: use 1 to 10000", o.batch));
    }
    let total = count_lines(&o.file)?;
    let file = std::fs::File::open(&o.file).map_err(|e| format!("{}: cannot read: {e}", o.file.display()))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines.next().ok_or_else(|| format!("{}: empty; it needs a header line", o.file.display()))?.map_err(|e| format!("{}: {e}", o.file.display()))?;
    let columns = header(&first).map_err(|e| format!("{}: {e}", o.file.display()))?;
    let key = o.key.clone().or_else(|| std::env::var("ROLLOVER_IMPORT_KEY").ok());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into();
    let url = format!("{}/v1/subscriptions/batch", o.url.trim_end_matches('/'));
    let progress = Progress::new(total, std::io::stderr().is_terminal());
    let mut tally = Tally::default();
    let mut batch: Vec<(usize, Value)> = Vec::with_capacity(o.batch);
    let mut number = 1;
    for line in lines {
        number += 1;
        if number > MAX_LINES + 1 {
            return Err(format!("{}: more than {MAX_LINES} lines; split the file", o.file.display()));
        }
        let line = line.map_err(|e| format!("{}: line {number}: {e}", o.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match subscription(&columns, &line) {
            Ok(value) => batch.push((number, value)),
            Err(why) => {
                progress.clear();
                eprintln!("line {number}: {why}");
                tally.refused += 1;
            }
        }
        if batch.len() == o.batch {
            send(&agent, &url, key.as_deref(), &mut batch, &mut tally, &progress)?;
            progress.show(number - 1, &tally);
        }
    }
    send(&agent, &url, key.as_deref(), &mut batch, &mut tally, &progress)?;
    progress.clear();
    eprintln!("{}: {} created, {} unchanged, {} refused in {:.1} s", o.file.display(), tally.created, tally.unchanged, tally.refused, progress.started.elapsed().as_secs_f64());
    Ok(tally)
}

/// Sends a batch, prints its refused lines by number, and empties it.
fn send(agent: &ureq::Agent, url: &str, key: Option<&str>, batch: &mut Vec<(usize, Value)>, tally: &mut Tally, progress: &Progress) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let body = json!({"subscriptions": batch.iter().map(|(_, v)| v).collect::<Vec<_>>()}).to_string();
    let mut request = agent.post(url).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut response = request.send(body).map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| format!("{url}: {e}"))?;
    if status != 200 {
        return Err(format!("{url}: HTTP {status}: {text}"));
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: the answer is not JSON: {e}"))?;
    let results = answer["results"].as_array().filter(|r| r.len() == batch.len()).ok_or_else(|| format!("{url}: the answer has no result for each line"))?;
    for ((number, _), result) in batch.iter().zip(results) {
        match result["status"].as_str() {
            Some("created") => tally.created += 1,
            Some("unchanged") => tally.unchanged += 1,
            _ => {
                tally.refused += 1;
                progress.clear();
                // The server names fields by their place in the batch; the
                // line number says that here.
                let full = result["field"].as_str().unwrap_or("");
                let field = if full.starts_with("subscriptions[") { full.split_once('.').map_or("", |(_, rest)| rest) } else { full };
                let detail = result["detail"].as_str().unwrap_or("");
                let detail = detail.strip_prefix(&format!("{full}: ")).unwrap_or(detail);
                let named = if field.is_empty() { String::new() } else { format!(" ({field})") };
                eprintln!("line {number}: {}{named}: {detail}", result["code"].as_str().unwrap_or("rejected"));
            }
        }
    }
    batch.clear();
    Ok(())
}

fn count_lines(path: &Path) -> Result<usize, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(BufReader::new(file).lines().count().saturating_sub(1))
}

/// A progress line on a terminal: done of all, and the rate.
struct Progress {
    total: usize,
    on: bool,
    started: Instant,
}

impl Progress {
    fn new(total: usize, on: bool) -> Progress {
        Progress { total, on, started: Instant::now() }
    }

    fn show(&self, done: usize, tally: &Tally) {
        if !self.on {
            return;
        }
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width).min(width);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr();
        let _ = write!(err, "\r[{}{}] {done}/{} lines, {:.0}/s, {} refused ", "#".repeat(filled), " ".repeat(width - filled), self.total, rate, tally.refused);
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_by_their_header() {
        let columns = header("plan,id,msisdn,at").unwrap();
        assert_eq!(subscription(&columns, "cn-30g,s1,,2026-01-01T00:00:00Z").unwrap(), json!({"id": "s1", "plan": "cn-30g", "at": "2026-01-01T00:00:00Z"}));
        assert_eq!(subscription(&columns, "cn-30g,s2,8613800000000,").unwrap(), json!({"id": "s2", "plan": "cn-30g", "identifiers": {"msisdn": "8613800000000"}}));
        assert_eq!(subscription(&columns, "cn-30g,s3").unwrap_err(), "2 fields, the header has 4");
        assert_eq!(subscription(&columns, ",s3,,").unwrap_err(), "plan is empty");
        assert!(subscription(&columns, "\"cn,30g\",s3,,").unwrap_err().contains("quotes"));
        assert!(header("id,plan,colour").unwrap_err().contains("unknown column \"colour\""));
        assert!(header("id,id,plan").unwrap_err().contains("named twice"));
        assert!(header("id,msisdn").unwrap_err().contains("needs a column \"plan\""));
    }
}
