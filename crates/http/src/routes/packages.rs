//! `GET /v1/packages`: the plans on sale as a reseller lists them, for one
//! country or all: data, validity, when the clock starts, price, and
//! whether unused data carries over, in a word and in a sentence.

use axum::extract::State;
use rollover_core::Country;
use rollover_core::plan::{AddonExpiry, Period, Starts};
use rollover_explain::{Lang, carry_answer};
use rollover_service::Service;

use super::{ApiResult, ok};
use crate::problem::{Code, Problem};
use crate::wire;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PackagesQuery {
    country: Option<String>,
}

pub(super) async fn get_packages(State(service): State<Service>, query: Result<axum::extract::Query<PackagesQuery>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let axum::extract::Query(query) = query.map_err(|e| Problem::new(Code::InvalidQuery, format!("bad query: {e}"), None))?;
    let country = query.country.as_deref().map(|c| Country::parse(c).map_err(|e| Problem::about(Code::InvalidQuery, "country", e.to_string()))).transpose()?;
    let plans = service.plans();
    let packages = plans
        .all_latest()
        .into_iter()
        .map(|latest| plans.catalog.get(latest.ix))
        // A plan with no coverage list works everywhere.
        .filter(|plan| country.is_none() || plan.covers(country))
        .map(|plan| wire::PackageOut {
            id: plan.id.clone(),
            name: plan.name.clone(),
            data_bytes: plan.allowance_bytes,
            unlimited: plan.is_unlimited(),
            daily_full_speed_bytes: plan.daily_cap.map(|cap| cap.bytes),
            validity: match plan.period {
                Period::Monthly(_) => wire::Validity { kind: "monthly", days: None, text: "renews monthly".into() },
                Period::Days(days) => wire::Validity { kind: "days", days: Some(days), text: format!("renews every {days} days") },
                Period::Once(length) => wire::Validity { kind: "once", days: None, text: length.to_string() },
            },
            starts: match plan.starts {
                Starts::Purchase => "purchase",
                Starts::Install => "install",
                Starts::FirstUse => "first_use",
            },
            price: plan.currency.format(plan.price_minor),
            currency: plan.currency.code().to_string(),
            carries_over: plan.rollover.is_some() && !plan.is_once(),
            carry_over: wire::Explanation { en: carry_answer(plan, Lang::En), zh: carry_answer(plan, Lang::Zh) },
            countries: plan.coverage.as_ref().map(|countries| countries.iter().map(|c| c.as_str().to_string()).collect()),
            addons: plans
                .addons_for(&plan.id)
                .map(|addon| wire::PackageAddon {
                    id: addon.id.clone(),
                    name: addon.name.clone(),
                    data_bytes: addon.bytes,
                    price: addon.currency.format(addon.price_minor),
                    expires: match addon.expires {
                        AddonExpiry::PeriodEnd => "period_end".to_string(),
                        AddonExpiry::Never => "never".to_string(),
                        AddonExpiry::After(length) => length.to_string(),
                    },
                })
                .collect(),
        })
        .collect();
    Ok(ok(wire::PackagesOut { packages }))
}
