//! Bad input: each rule broken once gives exit 2 with a message naming the
//! file, the line and the field, and never a panic.


use crate::common::{rollover, temp_file};

const BASE: &str = r#"title = "Every section, valid"

[[plan]]
id = "base"
name = "Base plan"
currency = "CNY"
price = "58.00"
timezone = "Asia/Shanghai"

[plan.period]
kind = "monthly"
anchor = "calendar"
starts = "purchase"

[plan.allowance]
data = "30GiB"

[plan.rollover]
from = ["allowance"]
expires_after = "1 period"
cap = "20GiB"
max_per_period = "30GiB"
on_plan_change = "forfeit"

[plan.order]
kinds = ["carry", "allowance"]

[plan.daily_cap]
data = "5GiB"
window = "calendar_day"
throttle_kbps = 512

[plan.exhausted]
action = "throttle"
throttle_kbps = 128

[plan.coverage]
countries = ["CN", "HK"]

[[plan]]
id = "other"
name = "Other plan"
currency = "CNY"
price = "38.00"
timezone = "Asia/Shanghai"
period = { kind = "days", days = 30 }
allowance = { data = "20GiB" }

[[event]]
at = "2026-01-01T00:00:00+08:00"
purchase = "base"

[[event]]
at = "2026-01-02T00:00:00+08:00"
usage = "1GiB"
country = "CN"

[[event]]
at = "2026-01-03T00:00:00+08:00"
grant = { kind = "gift", data = "1GiB", expires = "2026-02-01T00:00:00+08:00" }

[[event]]
at = "2026-01-04T00:00:00+08:00"
change_plan = "other"

[[event]]
at = "2026-01-05T00:00:00+08:00"
suspend = true

[[event]]
at = "2026-01-06T00:00:00+08:00"
resume = true

[[expect]]
at = "2026-01-06T00:00:00+08:00"
status = "active"
total = "30GiB"
charges = "0.00"
forfeited = []
"#;

