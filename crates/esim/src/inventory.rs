//! Profile inventory files: a header `iccid[,profile_type][,imsi][,msisdn]`
//! (the columns in any order, `iccid` required), then a profile a line. A
//! bad line is named with its number and reason and adds nothing.

use std::collections::HashSet;

use crate::ids::Iccid;

/// Most profiles one file may add.
pub const MAX_PROFILES: usize = 100_000;

/// One profile to add to the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    pub iccid: Iccid,
    /// The SM-DP+'s profile type, when the seller keeps several.
    pub profile_type: Option<String>,
    pub imsi: Option<String>,
    pub msisdn: Option<String>,
}

/// A file read: the profiles that may be added, and every bad line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Import {
    pub profiles: Vec<(usize, NewProfile)>,
    /// (line number, reason).
    pub errors: Vec<(usize, String)>,
}

/// Reads an inventory file. An error in the header is the whole file's
/// (`Err`); an error on a line is that line's.
pub fn parse_profiles(text: &str) -> Result<Import, (usize, String)> {
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line.trim_end_matches('\r'))).filter(|(_, line)| !line.trim().is_empty());
    let (header_line, header) = lines.next().ok_or((1, "the file is empty: it needs a header such as iccid,profile_type,imsi,msisdn".to_string()))?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    for column in &columns {
        if !["iccid", "profile_type", "imsi", "msisdn"].contains(column) {
            return Err((header_line, format!("unknown column {column:?}: use iccid, profile_type, imsi, msisdn")));
        }
        if columns.iter().filter(|c| *c == column).count() > 1 {
            return Err((header_line, format!("column {column:?} twice")));
        }
    }
    let position = |name: &str| columns.iter().position(|c| *c == name);
    let Some(iccid_at) = position("iccid") else { return Err((header_line, "the header has no iccid column".into())) };
    let mut import = Import::default();
    let mut seen = HashSet::new();
    for (number, line) in lines {
        if import.profiles.len() + import.errors.len() >= MAX_PROFILES {
            return Err((number, format!("more than {MAX_PROFILES} profiles in one file")));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            import.errors.push((number, format!("{} fields where the header has {}", fields.len(), columns.len())));
            continue;
        }
        let optional = |name: &str| position(name).map(|at| fields[at]).filter(|v| !v.is_empty()).map(str::to_string);
        let profile = Iccid::parse(fields[iccid_at]).map_err(|e| format!("ICCID {:?} {e}", fields[iccid_at])).and_then(|iccid| {
            let profile = NewProfile { iccid, profile_type: optional("profile_type"), imsi: optional("imsi"), msisdn: optional("msisdn") };
            check_optional(&profile).map(|()| profile)
        });
        match profile {
            Ok(profile) if !seen.insert(profile.iccid.clone()) => import.errors.push((number, format!("ICCID {} is in the file twice", profile.iccid))),
            Ok(profile) => import.profiles.push((number, profile)),
            Err(reason) => import.errors.push((number, reason)),
        }
    }
    Ok(import)
}

fn check_optional(profile: &NewProfile) -> Result<(), String> {
    if let Some(kind) = &profile.profile_type
        && (kind.len() > 64 || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    {
        return Err(format!("profile_type {kind:?}: use 1 to 64 letters, digits, '-', '_' and '.'"));
    }
    if let Some(imsi) = &profile.imsi
        && !((6..=15).contains(&imsi.len()) && imsi.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("IMSI {imsi:?}: 6 to 15 digits"));
    }
    if let Some(msisdn) = &profile.msisdn
        && !((5..=15).contains(&msisdn.len()) && msisdn.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("MSISDN {msisdn:?}: 5 to 15 digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_line_is_named_and_the_rest_kept() {
        let text = "iccid,profile_type,imsi\n\
                    89445000000000000019,travel,460001234567890\n\
                    89445000000000000018,travel,\n\
                    8944500000000000006F,,\n\
                    89445000000000000019,travel,\n\
                    89445000000000000027,bad type,\n\
                    89445000000000000035,travel,12ab\n\
                    89445000000000000043\n";
        let import = parse_profiles(text).unwrap();
        let lines: Vec<usize> = import.profiles.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(import.profiles[1].1.iccid.as_str(), "8944500000000000006");
        let errors: Vec<(usize, &str)> = import.errors.iter().map(|(line, reason)| (*line, reason.as_str())).collect();
        assert_eq!(errors[0], (3, "ICCID \"89445000000000000018\" fails its Luhn check: the last digit would be 9"));
        assert_eq!(errors[1], (5, "ICCID 89445000000000000019 is in the file twice"));
        assert!(errors[2].1.starts_with("profile_type \"bad type\""), "{errors:?}");
        assert!(errors[3].1.starts_with("IMSI \"12ab\""), "{errors:?}");
        assert_eq!(errors[4], (8, "1 fields where the header has 3"));
        assert!(parse_profiles("imsi\n1\n").unwrap_err().1.contains("no iccid column"));
        assert!(parse_profiles("iccid,color\n").unwrap_err().1.contains("unknown column \"color\""));
        assert!(parse_profiles("").is_err());
    }
}
