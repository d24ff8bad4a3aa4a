//! Mobile Country Codes (ITU-T E.212) to ISO 3166-1 alpha-2 countries: which
//! country a roaming subscriber's visited network is in, from the MCC that
//! RADIUS (3GPP-SGSN-MCC-MNC) and Diameter carry.
//!
//! The table follows the ITU list of mobile country or geographical area
//! codes. Where one MCC covers several ISO codes, the principal one is used
//! and the others are named in a comment. Codes that name no country (001
//! test, 901 international networks, 902, 991, 999 internal) are absent and
//! give None, as do unassigned codes.

/// MCC to ISO 3166-1 alpha-2, sorted by MCC, one entry per MCC.
const TABLE: &[(u16, &str)] = &[
    // Zone 2: Europe
    (202, "GR"),
    (204, "NL"),
    (206, "BE"),
    (208, "FR"),
    (212, "MC"),
    (213, "AD"),
    (214, "ES"),
    (216, "HU"),
    (218, "BA"),
    (219, "HR"),
    (220, "RS"),
    (221, "XK"), // Kosovo; XK is user-assigned, not official ISO 3166-1
    (222, "IT"),
    (225, "VA"),
    (226, "RO"),
    (228, "CH"),
    (230, "CZ"),
    (231, "SK"),
    (232, "AT"),
    (234, "GB"), // also Guernsey GG, Isle of Man IM, Jersey JE
    (235, "GB"),
    (238, "DK"),
    (240, "SE"),
    (242, "NO"),
    (244, "FI"),
    (246, "LT"),
    (247, "LV"),
    (248, "EE"),
    (250, "RU"),
    (255, "UA"),
    (257, "BY"),
    (259, "MD"),
    (260, "PL"),
    (262, "DE"),
    (266, "GI"),
    (268, "PT"),
    (270, "LU"),
    (272, "IE"),
    (274, "IS"),
    (276, "AL"),
    (278, "MT"),
    (280, "CY"),
    (282, "GE"),
    (283, "AM"),
    (284, "BG"),
    (286, "TR"),
    (288, "FO"),
    // 289 (Abkhazia) is in use but not in the ITU list; left out.
    (290, "GL"),
    (292, "SM"),
    (293, "SI"),
    (294, "MK"),
    (295, "LI"),
    (297, "ME"),
    // Zone 3: North America and the Caribbean
    (302, "CA"),
    (308, "PM"),
    (310, "US"), // also Guam GU, Northern Mariana Islands MP
    (311, "US"), // also Guam GU
    (312, "US"),
    (313, "US"),
    (314, "US"),
    (315, "US"),
    (316, "US"),
    (330, "PR"),
    (332, "VI"),
    (334, "MX"),
    (338, "JM"),
    (340, "GP"), // French Antilles: also Martinique MQ, St Barthelemy BL, St Martin MF
    (342, "BB"),
    (344, "AG"),
    (346, "KY"),
    (348, "VG"),
    (350, "BM"),
    (352, "GD"),
    (354, "MS"),
    (356, "KN"),
    (358, "LC"),
    (360, "VC"),
    (362, "CW"), // former Netherlands Antilles: also Sint Maarten SX, Bonaire etc. BQ
    (363, "AW"),
    (364, "BS"),
    (365, "AI"),
    (366, "DM"),
    (368, "CU"),
    (370, "DO"),
    (372, "HT"),
    (374, "TT"),
    (376, "TC"),
    // Zone 4: Asia and the Middle East
    (400, "AZ"),
    (401, "KZ"),
    (402, "BT"),
    (404, "IN"),
    (405, "IN"),
    (406, "IN"),
    (410, "PK"),
    (412, "AF"),
    (413, "LK"),
    (414, "MM"),
    (415, "LB"),
    (416, "JO"),
    (417, "SY"),
    (418, "IQ"),
    (419, "KW"),
    (420, "SA"),
    (421, "YE"),
    (422, "OM"),
    (424, "AE"),
    (425, "IL"), // also Palestine PS
    (426, "BH"),
    (427, "QA"),
    (428, "MN"),
    (429, "NP"),
    (430, "AE"), // Abu Dhabi
    (431, "AE"), // Dubai
    (432, "IR"),
    (434, "UZ"),
    (436, "TJ"),
    (437, "KG"),
    (438, "TM"),
    (440, "JP"),
    (441, "JP"),
    (450, "KR"),
    (452, "VN"),
    (454, "HK"),
    (455, "MO"),
    (456, "KH"),
    (457, "LA"),
    (460, "CN"),
    (461, "CN"),
    (466, "TW"),
    (467, "KP"),
    (470, "BD"),
    (472, "MV"),
    // Zone 5: Oceania and South-East Asia
    (502, "MY"),
    (505, "AU"), // also Norfolk Island NF
    (510, "ID"),
    (514, "TL"),
    (515, "PH"),
    (520, "TH"),
    (525, "SG"),
    (528, "BN"),
    (530, "NZ"),
    // 534 (MP) and 535 (GU) appear in older tables but not in the ITU list.
    (536, "NR"),
    (537, "PG"),
    (539, "TO"),
    (540, "SB"),
    (541, "VU"),
    (542, "FJ"),
    (543, "WF"),
    (544, "AS"),
    (545, "KI"),
    (546, "NC"),
    (547, "PF"),
    (548, "CK"),
    (549, "WS"),
    (550, "FM"),
    (551, "MH"),
    (552, "PW"),
    (553, "TV"),
    (554, "TK"),
    (555, "NU"),
    // Zone 6: Africa
    (602, "EG"),
    (603, "DZ"),
    (604, "MA"),
    (605, "TN"),
    (606, "LY"),
    (607, "GM"),
    (608, "SN"),
    (609, "MR"),
    (610, "ML"),
    (611, "GN"),
    (612, "CI"),
    (613, "BF"),
    (614, "NE"),
    (615, "TG"),
    (616, "BJ"),
    (617, "MU"),
    (618, "LR"),
    (619, "SL"),
    (620, "GH"),
    (621, "NG"),
    (622, "TD"),
    (623, "CF"),
    (624, "CM"),
    (625, "CV"),
    (626, "ST"),
    (627, "GQ"),
    (628, "GA"),
    (629, "CG"),
    (630, "CD"),
    (631, "AO"),
    (632, "GW"),
    (633, "SC"),
    (634, "SD"),
    (635, "RW"),
    (636, "ET"),
    (637, "SO"),
    (638, "DJ"),
    (639, "KE"),
    (640, "TZ"),
    (641, "UG"),
    (642, "BI"),
    (643, "MZ"),
    (645, "ZM"),
    (646, "MG"),
    (647, "RE"), // French Indian Ocean departments: also Mayotte YT
    (648, "ZW"),
    (649, "NA"),
    (650, "MW"),
    (651, "LS"),
    (652, "BW"),
    (653, "SZ"),
    (654, "KM"),
    (655, "ZA"),
    (657, "ER"),
    (658, "SH"), // St Helena, Ascension and Tristan da Cunha
    (659, "SS"),
    // Zone 7: Central and South America
    (702, "BZ"),
    (704, "GT"),
    (706, "SV"),
    (708, "HN"),
    (710, "NI"),
    (712, "CR"),
    (714, "PA"),
    (716, "PE"),
    (722, "AR"),
    (724, "BR"),
    (730, "CL"),
    (732, "CO"),
    (734, "VE"),
    (736, "BO"),
    (738, "GY"),
    (740, "EC"),
    (742, "GF"),
    (744, "PY"),
    (746, "SR"),
    (748, "UY"),
    (750, "FK"),
    // Zone 9: only 995 names a territory; 901, 902, 991 and 999 do not.
    (995, "IO"), // British Indian Ocean Territory (Diego Garcia)
];

