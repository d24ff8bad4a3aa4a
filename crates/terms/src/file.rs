//! Reading plan files and scenario files: TOML to core types, with every
//! error naming the file, the line and the field.

use std::fmt;
use std::ops::Range;

use rollover_core::amount::parse_bytes_with_unit;
use rollover_core::engine::{Event, GrantExpiry, Status};
use rollover_core::ledger::Cause;
use rollover_core::plan::{
    Addon, AddonDraft,
    AllowanceDraft, CoverageDraft, DailyCapDraft, ExhaustedDraft, OrderDraft, PeriodDraft, Plan, PlanDraft, RolloverDraft,
};
use rollover_core::money::Currency;
use rollover_core::{Catalog, Country, Instant, Kind, PlanIx};

use crate::raw::{RawAddon, RawBucket, RawEvent, RawExpect, RawFile, RawForfeit, RawGrant, RawPlan, S};

/// What is wrong with a file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
        }
    }
}

impl std::error::Error for FileError {}

/// An amount as the file wrote it: bytes, and the unit used (to write
/// results back in the same unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub bytes: u64,
    pub unit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedBucket {
    pub kind: Option<Kind>,
    pub remaining: Option<Amount>,
    pub expires: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedForfeit {
    pub kind: Option<Kind>,
    pub data: Option<Amount>,
    pub cause: Option<Cause>,
}

/// One `[[expect]]`: the checks it makes at its instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// 1-based position in the file.
    pub number: usize,
    pub line: usize,
    pub at: Instant,
    pub at_text: String,
    pub status: Option<Status>,
    pub total: Option<Amount>,
    pub buckets: Option<Vec<ExpectedBucket>>,
    pub forfeited: Option<Vec<ExpectedForfeit>>,
    pub charges: Option<Money>,
    pub fees: Option<Money>,
    pub throttled: Option<Amount>,
    pub rejected: Option<Amount>,
    pub daily_remaining: Option<Amount>,
    pub expires: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    pub at: Instant,
    pub line: usize,
    pub event: Event,
}

/// A parsed, checked scenario: one subscription's story.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub title: Option<String>,
    pub catalog: Catalog,
    pub purchase: PlanIx,
    pub purchased_at: Instant,
    /// Events after the purchase, in time order.
    pub events: Vec<TimedEvent>,
    /// Expects in file order.
    pub expects: Vec<Expect>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn error(&self, span: &Range<usize>, field: impl Into<String>, message: impl Into<String>) -> FileError {
        FileError { file: self.file.to_string(), line: self.line_of(span.start), field: field.into(), message: message.into() }
    }

    /// A TOML or shape error from the deserializer. Its span points at the
    /// offending value (or key); the key name is read from the text before it.
    fn toml_error(&self, error: &toml::de::Error) -> FileError {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().replace('\n', " ");
        let field = self.key_before(span.start).unwrap_or_default();
        FileError { file: self.file.to_string(), line: self.line_of(span.start), field, message }
    }

    /// The key written just before `offset` on its line (`price = 58.00`
    /// gives `price` for the offset of `58.00`).
    fn key_before(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.text[line_start..offset];
        let before = before.trim_end().strip_suffix('=')?;
        let key: String = before
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (!key.is_empty()).then_some(key)
    }
}

/// Records the span of each field read into a draft, so that a rule broken
/// by a field can be reported on that field's line.
struct Spans {
    fields: Vec<(String, Range<usize>)>,
}

impl Spans {
    fn take<T: Clone>(&mut self, field: &str, value: &Option<S<T>>) -> Option<T> {
        value.as_ref().map(|v| {
            self.fields.push((field.to_string(), v.span()));
            v.get_ref().clone()
        })
    }

    fn table<'v, T>(&mut self, field: &str, value: &'v Option<S<T>>) -> Option<&'v T> {
        value.as_ref().map(|v| {
            self.fields.push((field.to_string(), v.span()));
            v.get_ref()
        })
    }

    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, s)| s.clone()).or_else(|| {
            // A missing field is reported on its table.
            let parent = field.rsplit_once('.')?.0;
            self.fields.iter().find(|(f, _)| f == parent).map(|(_, s)| s.clone())
        })
    }
}

