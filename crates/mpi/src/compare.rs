//! Comparisons: for each field, how closely two standardised records agree, as a graded level
//! (0 = disagree, the highest = exact) or [`MISSING`] when either side lacks the value.

use serde::{Deserialize, Serialize};
use strsim::{jaro_winkler, osa_distance};

use crate::standardise::{nickname_pair, Standardised};

/// The level of a comparison where either value is missing: it counts neither for nor against a match.
pub const MISSING: u8 = u8::MAX;

/// A compared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    Given,
    Family,
    Birth,
    Sex,
    HouseNumber,
    Street,
    Address2,
    City,
    State,
    Postcode,
    Phone,
    Email,
    Identifier,
    /// Postcode and city together: they are not independent (a postcode lies in one city), so counting
    /// them as two agreements would count one fact twice.
    Locality,
}

impl Field {
    /// The fields compared by default: every field, with postcode and city as one [`Field::Locality`] and
    /// without the state (which the postcode implies).
    pub const DEFAULT: [Field; 11] = [
        Field::Given,
        Field::Family,
        Field::Birth,
        Field::Sex,
        Field::HouseNumber,
        Field::Street,
        Field::Address2,
        Field::Locality,
        Field::Phone,
        Field::Email,
        Field::Identifier,
    ];

    /// Every field, in a fixed order.
    pub const ALL: [Field; 14] = [
        Field::Given,
        Field::Family,
        Field::Birth,
        Field::Sex,
        Field::HouseNumber,
        Field::Street,
        Field::Address2,
        Field::City,
        Field::State,
        Field::Postcode,
        Field::Phone,
        Field::Email,
        Field::Identifier,
        Field::Locality,
    ];

    /// What each level means, from 0 (disagree) to exact.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::Given | Field::Family => &[
                "different",
                "Jaro-Winkler >= 0.80",
                "Double Metaphone equal or Jaro-Winkler >= 0.90",
                "nickname pair or one edit",
                "exact",
            ],
            Field::Birth => &[
                "different",
                "two of year, month and day equal",
                "day and month swapped, one digit wrong or two adjacent digits transposed",
                "exact",
            ],
            Field::Street | Field::Address2 | Field::City => &[
                "different",
                "Jaro-Winkler >= 0.85",
                "Jaro-Winkler >= 0.94",
                "exact",
            ],
            Field::Postcode | Field::Phone | Field::Email => &["different", "one edit", "exact"],
            Field::Identifier => &["different", "two edits", "one edit", "exact"],
            Field::Locality => &[
                "different",
                "postcode one edit or city Jaro-Winkler >= 0.85",
                "city exact",
                "postcode exact",
                "postcode and city exact",
            ],
            Field::Sex | Field::HouseNumber | Field::State => &["different", "exact"],
        }
    }

    /// The level at which `a` and `b` agree on this field, or [`MISSING`].
    pub fn compare(self, a: &Standardised, b: &Standardised) -> u8 {
        match self {
            Field::Given => given(a, b).max(swapped_names(a, b).0),
            Field::Family => name(&a.family, &b.family, &a.family_phonetic, &b.family_phonetic)
                .max(swapped_names(a, b).1),
            Field::Birth => birth(&a.birth, &b.birth),
            Field::Sex => exact(&a.sex, &b.sex),
            Field::HouseNumber => exact(&a.house_number, &b.house_number),
            Field::Street => text(&a.street, &b.street),
            Field::Address2 => text(&a.address2, &b.address2),
            Field::City => text(&a.city, &b.city),
            Field::State => exact(&a.state, &b.state),
            Field::Postcode => edits(&a.postcode, &b.postcode),
            Field::Phone => edits(&a.phone, &b.phone),
            Field::Email => edits(&a.email, &b.email),
            Field::Identifier => identifier(a, b),
            Field::Locality => locality(a, b),
        }
    }
}

/// `exact` (1), `different` (0) or [`MISSING`].
pub fn exact(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        MISSING
    } else {
        u8::from(a == b)
    }
}

/// Names: exact (4), one edit (3), Double Metaphone equal or Jaro-Winkler ≥ 0.90 (2), Jaro-Winkler ≥ 0.80 (1).
pub fn name(a: &str, b: &str, a_phonetic: &str, b_phonetic: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 4;
    }
    if within_one_edit(a, b) {
        return 3;
    }
    let jw = jaro_winkler(a, b);
    if (!a_phonetic.is_empty() && a_phonetic == b_phonetic) || jw >= 0.90 {
        2
    } else if jw >= 0.80 {
        1
    } else {
        0
    }
}

fn given(a: &Standardised, b: &Standardised) -> u8 {
    let level = name(&a.given, &b.given, &a.given_phonetic, &b.given_phonetic);
    if level != MISSING
        && level < 3
        && (a.given_formal == b.given_formal || nickname_pair(&a.given, &b.given))
    {
        return 3;
    }
    level
}