/// Replaces `find` (which must occur) with `replace` in the base scenario and
/// checks that `simulate` and `plan check` exit 2 with
/// `FILE:LINE: FIELD...: ...`, where LINE is the first line holding
/// `line_of` in the changed text.
#[track_caller]
fn check(find: &str, replace: &str, line_of: &str, field: &str) {
    assert!(BASE.contains(find), "the base scenario contains {find:?}");
    let text = BASE.replacen(find, replace, 1);
    let line = text.lines().position(|l| l.contains(line_of)).unwrap_or_else(|| panic!("{line_of:?} is in the changed text")) + 1;
    let path = temp_file("bad.toml", &text);
    let path = path.to_str().unwrap();
    for command in [&["simulate", path][..], &["plan", "check", path][..]] {
        let out = rollover(command);
        assert_eq!(out.code, 2, "{command:?} with {replace:?}: stdout {} stderr {}", out.stdout, out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let prefix = format!("{path}:{line}: ");
        assert!(out.stderr.starts_with(&prefix), "{replace:?}: expected {prefix:?}, got {:?}", out.stderr);
        assert!(out.stderr.contains(field), "{replace:?}: expected the field {field:?} in {:?}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one clear line: {:?}", out.stderr);
    }
}

#[test]
fn the_base_scenario_is_valid() {
    let path = temp_file("base.toml", BASE);
    let out = rollover(&["simulate", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn plan_fields_each_broken_once() {
    check(r#"id = "base""#, r#"id = "Base_Plan""#, "Base_Plan", r#"plan "Base_Plan" id"#);
    check(r#"id = "other""#, r#"id = "base"  "#, r#"id = "base"  "#, "plan \"base\" id: another plan in this file has the same id");
    check(r#"name = "Base plan""#, r#"name = " ""#, r#"name = " ""#, "name: must not be empty");
    check(r#"currency = "CNY""#, r#"currency = "RMB""#, "RMB", "currency: unknown currency \"RMB\"");
    check(r#"price = "58.00""#, r#"price = "58.001""#, "58.001", "price");
    check(r#"price = "58.00""#, r#"price = "-1.00""#, "-1.00", "price");
    check(r#"timezone = "Asia/Shanghai""#, r#"timezone = "Asia/Beijing""#, "Asia/Beijing", "timezone: unknown time zone");
    check(r#"kind = "monthly""#, r#"kind = "weekly""#, "weekly", "period.kind");
    check(r#"kind = "monthly""#, r#"kind = "days""#, r#"anchor = "calendar""#, "period.anchor");
    check(r#"starts = "purchase""#, "starts = \"purchase\"\ndays = 30", "days = 30", "period.days");
    check(r#"starts = "purchase""#, "starts = \"purchase\"\nlength = \"7 days\"", "length =", "period.length");
    check(r#"starts = "purchase""#, r#"starts = "activation""#, "activation", "period.starts");
    check(r#"starts = "purchase""#, "starts = \"install\"\nactivate_within = \"soon\"", "soon", "period.activate_within");
    check(r#"anchor = "calendar""#, "anchor = \"start\"\nproration = \"daily\"", "proration", "period.proration");
    check(r#"period = { kind = "days", days = 30 }"#, r#"period = { kind = "days", days = 0 }"#, "days = 0", "period.days");
    check(r#"period = { kind = "days", days = 30 }"#, r#"period = { kind = "once" }"#, r#"kind = "once""#, "period.length: is required");
    check(r#"period = { kind = "days", days = 30 }"#, r#"period = { kind = "once", length = "1 month" }"#, "1 month", "period.length");
    check(r#"data = "30GiB""#, r#"data = "30gb""#, "30gb", "allowance.data: \"30gb\": unknown unit");
    check(r#"data = "30GiB""#, r#"data = "0GiB""#, "0GiB", "allowance.data: must be more than zero");
    check(r#"data = "30GiB""#, r#"data = "99999999TiB""#, "99999999TiB", "allowance.data");
    check(r#"from = ["allowance"]"#, "from = []", "from = []", "rollover.from");
    check(r#"from = ["allowance"]"#, r#"from = ["Allowance"]"#, "Allowance", "rollover.from");
    check(r#"expires_after = "1 period""#, r#"expires_after = "3 days""#, "3 days", "rollover.expires_after");
    check(r#"cap = "20GiB""#, r#"cap = "-20GiB""#, "-20GiB", "rollover.cap");
    check(r#"max_per_period = "30GiB""#, r#"max_per_period = "30""#, r#"max_per_period = "30""#, "rollover.max_per_period");
    check(r#"on_plan_change = "forfeit""#, r#"on_plan_change = "lose""#, "lose", "rollover.on_plan_change");
    check(r#"kinds = ["carry", "allowance"]"#, r#"kinds = ["carry", "allowance", "carry"]"#, "kinds = [", "order.kinds: \"carry\" is listed twice");
    check(r#"window = "calendar_day""#, r#"window = "daily""#, "daily\"", "daily_cap.window");
    check("data = \"5GiB\"\n", "", "[plan.daily_cap]", "daily_cap.data: is required");
    check("throttle_kbps = 512", "throttle_kbps = -5", "-5", "daily_cap.throttle_kbps");
    check(r#"action = "throttle""#, r#"action = "slow""#, "slow", "exhausted.action");
    check("action = \"throttle\"\nthrottle_kbps = 128", "action = \"throttle\"", "[plan.exhausted]", "exhausted.throttle_kbps: is required");
    check("action = \"throttle\"\nthrottle_kbps = 128", "action = \"extra_blocks\"\nprice = \"10.00\"", "[plan.exhausted]", "exhausted.block: is required");
    check("action = \"throttle\"\nthrottle_kbps = 128", "action = \"pay_as_you_go\"\nunit = \"1MiB\"", "[plan.exhausted]", "exhausted.price: is required");
    check("action = \"throttle\"\nthrottle_kbps = 128", "action = \"pay_as_you_go\"\nprice = \"1.00\"", "[plan.exhausted]", "exhausted.unit: is required");
    check("throttle_kbps = 128", "throttle_kbps = 128\nblock = \"1GiB\"", "block =", "exhausted.block: is only for action = \"extra_blocks\"");
    check(r#"countries = ["CN", "HK"]"#, r#"countries = ["CN", "XX"]"#, "XX", "coverage.countries");
    check(r#"countries = ["CN", "HK"]"#, r#"countries = ["CN", "CN"]"#, "countries", "coverage.countries: \"CN\" is listed twice");
}

#[test]
fn toml_shape_errors_name_the_field() {
    check(r#"price = "58.00""#, "price = 58.00", "price = 58.00", "price: invalid type");
    check(r#"kind = "monthly""#, "kind = \"monthly\"\nlenght = \"7 days\"", "lenght", "unknown field `lenght`");
    check(r#"name = "Base plan""#, r#"name = "Base plan"#, "name = \"Base plan", "");
    check("throttle_kbps = 512", "throttle_kbps = \"512\"", "\"512\"", "throttle_kbps: invalid type");
}

#[test]
fn events_each_broken_once() {
    let purchase = "at = \"2026-01-01T00:00:00+08:00\"\npurchase = \"base\"";
    check(purchase, "at = \"2026-01-01T00:00:00+08:00\"\nusage = \"2GiB\"", "2026-01-01T00:00:00+08:00", "event #1: the first event must be a purchase");
    check(purchase, "at = \"2026-01-01T00:00:00+08:00\"\npurchase = \"nope\"", "nope", "event #1 purchase: unknown plan \"nope\"");
    check(purchase, "at = \"2026-01-01T00:00:00\"\npurchase = \"base\"", "2026-01-01T00:00:00\"", "event #1 at");
    check(r#"change_plan = "other""#, r#"purchase = "other""#, r#"purchase = "other""#, "event #4 purchase: a scenario has exactly one purchase");
    check(r#"at = "2026-01-03T00:00:00+08:00""#, r#"at = "2025-12-31T00:00:00+08:00""#, "2025-12-31", "event #3 at: is earlier than the event before it");
    check(r#"change_plan = "other""#, r#"change_plan = "gone""#, "gone", "event #4 change_plan: unknown plan \"gone\"");
    check(r#"change_plan = "other""#, r#"change_plan = "base""#, r#"change_plan = "base""#, "event #4 change_plan: \"base\" is already the current plan");
    check(r#"kind = "gift""#, r#"kind = "carry""#, r#"kind = "carry""#, "event #3 grant.kind: \"carry\" is reserved");
    check(r#"expires = "2026-02-01T00:00:00+08:00""#, r#"expires = "2026-01-02T00:00:00+08:00""#, "grant =", "event #3 grant.expires: must be after");
    check(r#"usage = "1GiB""#, "usage = \"1GiB\"\ncancel = true", "2026-01-02T00:00:00+08:00", "event #2: has more than one action (usage, cancel)");
    check(r#"usage = "1GiB""#, r#"usage = "1 gigabyte""#, "1 gigabyte", "event #2 usage");
    check(r#"country = "CN""#, r#"country = "China""#, "China", "event #2 country");
    check(r#"change_plan = "other""#, "change_plan = \"other\"\ncountry = \"HK\"", "country = \"HK\"", "event #4 country: is only for usage events");
    check("suspend = true", "suspend = false", "suspend = false", "event #5 suspend: must be true");
    check("suspend = true", r#"cancel = true"#, "resume = true", "event #6 resume: the subscription is not suspended");
    check("suspend = true", "", "at = \"2026-01-05", "event #5: has no action");
}

#[test]
fn expects_each_broken_once() {
    check(r#"status = "active""#, r#"status = "running""#, "running", "expect #1 status: \"running\" is not a status");
    check(r#"charges = "0.00""#, r#"charges = "0.001""#, "0.001", "expect #1 charges");
    check("forfeited = []", r#"forfeited = [{ kind = "gift", data = "1GiB", cause = "lost" }]"#, "lost", "expect #1 forfeited[0].cause");
    check(r#"total = "30GiB""#, r#"total = "30 GiBs""#, "30 GiBs", "expect #1 total");
    check(r#"at = "2026-01-06T00:00:00+08:00"
status"#, "at = \"2025-01-06T00:00:00+08:00\"\nstatus", "2025-01-06", "expect #1 at: is before the purchase");
    check(r#"status = "active""#, r#"status = "active"
colour = "green""#, "colour", "unknown field `colour`");
}

#[test]
fn unknown_plan_in_plan_file() {
    let path = temp_file("plans.toml", "title = \"no plans\"\n");
    let out = rollover(&["plan", "check", path.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("plan: the file has no [[plan]] or [[addon]] table"), "{}", out.stderr);
}