fn plan_draft(raw: &RawPlan) -> (PlanDraft, Spans) {
    let mut s = Spans { fields: Vec::new() };
    let mut draft = PlanDraft {
        id: s.take("id", &raw.id),
        name: s.take("name", &raw.name),
        currency: s.take("currency", &raw.currency),
        price: s.take("price", &raw.price),
        timezone: s.take("timezone", &raw.timezone),
        profile_type: s.take("profile_type", &raw.profile_type),
        ..PlanDraft::default()
    };
    if let Some(p) = s.table("period", &raw.period) {
        draft.period = Some(PeriodDraft {
            kind: s.take("period.kind", &p.kind),
            anchor: s.take("period.anchor", &p.anchor),
            days: s.take("period.days", &p.days),
            length: s.take("period.length", &p.length),
            starts: s.take("period.starts", &p.starts),
            activate_within: s.take("period.activate_within", &p.activate_within),
            proration: s.take("period.proration", &p.proration),
        });
    }
    if let Some(a) = s.table("allowance", &raw.allowance) {
        draft.allowance = Some(AllowanceDraft { data: s.take("allowance.data", &a.data) });
    }
    if let Some(r) = s.table("rollover", &raw.rollover) {
        draft.rollover = Some(RolloverDraft {
            from: s.take("rollover.from", &r.from),
            expires_after: s.take("rollover.expires_after", &r.expires_after),
            cap: s.take("rollover.cap", &r.cap),
            max_per_period: s.take("rollover.max_per_period", &r.max_per_period),
            on_plan_change: s.take("rollover.on_plan_change", &r.on_plan_change),
        });
    }
    if let Some(o) = s.table("order", &raw.order) {
        draft.order = Some(OrderDraft { kinds: s.take("order.kinds", &o.kinds) });
    }
    if let Some(d) = s.table("daily_cap", &raw.daily_cap) {
        draft.daily_cap = Some(DailyCapDraft {
            data: s.take("daily_cap.data", &d.data),
            window: s.take("daily_cap.window", &d.window),
            throttle_kbps: s.take("daily_cap.throttle_kbps", &d.throttle_kbps),
        });
    }
    if let Some(e) = s.table("exhausted", &raw.exhausted) {
        draft.exhausted = Some(ExhaustedDraft {
            action: s.take("exhausted.action", &e.action),
            throttle_kbps: s.take("exhausted.throttle_kbps", &e.throttle_kbps),
            block: s.take("exhausted.block", &e.block),
            price: s.take("exhausted.price", &e.price),
            unit: s.take("exhausted.unit", &e.unit),
        });
    }
    if let Some(c) = s.table("coverage", &raw.coverage) {
        draft.coverage = Some(CoverageDraft { countries: s.take("coverage.countries", &c.countries) });
    }
    (draft, s)
}