/// Given and family name swapped (a common data-entry error): the levels of `a`'s given name against `b`'s
/// family name and of `a`'s family name against `b`'s given name when both are at least one edit apart, else 0.
/// With a name missing on either side there is no swap to see (0): the straight comparison decides.
pub fn swapped_names(a: &Standardised, b: &Standardised) -> (u8, u8) {
    if a.given.is_empty()
        || a.family.is_empty()
        || b.given.is_empty()
        || b.family.is_empty()
        || a.given == b.given
    {
        return (0, 0);
    }
    let crossed = |x: &str, y: &str| match x == y {
        true => 4,
        false if within_one_edit(x, y) => 3,
        false => 0,
    };
    match (crossed(&a.given, &b.family), crossed(&a.family, &b.given)) {
        (0, _) | (_, 0) => (0, 0),
        levels => levels,
    }
}

/// Birth dates as `YYYYMMDD`: exact (3); day and month swapped, one digit wrong or two adjacent digits
/// transposed (2); two of year, month and day equal (1).
pub fn birth(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 3;
    }
    if a.len() != 8 || b.len() != 8 {
        return 0;
    }
    let (ay, am, ad) = (&a[..4], &a[4..6], &a[6..]);
    let (by, bm, bd) = (&b[..4], &b[4..6], &b[6..]);
    let swapped = ay == by && am == bd && ad == bm;
    let one_digit = a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count() == 1;
    if swapped || one_digit || within_one_edit(a, b) {
        return 2;
    }
    if usize::from(ay == by) + usize::from(am == bm) + usize::from(ad == bd) >= 2 {
        return 1;
    }
    0
}

/// Free text (street, city): exact (3), Jaro-Winkler ≥ 0.94 (2), ≥ 0.85 (1).
pub fn text(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 3;
    }
    let jw = jaro_winkler(a, b);
    if jw >= 0.94 {
        2
    } else if jw >= 0.85 {
        1
    } else {
        0
    }
}

/// Codes (postcode, phone, email): exact (2), one edit (1).
pub fn edits(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 2;
    }
    u8::from(within_one_edit(a, b))
}

/// Whether `a` becomes `b` by at most one insertion, deletion, substitution or transposition of two adjacent
/// characters (Damerau-Levenshtein distance ≤ 1), without computing the distance.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (
        &a[..a.len() - suffix.min(a.len())],
        &b[..b.len() - suffix.min(b.len())],
    );
    match (a.len(), b.len()) {
        (0, 0) | (0, 1) | (1, 0) | (1, 1) => true,
        (2, 2) => a[0] == b[1] && a[1] == b[0],
        _ => false,
    }
}

/// Postcode and city together: both exact (4), postcode exact (3), city exact (2), postcode one edit or
/// city Jaro-Winkler ≥ 0.85 (1); [`MISSING`] when neither postcode nor city can be compared.
pub fn locality(a: &Standardised, b: &Standardised) -> u8 {
    let postcode = edits(&a.postcode, &b.postcode);
    let city = text(&a.city, &b.city);
    match (postcode, city) {
        (MISSING, MISSING) => MISSING,
        (2, 3) => 4,
        (2, _) => 3,
        (_, 3) => 2,
        (1, _) | (_, 1 | 2) => 1,
        _ => 0,
    }
}

