//! `POST /v1/clock`, `GET /v1/clock`, `GET /v1/cluster` and `GET /metrics`.

use axum::body::Bytes;
use axum::extract::State;
use rollover_service::Service;

use super::{ApiResult, ok};
use crate::{json, wire};
use crate::problem::{Code, Problem};
use axum::http::header;
use axum::response::IntoResponse;

pub(super) async fn post_clock(State(service): State<Service>, body: Bytes) -> ApiResult {
    if !service.clock_is_simulated() {
        return Err(Problem::new(Code::ClockNotSimulated, "the clock can be moved only when serving with --clock simulated", None));
    }
    let fields = json::parse_object(&body)?;
    json::only(&fields, "", &["now"])?;
    let now = json::instant(&fields, "", "now")?.ok_or_else(|| Problem::required("now"))?;
    let now = service.set_clock(now).await?;
    Ok(ok(wire::ClockOut::at(now, None)))
}

pub(super) async fn get_metrics(State(service): State<Service>) -> ApiResult {
    let text = service.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(super) async fn get_clock(State(service): State<Service>) -> ApiResult {
    Ok(ok(wire::ClockOut::at(service.now(), Some(service.clock_is_simulated()))))
}

/// The cluster as this node sees it: live nodes, every shard's lease and
/// epoch, and what this node serves; `{"mode": "single"}` alone.
pub(super) async fn get_cluster(State(service): State<Service>) -> ApiResult {
    let Some(status) = service.cluster_status().await? else {
        return Ok(ok(serde_json::json!({ "mode": "single" })));
    };
    let nodes: Vec<serde_json::Value> = status.holders().into_iter().map(|(id, live, shards)| serde_json::json!({ "id": id, "live": live, "shards": shards })).collect();
    let shards: Vec<serde_json::Value> =
        status.leases.iter().map(|l| {
            // Records waiting in the stream for this shard, as last read.
            let lag = status.shard_lag.as_ref().map(|by_shard| by_shard.get(&l.shard).copied().unwrap_or(0));
            serde_json::json!({ "shard": l.shard, "owner": l.owner, "epoch": l.epoch, "expires_in_ms": l.remaining_ms, "stream_lag": lag })
        }).collect();
    Ok(ok(serde_json::json!({ "mode": "cluster", "node": status.node, "nodes": nodes, "shards": shards, "serving": status.serving, "stream_lag": status.stream_lag })))
}