/// The country of a Mobile Country Code, or None for codes that name no country (901 international networks, test codes, unassigned).
pub fn country_of_mcc(mcc: u16) -> Option<&'static str> {
    TABLE
        .binary_search_by_key(&mcc, |&(code, _)| code)
        .ok()
        .map(|i| TABLE[i].1)
}

/// The country of an "MCC MNC" string as RADIUS 3GPP-SGSN-MCC-MNC and Diameter carry it: 5 or 6 ASCII digits, MCC first (e.g. "23415", "310260"). None if the text is not 5-6 digits or the MCC names no country.
pub fn country_of_mcc_mnc(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    if !(bytes.len() == 5 || bytes.len() == 6) || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mcc = bytes[..3]
        .iter()
        .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'));
    country_of_mcc(mcc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    #[test]
    fn values_are_two_uppercase_letters() {
        for &(mcc, iso) in TABLE {
            assert!(
                iso.len() == 2 && iso.bytes().all(|b| b.is_ascii_uppercase()),
                "{mcc} -> {iso:?}"
            );
            assert!((200..1000).contains(&mcc), "{mcc}");
        }
    }

    #[test]
    fn table_is_large_enough() {
        assert!(TABLE.len() >= 230, "{}", TABLE.len());
    }

    #[test]
    fn well_known_codes() {
        let cases = [
            (234, "GB"),
            (235, "GB"),
            (310, "US"),
            (316, "US"),
            (460, "CN"),
            (454, "HK"),
            (208, "FR"),
            (262, "DE"),
            (440, "JP"),
            (505, "AU"),
            (724, "BR"),
            (404, "IN"),
            (302, "CA"),
            (655, "ZA"),
        ];
        for (mcc, iso) in cases {
            assert_eq!(country_of_mcc(mcc), Some(iso), "{mcc}");
        }
    }

    #[test]
    fn non_country_codes_give_none() {
        for mcc in [0, 1, 901, 902, 991, 999, 100, 300, 1000, u16::MAX] {
            assert_eq!(country_of_mcc(mcc), None, "{mcc}");
        }
    }

    #[test]
    fn mcc_mnc_strings() {
        assert_eq!(country_of_mcc_mnc("23415"), Some("GB"));
        assert_eq!(country_of_mcc_mnc("310260"), Some("US"));
        assert_eq!(country_of_mcc_mnc("2341"), None);
        assert_eq!(country_of_mcc_mnc("2341567"), None);
        assert_eq!(country_of_mcc_mnc("23a15"), None);
        assert_eq!(country_of_mcc_mnc(""), None);
        assert_eq!(country_of_mcc_mnc("90112"), None);
        assert_eq!(country_of_mcc_mnc("00101"), None);
        assert_eq!(country_of_mcc_mnc("+2341"), None);
        assert_eq!(country_of_mcc_mnc("２３４１５"), None);
    }
}