/// Identifiers of the same system: exact (3), one edit (2), two edits (1; optimal string alignment distance); the best over all common systems.
/// Records without a system in common are [`MISSING`].
pub fn identifier(a: &Standardised, b: &Standardised) -> u8 {
    let mut best = MISSING;
    for (sa, va) in &a.identifiers {
        for (sb, vb) in &b.identifiers {
            if sa != sb {
                continue;
            }
            let level = match osa_distance(va, vb) {
                0 => 3,
                1 => 2,
                2 => 1,
                _ => 0,
            };
            if best == MISSING || level > best {
                best = level;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Identifier, Record};
    use crate::standardise::{phonetic, standardise};

    fn names(a: &str, b: &str) -> u8 {
        name(a, b, &phonetic(a), &phonetic(b))
    }

    #[test]
    fn grades_names() {
        for (a, b, level) in [
            ("smith", "smith", 4),
            ("smith", "smtih", 3),
            ("smith", "smyth", 3),
            ("catherine", "kathryn", 2),
            ("johnson", "johnsen", 3),
            ("martinez", "martin", 2),
            ("smith", "jones", 0),
            ("", "jones", MISSING),
        ] {
            assert_eq!(names(a, b), level, "{a} {b}");
        }
    }

    #[test]
    fn grades_given_names_with_nicknames() {
        let rec = |g: &str| {
            standardise(&Record {
                given_names: vec![g.into()],
                ..Record::default()
            })
        };
        assert_eq!(Field::Given.compare(&rec("Bill"), &rec("William")), 3);
        assert_eq!(Field::Given.compare(&rec("Peggy"), &rec("Margaret")), 3);
        assert_eq!(Field::Given.compare(&rec("Mary"), &rec("Robert")), 0);
        assert_eq!(Field::Given.compare(&rec(""), &rec("Robert")), MISSING);
    }

    #[test]
    fn sees_given_and_family_names_swapped() {
        let rec = |g: &str, f: &str| {
            standardise(&Record {
                given_names: vec![g.into()],
                family_name: f.into(),
                ..Record::default()
            })
        };
        let (a, b) = (rec("Thomas", "Bruhn"), rec("Bruhn", "Thomas"));
        assert_eq!(
            (Field::Given.compare(&a, &b), Field::Family.compare(&a, &b)),
            (4, 4)
        );
        let c = rec("Isabela", "Ctercteko");
        assert_eq!(swapped_names(&rec("Ctercteko", "Isabella"), &c), (4, 3));
        assert_eq!(swapped_names(&a, &rec("Bruhn", "Jones")), (0, 0));
    }

    #[test]
    fn grades_birth_dates() {
        for (a, b, level) in [
            ("19720314", "19720314", 3),
            ("19720304", "19720403", 2),
            ("19720314", "19720315", 2),
            ("19720314", "19720341", 2),
            ("19720314", "19270314", 2),
            ("19720314", "19720322", 1),
            ("19720314", "19801122", 0),
            ("19720314", "", MISSING),
        ] {
            assert_eq!(birth(a, b), level, "{a} {b}");
        }
    }

    #[test]
    fn grades_text_codes_and_exact_fields() {
        assert_eq!(text("main st", "main st"), 3);
        assert_eq!(text("pinkerton circuit", "pinkertn circuit"), 2);
        assert_eq!(text("main st", "elm ave"), 0);
        assert_eq!(edits("2119", "2119"), 2);
        assert_eq!(edits("2119", "2191"), 1);
        assert_eq!(edits("2119", "3000"), 0);
        assert_eq!(exact("m", "f"), 0);
        assert_eq!(exact("m", ""), MISSING);
    }

    #[test]
    fn grades_postcode_and_city_together() {
        let rec = |postcode: &str, city: &str| {
            standardise(&Record {
                postcode: postcode.into(),
                city: city.into(),
                ..Record::default()
            })
        };
        let a = rec("2119", "cleveland");
        for (b, level) in [
            (rec("2119", "Cleveland"), 4),
            (rec("2119", "marsden"), 3),
            (rec("3000", "cleveland"), 2),
            (rec("2191", "marsden"), 1),
            (rec("", "clevland"), 1),
            (rec("3000", "marsden"), 0),
            (rec("", ""), MISSING),
        ] {
            assert_eq!(locality(&a, &b), level, "{b:?}");
        }
    }

    #[test]
    fn grades_identifiers_within_a_system() {
        let rec = |ids: &[(&str, &str)]| {
            standardise(&Record {
                identifiers: ids.iter().map(|(s, v)| Identifier::new(*s, *v)).collect(),
                ..Record::default()
            })
        };
        let a = rec(&[("ssn", "123-45-6789"), ("mrn", "A1")]);
        assert_eq!(identifier(&a, &rec(&[("ssn", "123456789")])), 3);
        assert_eq!(identifier(&a, &rec(&[("ssn", "123456788")])), 2);
        assert_eq!(identifier(&a, &rec(&[("ssn", "123456700")])), 1);
        assert_eq!(identifier(&a, &rec(&[("ssn", "987654321")])), 0);
        assert_eq!(identifier(&a, &rec(&[("other", "123456789")])), MISSING);
        assert_eq!(identifier(&a, &rec(&[])), MISSING);
    }

    #[test]
    fn counts_single_edits() {
        for (a, b, within) in [
            ("smith", "smith", true),
            ("smith", "smyth", true),
            ("smith", "smiths", true),
            ("smith", "mith", true),
            ("smith", "smtih", true),
            ("smith", "msith", true),
            ("smith", "smtiy", false),
            ("smith", "smithers", false),
            ("ab", "ba", true),
            ("abc", "cba", false),
            ("", "a", true),
        ] {
            assert_eq!(within_one_edit(a, b), within, "{a} {b}");
            assert_eq!(within, strsim::damerau_levenshtein(a, b) <= 1, "{a} {b}");
        }
    }

    #[test]
    fn every_level_is_named() {
        for field in Field::ALL {
            assert!(field.levels().len() >= 2, "{field:?}");
        }
    }
}
