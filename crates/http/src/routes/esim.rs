//! The eSIM profile inventory: `POST /v1/esim/profiles` (a CSV file),
//! `GET /v1/esim/profiles` (a page, with counts by state and profile type)
//! and `GET /v1/esim/profiles/{iccid}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use rollover_esim::{Iccid, ProfileState};
use rollover_service::Service;

use super::{ApiResult, ok};
use crate::problem::{Code, Problem};
use crate::wire;

/// Most profiles on one page.
pub const PROFILE_PAGE_MAX: usize = 1000;

/// `POST /v1/esim/profiles`: adds every good line; every bad one (a bad
/// ICCID, IMSI or MSISDN, a repeat in the file, one already in stock) is
/// listed with its number and reason and adds nothing.
pub(super) async fn post_profiles(State(service): State<Service>, body: Bytes) -> ApiResult {
    let text = std::str::from_utf8(&body).map_err(|_| Problem::new(Code::InvalidProfileFile, "the body is not UTF-8", None))?;
    let import = rollover_esim::inventory::parse_profiles(text).map_err(|(line, why)| Problem::new(Code::InvalidProfileFile, format!("line {line}: {why}"), Some(format!("line {line}"))))?;
    let lines: Vec<(usize, String)> = import.profiles.iter().map(|(line, p)| (*line, p.iccid.as_str().to_string())).collect();
    let present = service.add_profiles(import.profiles.into_iter().map(|(_, p)| p).collect()).await?;
    let mut errors: Vec<(usize, String)> = import.errors;
    errors.extend(lines.iter().filter(|(_, iccid)| present.contains(iccid)).map(|(line, iccid)| (*line, format!("ICCID {iccid} is already in the inventory"))));
    errors.sort();
    Ok(ok(wire::ProfileImportOut {
        added: lines.len() - present.len(),
        errors: errors.into_iter().map(|(line, reason)| wire::LineError { line, reason }).collect(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfilesQuery {
    state: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /v1/esim/profiles`.
pub(super) async fn get_profiles(State(service): State<Service>, query: Result<axum::extract::Query<ProfilesQuery>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let axum::extract::Query(query) = query.map_err(|e| Problem::new(Code::InvalidQuery, format!("bad query: {e}"), None))?;
    let state = match query.state.as_deref() {
        None => None,
        Some(name) => Some(ProfileState::parse(name).ok_or_else(|| {
            let names: Vec<&str> = ProfileState::ALL.iter().map(|s| s.name()).collect();
            Problem::about(Code::InvalidQuery, "state", format!("\"{name}\" is not a profile state: {}", names.join(", ")))
        })?),
    };
    let (limit, offset) = super::page(query.limit, query.offset, PROFILE_PAGE_MAX)?;
    let (rows, total, counts) = service.profiles(state, limit, offset).await?;
    let next = offset as u64 + rows.len() as u64;
    Ok(ok(wire::ProfileListOut {
        profiles: rows.into_iter().map(wire::ProfileOut::of).collect(),
        total,
        next_offset: (next < total).then_some(next),
        counts: counts.into_iter().map(|c| wire::ProfileCountOut { state: c.state, profile_type: c.profile_type, count: c.count }).collect(),
    }))
}

/// `GET /v1/esim/profiles/{iccid}`.
pub(super) async fn get_profile(State(service): State<Service>, Path(iccid): Path<String>) -> ApiResult {
    // An ICCID that cannot exist names no profile: 404, saying why.
    let iccid = Iccid::parse(&iccid).map_err(|e| Problem::new(Code::UnknownProfile, format!("ICCID {iccid:?} {e}: no profile can have it"), Some("iccid".into())))?;
    match service.profile(&iccid).await? {
        Some(row) => Ok(ok(wire::ProfileOut::of(row))),
        None => Err(Problem::new(Code::UnknownProfile, format!("no profile {iccid} in the inventory"), Some("iccid".into()))),
    }
}

/// `GET /v1/esims/{iccid}`: what an eSIM reseller's customer asks, in one
/// call: the profile's state, and its subscription's status, data left and
/// held, and when it ends.
pub(super) async fn get_esim(State(service): State<Service>, Path(iccid): Path<String>) -> ApiResult {
    let iccid = Iccid::parse(&iccid).map_err(|e| Problem::new(Code::UnknownProfile, format!("ICCID {iccid:?} {e}: no profile can have it"), Some("iccid".into())))?;
    let profile = service.profile(&iccid).await?;
    let subscription = service.subscription_by("iccid", iccid.as_str());
    if profile.is_none() && subscription.is_none() {
        return Err(Problem::new(Code::UnknownProfile, format!("no profile or subscription has ICCID {iccid}"), Some("iccid".into())));
    }
    let usage = match &subscription {
        Some(id) => {
            let balance = service.balance(id).await?;
            let plans = service.plans();
            let plan = plans.catalog.get(balance.plan.ix);
            let held = balance.buckets.iter().map(|b| b.granted_bytes).sum();
            let zone = &plan.zone;
            Some(wire::EsimSubscriptionOut {
                id: id.clone(),
                plan: plan.id.clone(),
                status: balance.status.name(),
                remaining_bytes: balance.total_bytes,
                total_bytes: held,
                unlimited: plan.is_unlimited(),
                expires_at: balance.expires_at.or(balance.period_end.map(|p| p.at)).map(|at| at.to_rfc3339(zone)),
                renews: !plan.is_once(),
            })
        }
        None => None,
    };
    Ok(ok(wire::EsimOut { iccid: iccid.as_str().to_string(), profile_state: profile.map(|p| p.state), subscription: usage }))
}