fn plans(ctx: &Ctx, raw_plans: &[S<RawPlan>]) -> Result<Vec<Plan>, FileError> {
    let mut plans: Vec<Plan> = Vec::with_capacity(raw_plans.len());
    for (index, raw) in raw_plans.iter().enumerate() {
        let (draft, spans) = plan_draft(raw.get_ref());
        let label = match &draft.id {
            Some(id) => format!("plan \"{id}\""),
            None => format!("plan #{}", index + 1),
        };
        let plan = Plan::from_draft(&draft).map_err(|e| {
            let span = spans.span_of(&e.field).unwrap_or_else(|| raw.span());
            ctx.error(&span, format!("{label} {}", e.field), e.message)
        })?;
        if plans.iter().any(|p| p.id == plan.id) {
            let span = spans.span_of("id").unwrap_or_else(|| raw.span());
            return Err(ctx.error(&span, format!("{label} id"), "another plan in this file has the same id"));
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Every `[[addon]]` of a file, checked field by field; each add-on's
/// plans must be in `known` (the file's plans, and the catalog's when
/// uploading), in the add-on's currency.
fn addons(ctx: &Ctx, raw_addons: &[S<RawAddon>], known: Option<CurrencyOf>, looked_in: &str) -> Result<Vec<Addon>, FileError> {
    let mut addons: Vec<Addon> = Vec::with_capacity(raw_addons.len());
    for (index, raw) in raw_addons.iter().enumerate() {
        let a = raw.get_ref();
        let mut s = Spans { fields: Vec::new() };
        let draft = AddonDraft {
            id: s.take("id", &a.id),
            name: s.take("name", &a.name),
            currency: s.take("currency", &a.currency),
            price: s.take("price", &a.price),
            data: s.take("data", &a.data),
            kind: s.take("kind", &a.kind),
            expires: s.take("expires", &a.expires),
            plans: s.take("plans", &a.plans),
        };
        let label = match &draft.id {
            Some(id) => format!("addon \"{id}\""),
            None => format!("addon #{}", index + 1),
        };
        let fail = |field: &str, message: String| ctx.error(&s.span_of(field).unwrap_or_else(|| raw.span()), format!("{label} {field}"), message);
        let addon = Addon::from_draft(&draft).map_err(|e| fail(&e.field, e.message))?;
        if addons.iter().any(|other| other.id == addon.id) {
            return Err(fail("id", "another add-on in this file has the same id".into()));
        }
        for plan in addon.plans.iter().filter(|_| known.is_some()) {
            match known.and_then(|known| known(plan)) {
                None => return Err(fail("plans", format!("names plan \"{plan}\", which is {looked_in}"))),
                Some(currency) if currency != addon.currency => {
                    return Err(fail("currency", format!("is {}, and plan \"{plan}\" is priced in {}: an add-on is sold in its plans' currency", addon.currency.code(), currency.code())));
                }
                Some(_) => {}
            }
        }
        addons.push(addon);
    }
    Ok(addons)
}

/// The currency of a plan by its id, where a catalog knows it.
pub type CurrencyOf<'a> = &'a dyn Fn(&str) -> Option<Currency>;

/// A plan document: its plans and add-ons, each with the TOML text it is
/// stored as.
pub struct Document {
    pub plans: Vec<(Plan, String)>,
    pub addons: Vec<(Addon, String)>,
}

/// Reads a plan document of `[[plan]]` and `[[addon]]` tables (at least
/// one), as an upload does: an add-on may also name a plan that `catalog`
/// knows (its currency).
pub fn parse_document(file: &str, text: &str, catalog: Option<CurrencyOf>) -> Result<Document, FileError> {
    let ctx = Ctx { file, text };
    let raw = parse_raw(&ctx)?;
    if raw.plan.len() > MAX_PLANS_PER_DOCUMENT || raw.addon.len() > MAX_PLANS_PER_DOCUMENT {
        let message = format!("{} plans and {} add-ons in one document; at most {MAX_PLANS_PER_DOCUMENT} of each", raw.plan.len(), raw.addon.len());
        return Err(ctx.error(&(0..0), "plan", message));
    }
    if raw.plan.is_empty() && raw.addon.is_empty() {
        return Err(ctx.error(&(0..0), "plan", "the file has no [[plan]] or [[addon]] table"));
    }
    let plans = plans(&ctx, &raw.plan)?;
    let known = |id: &str| plans.iter().find(|p| p.id == id).map(|p| p.currency).or_else(|| catalog.and_then(|catalog| catalog(id)));
    let looked_in = if catalog.is_some() { "in neither this file nor the catalog" } else { "not in this file" };
    let addons = addons(&ctx, &raw.addon, Some(&known), looked_in)?;
    let table: toml::Table = toml::from_str(text).map_err(|e| ctx.error(&(0..0), "plan", e.message().to_string()))?;
    let texts = |key: &str| -> Result<Vec<String>, FileError> {
        let Some(toml::Value::Array(tables)) = table.get(key) else { return Ok(Vec::new()) };
        tables
            .iter()
            .map(|t| {
                let mut one = toml::Table::new();
                one.insert(key.into(), toml::Value::Array(vec![t.clone()]));
                toml::to_string(&one).map_err(|e| ctx.error(&(0..0), key, e.to_string()))
            })
            .collect()
    };
    Ok(Document { plans: plans.into_iter().zip(texts("plan")?).collect(), addons: addons.into_iter().zip(texts("addon")?).collect() })
}

/// Reads a stored add-on's document (checked when it was uploaded; the
/// plans it names are not looked up again).
pub fn parse_stored_addon(file: &str, text: &str) -> Result<Addon, FileError> {
    let ctx = Ctx { file, text };
    let raw = parse_raw(&ctx)?;
    addons(&ctx, &raw.addon, None, "")?.into_iter().next().ok_or_else(|| ctx.error(&(0..0), "addon", "the document has no [[addon]] table"))
}

/// Reads a plan file as `plan check` does: its plans and its add-ons, each
/// add-on's plans in the same file.
pub fn parse_catalog(file: &str, text: &str) -> Result<(Vec<Plan>, Vec<Addon>), FileError> {
    let document = parse_document(file, text, None)?;
    Ok((document.plans.into_iter().map(|(p, _)| p).collect(), document.addons.into_iter().map(|(a, _)| a).collect()))
}

fn parse_raw(ctx: &Ctx) -> Result<RawFile, FileError> {
    toml::from_str::<RawFile>(ctx.text).map_err(|e| ctx.toml_error(&e))
}

/// Reads a file of one or more `[[plan]]` tables.
pub fn parse_plans(file: &str, text: &str) -> Result<Vec<Plan>, FileError> {
    let ctx = Ctx { file, text };
    let raw = parse_raw(&ctx)?;
    if raw.plan.is_empty() {
        return Err(ctx.error(&(0..0), "plan", "the file has no [[plan]] table"));
    }
    plans(&ctx, &raw.plan)
}

/// Most `[[plan]]` tables one plan document may hold.
pub const MAX_PLANS_PER_DOCUMENT: usize = 100;

/// Reads a plan document as [`parse_plans`] does, and gives each plan with
/// its own text: its `[[plan]]` table written out as a document of one plan,
/// which is what the store keeps per plan version (never the whole upload
/// once per plan). A document of more than [`MAX_PLANS_PER_DOCUMENT`] plans
/// is refused before any is checked.
pub fn parse_plan_texts(file: &str, text: &str) -> Result<Vec<(Plan, String)>, FileError> {
    let ctx = Ctx { file, text };
    let raw = parse_raw(&ctx)?;
    if raw.plan.len() > MAX_PLANS_PER_DOCUMENT {
        let message = format!("{} plans in one document; at most {MAX_PLANS_PER_DOCUMENT}", raw.plan.len());
        return Err(ctx.error(&(0..0), "plan", message));
    }
    if raw.plan.is_empty() {
        return Err(ctx.error(&(0..0), "plan", "the file has no [[plan]] table"));
    }
    let plans = plans(&ctx, &raw.plan)?;
    let table: toml::Table = toml::from_str(text).map_err(|e| ctx.error(&(0..0), "plan", e.message().to_string()))?;
    let Some(toml::Value::Array(tables)) = table.get("plan") else {
        return Err(ctx.error(&(0..0), "plan", "the file has no [[plan]] table"));
    };
    let mut out = Vec::with_capacity(plans.len());
    for (plan, table) in plans.into_iter().zip(tables) {
        let mut one = toml::Table::new();
        one.insert("plan".into(), toml::Value::Array(vec![table.clone()]));
        let own = toml::to_string(&one).map_err(|e| ctx.error(&(0..0), "plan", e.to_string()))?;
        out.push((plan, own));
    }
    Ok(out)
}

/// Whether a file is a scenario (it has events) rather than a plan file.
pub fn is_scenario(text: &str) -> bool {
    toml::from_str::<RawFile>(text).is_ok_and(|raw| !raw.event.is_empty() || !raw.expect.is_empty())
}

fn instant(ctx: &Ctx, value: &S<String>, field: &str) -> Result<Instant, FileError> {
    Instant::parse_rfc3339(value.get_ref()).map_err(|e| ctx.error(&value.span(), field, e))
}

fn amount(ctx: &Ctx, value: &S<String>, field: &str) -> Result<Amount, FileError> {
    let text = value.get_ref();
    parse_bytes_with_unit(text)
        .map(|(bytes, unit_bytes)| Amount { bytes, unit_bytes })
        .map_err(|e| ctx.error(&value.span(), field, format!("\"{text}\": {e}")))
}

fn must_be_true(ctx: &Ctx, value: &S<bool>, field: &str) -> Result<(), FileError> {
    if *value.get_ref() { Ok(()) } else { Err(ctx.error(&value.span(), field, "must be true (leave the event out instead)")) }
}

/// Reads and checks a scenario file (section 2 of the contract).
pub fn parse_scenario(file: &str, text: &str) -> Result<Scenario, FileError> {
    let ctx = Ctx { file, text };
    let raw = parse_raw(&ctx)?;
    if raw.plan.is_empty() {
        return Err(ctx.error(&(0..0), "plan", "a scenario needs at least one [[plan]]"));
    }
    if let Some(addon) = raw.addon.first() {
        return Err(ctx.error(&addon.span(), "addon", "a scenario holds plans, events and expects; [[addon]] tables belong in plan documents"));
    }
    let plan_list = plans(&ctx, &raw.plan)?;
    let mut catalog = Catalog::new();
    for plan in plan_list {
        catalog.add(plan);
    }
    let (purchase, purchased_at, events) = events_of(&ctx, &raw.event, &catalog)?;
    let currency = catalog.get(purchase).currency;
    let mut expects = Vec::with_capacity(raw.expect.len());
    for (index, raw_expect) in raw.expect.iter().enumerate() {
        expects.push(expect_of(&ctx, index, raw_expect, purchased_at, currency)?);
    }
    Ok(Scenario {
        title: raw.title.map(|t| t.into_inner()),
        catalog,
        purchase,
        purchased_at,
        events,
        expects,
    })
}

/// The scenario's events in order: the purchase first (its plan and
/// instant), then the engine events, each checked against the ones before.
fn events_of(ctx: &Ctx, raw_events: &[S<RawEvent>], catalog: &Catalog) -> Result<(PlanIx, Instant, Vec<TimedEvent>), FileError> {
    let Some(first) = raw_events.first() else {
        return Err(ctx.error(&(0..0), "event", "a scenario needs events, starting with a purchase"));
    };

    let mut purchase: Option<(PlanIx, Instant)> = None;
    let mut current_plan: Option<PlanIx> = None;
    let mut suspended = false;
    let mut last_at: Option<Instant> = None;
    let mut events = Vec::with_capacity(raw_events.len());
    for (index, raw_event) in raw_events.iter().enumerate() {
        let number = index + 1;
        let label = format!("event #{number}");
        let span = raw_event.span();
        let e: &RawEvent = raw_event.get_ref();
        let at_value = e.at.as_ref().ok_or_else(|| ctx.error(&span, format!("{label} at"), "is required"))?;
        let at = instant(ctx, at_value, &format!("{label} at"))?;
        // Errors about the event as a whole are reported on its `at` line.
        let span = at_value.span();
        if let Some(last) = last_at
            && at < last
        {
            return Err(ctx.error(&at_value.span(), format!("{label} at"), "is earlier than the event before it: events must be in time order"));
        }
        last_at = Some(at);
        let line = ctx.line_of(raw_event.span().start);

        one_action(ctx, &label, &span, e)?;
        if let Some(country) = &e.country
            && e.usage.is_none()
        {
            return Err(ctx.error(&country.span(), format!("{label} country"), "is only for usage events"));
        }
        if index == 0 && e.purchase.is_none() {
            return Err(ctx.error(&span, label, "the first event must be a purchase"));
        }
        if let Some(plan_id) = &e.purchase {
            if index > 0 {
                return Err(ctx.error(&plan_id.span(), format!("{label} purchase"), "a scenario has exactly one purchase, the first event"));
            }
            let ix = catalog.find(plan_id.get_ref()).ok_or_else(|| {
                ctx.error(&plan_id.span(), format!("{label} purchase"), format!("unknown plan \"{}\"", plan_id.get_ref()))
            })?;
            purchase = Some((ix, at));
            current_plan = Some(ix);
            continue;
        }
        let event = event_of(ctx, &label, e, at, catalog, &mut current_plan, &mut suspended)?;
        events.push(TimedEvent { at, line, event });
    }
    let (purchase, purchased_at) = purchase.ok_or_else(|| ctx.error(&first.span(), "event #1", "the first event must be a purchase"))?;
    Ok((purchase, purchased_at, events))
}

/// Refuses an event with no action or with more than one.
fn one_action(ctx: &Ctx, label: &str, span: &std::ops::Range<usize>, e: &RawEvent) -> Result<(), FileError> {
    let present = [
        ("purchase", e.purchase.is_some()),
        ("usage", e.usage.is_some()),
        ("grant", e.grant.is_some()),
        ("install", e.install.is_some()),
        ("first_use", e.first_use.is_some()),
        ("change_plan", e.change_plan.is_some()),
        ("suspend", e.suspend.is_some()),
        ("resume", e.resume.is_some()),
        ("cancel", e.cancel.is_some()),
    ];
    let actions: Vec<&str> = present.iter().filter(|(_, present)| *present).map(|(name, _)| *name).collect();
    match actions.len() {
        0 => Err(ctx.error(span, label, "has no action: give one of purchase, usage, grant, install, first_use, change_plan, suspend, resume, cancel")),
        1 => Ok(()),
        _ => Err(ctx.error(span, label, format!("has more than one action ({}): one per event", actions.join(", ")))),
    }
}

/// The engine event of one scenario event other than the purchase,
/// checking it against the plan the subscription is on and whether it is
/// suspended (both kept up to date here).
fn event_of(ctx: &Ctx, label: &str, e: &RawEvent, at: Instant, catalog: &Catalog, current_plan: &mut Option<PlanIx>, suspended: &mut bool) -> Result<Event, FileError> {
    Ok(if let Some(usage) = &e.usage {
        let bytes = amount(ctx, usage, &format!("{label} usage"))?.bytes;
        let country = match &e.country {
            Some(c) => Some(Country::parse(c.get_ref()).map_err(|m| ctx.error(&c.span(), format!("{label} country"), m))?),
            None => None,
        };
        Event::Usage { bytes, country }
    } else if let Some(grant) = &e.grant {
        grant_of(ctx, label, grant, at)?
    } else if let Some(value) = &e.install {
        must_be_true(ctx, value, &format!("{label} install"))?;
        Event::Install
    } else if let Some(value) = &e.first_use {
        must_be_true(ctx, value, &format!("{label} first_use"))?;
        Event::FirstUse
    } else if let Some(plan_id) = &e.change_plan {
        let ix = catalog.find(plan_id.get_ref()).ok_or_else(|| {
            ctx.error(&plan_id.span(), format!("{label} change_plan"), format!("unknown plan \"{}\"", plan_id.get_ref()))
        })?;
        if Some(ix) == *current_plan {
            return Err(ctx.error(&plan_id.span(), format!("{label} change_plan"), format!("\"{}\" is already the current plan", plan_id.get_ref())));
        }
        *current_plan = Some(ix);
        Event::ChangePlan(ix)
    } else if let Some(value) = &e.suspend {
        must_be_true(ctx, value, &format!("{label} suspend"))?;
        if *suspended {
            return Err(ctx.error(&value.span(), format!("{label} suspend"), "the subscription is already suspended"));
        }
        *suspended = true;
        Event::Suspend
    } else if let Some(value) = &e.resume {
        must_be_true(ctx, value, &format!("{label} resume"))?;
        if !*suspended {
            return Err(ctx.error(&value.span(), format!("{label} resume"), "the subscription is not suspended"));
        }
        *suspended = false;
        Event::Resume
    } else if let Some(value) = &e.cancel {
        must_be_true(ctx, value, &format!("{label} cancel"))?;
        Event::Cancel
    } else {
        unreachable!("one action was found above")
    })
}

/// A grant event: its kind (not one the plan makes), data and expiry.
fn grant_of(ctx: &Ctx, label: &str, grant: &S<RawGrant>, at: Instant) -> Result<Event, FileError> {
    let field = format!("{label} grant");
    let g = grant.get_ref();
    let kind_value = g.kind.as_ref().ok_or_else(|| ctx.error(&grant.span(), format!("{field}.kind"), "is required"))?;
    let kind = Kind::parse(kind_value.get_ref()).map_err(|m| ctx.error(&kind_value.span(), format!("{field}.kind"), m))?;
    if kind.is_reserved() {
        return Err(ctx.error(
            &kind_value.span(),
            format!("{field}.kind"),
            format!("\"{kind}\" is reserved for data the plan itself creates; use e.g. \"gift\", \"addon\" or \"topup\""),
        ));
    }
    let data_value = g.data.as_ref().ok_or_else(|| ctx.error(&grant.span(), format!("{field}.data"), "is required"))?;
    let bytes = amount(ctx, data_value, &format!("{field}.data"))?.bytes;
    if bytes == 0 {
        return Err(ctx.error(&data_value.span(), format!("{field}.data"), "must be more than zero"));
    }
    let expires_value =
        g.expires.as_ref().ok_or_else(|| ctx.error(&grant.span(), format!("{field}.expires"), "is required"))?;
    let expires = match expires_value.get_ref().as_str() {
        "period_end" => GrantExpiry::PeriodEnd,
        "never" => GrantExpiry::Never,
        _ => {
            let expires = Instant::parse_rfc3339(expires_value.get_ref()).map_err(|m| {
                ctx.error(&expires_value.span(), format!("{field}.expires"), format!("{m}, or \"period_end\" or \"never\""))
            })?;
            if expires <= at {
                return Err(ctx.error(&expires_value.span(), format!("{field}.expires"), "must be after the grant's own instant"));
            }
            GrantExpiry::At(expires)
        }
    };
    Ok(Event::Grant { kind, bytes, expires })
}

/// One `[[expect]]`: every field it checks, in the purchased plan's currency.
fn expect_of(ctx: &Ctx, index: usize, raw_expect: &S<RawExpect>, purchased_at: Instant, currency: Currency) -> Result<Expect, FileError> {
    let number = index + 1;
    let label = format!("expect #{number}");
    let span = raw_expect.span();
    let x: &RawExpect = raw_expect.get_ref();
    let at_value = x.at.as_ref().ok_or_else(|| ctx.error(&span, format!("{label} at"), "is required"))?;
    let at = instant(ctx, at_value, &format!("{label} at"))?;
    if at < purchased_at {
        return Err(ctx.error(&at_value.span(), format!("{label} at"), "is before the purchase: there is no subscription yet"));
    }
    let amount_field = |value: &Option<S<String>>, name: &str| -> Result<Option<Amount>, FileError> {
        value.as_ref().map(|v| amount(ctx, v, &format!("{label} {name}"))).transpose()
    };
    let money_field = |value: &Option<S<String>>, name: &str| -> Result<Option<Money>, FileError> {
        value
            .as_ref()
            .map(|v| {
                currency
                    .parse_amount(v.get_ref())
                    .map(|minor| Money { minor, text: v.get_ref().clone() })
                    .map_err(|m| ctx.error(&v.span(), format!("{label} {name}"), m.to_string()))
            })
            .transpose()
    };
    let status = match &x.status {
        None => None,
        Some(v) => Some(Status::parse(v.get_ref()).ok_or_else(|| {
            ctx.error(
                &v.span(),
                format!("{label} status"),
                format!("\"{}\" is not a status: pending, active, throttled, depleted, suspended, expired, lapsed, cancelled", v.get_ref()),
            )
        })?),
    };
    let buckets = x.buckets.as_ref().map(|list| expected_buckets(ctx, &label, list.get_ref())).transpose()?;
    let forfeited = x.forfeited.as_ref().map(|list| expected_forfeits(ctx, &label, list.get_ref())).transpose()?;
    Ok(Expect {
        number,
        line: ctx.line_of(span.start),
        at,
        at_text: at_value.get_ref().clone(),
        status,
        total: amount_field(&x.total, "total")?,
        buckets,
        forfeited,
        charges: money_field(&x.charges, "charges")?,
        fees: money_field(&x.fees, "fees")?,
        throttled: amount_field(&x.throttled, "throttled")?,
        rejected: amount_field(&x.rejected, "rejected")?,
        daily_remaining: amount_field(&x.daily_remaining, "daily_remaining")?,
        expires: x.expires.as_ref().map(|v| instant(ctx, v, &format!("{label} expires"))).transpose()?,
    })
}

fn kind_of(ctx: &Ctx, value: &Option<S<String>>, field: &str) -> Result<Option<Kind>, FileError> {
    value.as_ref().map(|v| Kind::parse(v.get_ref()).map_err(|m| ctx.error(&v.span(), field, m))).transpose()
}

/// An expect's `buckets`: each field optional, matched in any order.
fn expected_buckets(ctx: &Ctx, label: &str, list: &[S<RawBucket>]) -> Result<Vec<ExpectedBucket>, FileError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, b) in list.iter().enumerate() {
        let field = format!("{label} buckets[{i}]");
        let b = b.get_ref();
        out.push(ExpectedBucket {
            kind: kind_of(ctx, &b.kind, &format!("{field}.kind"))?,
            remaining: b.remaining.as_ref().map(|v| amount(ctx, v, &format!("{field}.remaining"))).transpose()?,
            expires: b.expires.as_ref().map(|v| instant(ctx, v, &format!("{field}.expires"))).transpose()?,
        });
    }
    Ok(out)
}

/// An expect's `forfeited`: what was forfeited at its instant.
fn expected_forfeits(ctx: &Ctx, label: &str, list: &[S<RawForfeit>]) -> Result<Vec<ExpectedForfeit>, FileError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let field = format!("{label} forfeited[{i}]");
        let f = f.get_ref();
        let cause = match &f.cause {
            None => None,
            Some(v) => Some(Cause::parse(v.get_ref()).ok_or_else(|| {
                ctx.error(&v.span(), format!("{field}.cause"), format!("\"{}\" is not a cause: expired, cap, plan_change, cancelled", v.get_ref()))
            })?),
        };
        out.push(ExpectedForfeit {
            kind: kind_of(ctx, &f.kind, &format!("{field}.kind"))?,
            data: f.data.as_ref().map(|v| amount(ctx, v, &format!("{field}.data"))).transpose()?,
            cause,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod addon_tests {
    use super::*;

    const PLAN: &str = "[[plan]]\nid = \"p\"\nname = \"P\"\ncurrency = \"USD\"\nprice = \"5.00\"\ntimezone = \"UTC\"\nperiod = { kind = \"monthly\", anchor = \"calendar\" }\nallowance = { data = \"1GiB\" }\n";

    fn addon(fields: &str) -> String {
        format!("{PLAN}\n[[addon]]\nid = \"a\"\nname = \"A\"\n{fields}\n")
    }

    /// Each broken rule of an add-on is named by its field, on its line.
    #[test]
    fn addons_name_the_field_that_breaks_a_rule() {
        let good = "currency = \"USD\"\nprice = \"2.00\"\ndata = \"500MB\"\nexpires = \"30 days\"\nplans = [\"p\"]";
        let (plans, addons) = parse_catalog("f.toml", &addon(good)).unwrap();
        assert_eq!((plans.len(), addons.len()), (1, 1));
        let a = &addons[0];
        assert_eq!((a.price_minor, a.bytes, a.kind.name(), a.expires), (200, 500_000_000, "addon".to_string(), rollover_core::plan::AddonExpiry::After(rollover_core::Length::Exact(30 * 86_400_000_000))));
        let cases = [
            (good.replace("currency = \"USD\"", "currency = \"EUR\""), "addon \"a\" currency", "plan \"p\" is priced in USD"),
            (good.replace("[\"p\"]", "[\"q\"]"), "addon \"a\" plans", "names plan \"q\", which is not in this file"),
            (good.replace("[\"p\"]", "[]"), "addon \"a\" plans", "must name 1 to 100 plans"),
            (good.replace("[\"p\"]", "[\"p\", \"p\"]"), "addon \"a\" plans", "\"p\" is listed twice"),
            (good.replace("500MB", "0MB"), "addon \"a\" data", "must be more than zero"),
            (good.replace("30 days", "3 periods"), "addon \"a\" expires", "use \"period_end\""),
            (good.replace("30 days", "soon"), "addon \"a\" expires", "or \"period_end\" or \"never\""),
            (format!("{good}\nkind = \"allowance\""), "addon \"a\" kind", "is reserved"),
            (good.replace("price = \"2.00\"\n", ""), "addon \"a\" price", "is required"),
            (format!("{good}\ncolour = \"red\""), "", "unknown field `colour`"),
        ];
        for (fields, field, words) in cases {
            let error = parse_catalog("f.toml", &addon(&fields)).expect_err(&fields);
            assert!(error.field.starts_with(field) && error.to_string().contains(words), "{fields}: {error} ({})", error.field);
        }
        let error = parse_scenario("s.toml", &addon(good)).unwrap_err();
        assert!(error.to_string().contains("[[addon]] tables belong in plan documents"), "{error}");
    }
}
