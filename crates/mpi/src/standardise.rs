//! Standardisation: turns a [`Record`] into the comparable form every other step works on (ASCII lower case,
//! no punctuation, nicknames resolved, USPS address abbreviations, digits-only phones, dates as `YYYYMMDD`).

use std::collections::HashMap;
use std::sync::OnceLock;

use rphonetic::{DoubleMetaphone, Encoder};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// A record after standardisation. Empty strings mean "missing".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standardised {
    /// The first given name, cleaned.
    pub given: String,
    /// `given` with a nickname replaced by its formal name (`bill` → `william`).
    pub given_formal: String,
    /// Double Metaphone primary code of `given`.
    pub given_phonetic: String,
    /// Middle names, cleaned and joined by a space.
    pub middle: String,
    /// The family name, cleaned, without spaces (`van der berg` → `vanderberg`).
    pub family: String,
    /// Double Metaphone primary code of `family`.
    pub family_phonetic: String,
    /// The birth date as `YYYYMMDD` when it could be read; an eight-digit text that is not a valid date is kept as given.
    pub birth: String,
    /// `m`, `f` or empty.
    pub sex: String,
    /// The leading number of the first address line.
    pub house_number: String,
    /// The rest of the first address line with USPS abbreviations.
    pub street: String,
    /// The other address lines with USPS abbreviations, joined by a space.
    pub address2: String,
    pub city: String,
    pub state: String,
    /// Upper-case letters and digits; a US ZIP+4 is cut to its five digits.
    pub postcode: String,
    /// Digits only; a US number with a leading country code 1 is cut to its ten digits.
    pub phone: String,
    /// Trimmed and lower case.
    pub email: String,
    /// (system, value): the system trimmed and lower case, the value upper-case letters and digits.
    pub identifiers: Vec<(String, String)>,
}

/// Standardises every field of `record`.
pub fn standardise(record: &Record) -> Standardised {
    let mut given_names = record.given_names.iter().flat_map(|g| clean_name_words(g));
    let given = given_names.next().unwrap_or_default();
    let middle: Vec<String> = given_names.collect();
    let family = clean_name_words(&record.family_name).concat();
    let (house_number, street) = split_house_number(&address(
        record
            .address_lines
            .first()
            .map(String::as_str)
            .unwrap_or(""),
    ));
    let address2 = record
        .address_lines
        .iter()
        .skip(1)
        .map(|l| address(l))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>();
    Standardised {
        given_formal: formal_given_name(&given).to_owned(),
        given_phonetic: phonetic(&given),
        middle: middle.join(" "),
        family_phonetic: phonetic(&family),
        family,
        given,
        birth: birth_date(&record.birth_date).unwrap_or_default(),
        sex: sex(&record.sex).to_owned(),
        house_number,
        street,
        address2: address2.join(" "),
        city: clean(&record.city),
        state: clean(&record.state),
        postcode: postcode(&record.postcode),
        phone: phone(&record.phone),
        email: email(&record.email),
        identifiers: record
            .identifiers
            .iter()
            .map(|i| (i.system.trim().to_lowercase(), identifier_value(&i.value)))
            .filter(|(_, v)| !v.is_empty())
            .collect(),
    }
}

/// ASCII lower case, every run of characters other than letters and digits turned into one space, trimmed.
/// Apostrophes are dropped without a space (`O'Brien` → `obrien`).
pub fn clean(text: &str) -> String {
    let ascii = deunicode::deunicode(text);
    let mut out = String::with_capacity(ascii.len());
    let mut space = false;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c.to_ascii_lowercase());
        } else if c != '\'' && c != '`' {
            space = true;
        }
    }
    out
}

fn clean_name_words(text: &str) -> Vec<String> {
    clean(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The Double Metaphone primary code of a cleaned name, or empty.
pub fn phonetic(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    static ENCODER: OnceLock<DoubleMetaphone> = OnceLock::new();
    ENCODER.get_or_init(DoubleMetaphone::default).encode(name)
}

struct Nicknames {
    /// Nickname → the formal names that list it, in table order.
    formals: HashMap<String, Vec<String>>,
    pairs: usize,
}

fn nicknames() -> &'static Nicknames {
    static TABLE: OnceLock<Nicknames> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut formals: HashMap<String, Vec<String>> = HashMap::new();
        let mut pairs = 0;
        for line in include_str!("../data/nicknames.txt").lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((formal, nicks)) = line.split_once(':') else {
                continue;
            };
            for nick in nicks.split_whitespace() {
                formals
                    .entry(nick.to_owned())
                    .or_default()
                    .push(formal.trim().to_owned());
                pairs += 1;
            }
        }
        Nicknames { formals, pairs }
    })
}

/// The formal name for a cleaned given name that is a known nickname (`peggy` → `margaret`), else the name itself.
/// A nickname of several names (`al`) goes to the first the table lists.
pub fn formal_given_name(name: &str) -> &str {
    nicknames()
        .formals
        .get(name)
        .map(|f| f[0].as_str())
        .unwrap_or(name)
}

/// Whether the table lists `a` and `b` as a formal name and one of its nicknames, or as two nicknames of one formal name.
pub fn nickname_pair(a: &str, b: &str) -> bool {
    let table = &nicknames().formals;
    let none: &[String] = &[];
    let fa = table.get(a).map(Vec::as_slice).unwrap_or(none);
    let fb = table.get(b).map(Vec::as_slice).unwrap_or(none);
    fa.iter().any(|f| f == b) || fb.iter().any(|f| f == a) || fa.iter().any(|f| fb.contains(f))
}

/// The number of (formal name, nickname) pairs in the committed table.
pub fn nickname_pair_count() -> usize {
    nicknames().pairs
}

fn usps() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        for line in include_str!("../data/usps.txt").lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((standard, variants)) = line.split_once(':') else {
                continue;
            };
            let standard = standard.trim().to_lowercase();
            for variant in variants.split_whitespace() {
                map.insert(variant.to_lowercase(), standard.clone());
            }
            map.insert(standard.clone(), standard);
        }
        map
    })
}

/// A cleaned address line with each USPS street suffix, directional and unit designator abbreviated
/// (`12 Main Street Apartment 4` → `12 main st apt 4`). `#` before a unit number becomes `apt`.
pub fn address(line: &str) -> String {
    let table = usps();
    let line = line.replace('#', " apt ");
    clean(&line)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| table.get(w).map(String::as_str).unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_house_number(line: &str) -> (String, String) {
    match line.split_once(' ') {
        Some((first, rest)) if first.starts_with(|c: char| c.is_ascii_digit()) => {
            (first.to_owned(), rest.to_owned())
        }
        None if line.starts_with(|c: char| c.is_ascii_digit()) => (line.to_owned(), String::new()),
        _ => (String::new(), line.to_owned()),
    }
}

/// `m`, `f` or empty.
pub fn sex(text: &str) -> &'static str {
    match clean(text).as_str() {
        "m" | "male" | "man" => "m",
        "f" | "female" | "woman" => "f",
        _ => "",
    }
}

/// Upper-case letters and digits; a US ZIP+4 (`12345-6789`, `123456789`) is cut to its five digits.
pub fn postcode(text: &str) -> String {
    let code: String = text
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit()) {
        code[..5].to_owned()
    } else {
        code
    }
}

/// Digits only; an eleven-digit US number with country code 1 becomes its ten digits. Fewer than seven digits is missing.
pub fn phone(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let digits = if digits.len() == 11 && digits.starts_with('1') {
        digits[1..].to_owned()
    } else {
        digits
    };
    if digits.len() < 7 {
        String::new()
    } else {
        digits
    }
}

/// Trimmed and lower case; text without an `@` is missing.
pub fn email(text: &str) -> String {
    let e = text.trim().to_lowercase();
    if e.contains('@') {
        e
    } else {
        String::new()
    }
}

/// Upper-case letters and digits (`123-45-6789` → `123456789`).
pub fn identifier_value(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_name(word: &str) -> Option<u32> {
    if word.len() < 3 || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let word = if word == "sept" { "sep" } else { word };
    MONTHS
        .iter()
        .position(|m| word.starts_with(m))
        .map(|i| i as u32 + 1)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn valid(year: u32, month: u32, day: u32) -> Option<String> {
    ((1800..=2200).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month))
    .then(|| format!("{year:04}{month:02}{day:02}"))
}

/// A birth date as `YYYYMMDD`. Reads `YYYY-MM-DD` (also with `/` or `.`, and a FHIR time part after `T`),
/// `YYYYMMDD`, `MM/DD/YYYY` (US order; `DD/MM/YYYY` when the first number cannot be a month),
/// `DD.MM.YYYY`, `14 March 1972` and `March 14, 1972`. Two-digit years are not read: their century is a guess.
/// An eight-digit text that is not a valid date (a typo in the source) is returned as it is, so that the
/// comparator can still see how close it is.
pub fn birth_date(text: &str) -> Option<String> {
    let text = text.trim();
    let text = match text.find('T') {
        Some(t) if t >= 8 => &text[..t],
        _ => text,
    };
    let lower = text.to_ascii_lowercase();
    let parts: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .collect();
    let num = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    match parts.as_slice() {
        [one] if one.len() == 8 && one.bytes().all(|b| b.is_ascii_digit()) => {
            let (y, m, d) = (num(&one[..4])?, num(&one[4..6])?, num(&one[6..])?);
            Some(valid(y, m, d).unwrap_or_else(|| (*one).to_owned()))
        }
        [a, b, c] => {
            if let (Some(a_n), Some(b_n), Some(c_n)) = (num(a), num(b), num(c)) {
                if a.len() == 4 {
                    return valid(a_n, b_n, c_n);
                }
                if c.len() != 4 {
                    return None;
                }
                if lower.contains('.') {
                    return valid(c_n, b_n, a_n);
                }
                // US order first; day first only when the first number cannot be a month.
                return if a_n <= 12 {
                    valid(c_n, a_n, b_n)
                } else {
                    valid(c_n, b_n, a_n)
                };
            }
            if let (Some(d), Some(m), Some(y)) = (num(a), month_name(b), num(c)) {
                return valid(y, m, d);
            }
            if let (Some(m), Some(d), Some(y)) = (month_name(a), num(b), num(c)) {
                return valid(y, m, d);
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Identifier;

    fn check<T: std::fmt::Debug + PartialEq>(f: impl Fn(&str) -> T, cases: &[(&str, T)]) {
        for (input, expected) in cases {
            assert_eq!(&f(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn cleans_case_accents_and_punctuation() {
        check(
            clean,
            &[
                ("  José  ÁLVAREZ ", "jose alvarez".to_owned()),
                ("O'Brien", "obrien".to_owned()),
                ("Smith-Jones", "smith jones".to_owned()),
                ("Zoë", "zoe".to_owned()),
                ("Łukasz", "lukasz".to_owned()),
                ("", String::new()),
            ],
        );
    }

    #[test]
    fn resolves_nicknames() {
        check(
            |n| formal_given_name(n).to_owned(),
            &[
                ("bill", "william"),
                ("peggy", "margaret"),
                ("bob", "robert"),
                ("liz", "elizabeth"),
                ("zelda", "zelda"),
            ]
            .map(|(n, f)| (n, f.to_owned())),
        );
        assert!(nickname_pair("william", "bill"));
        assert!(nickname_pair("bill", "william"));
        assert!(nickname_pair("bill", "will"));
        assert!(!nickname_pair("bill", "robert"));
        assert!(nickname_pair_count() >= 300, "{}", nickname_pair_count());
    }

    #[test]
    fn abbreviates_addresses() {
        check(
            address,
            &[
                ("12 Main Street, Apartment 4", "12 main st apt 4".to_owned()),
                (
                    "400 North Elm Avenue #12",
                    "400 n elm ave apt 12".to_owned(),
                ),
                ("9 Pinkerton Circuit", "9 pinkerton circuit".to_owned()),
                (
                    "1 Martin Luther King Jr Boulevard Suite 200",
                    "1 martin luther king jr blvd ste 200".to_owned(),
                ),
            ],
        );
        assert_eq!(
            split_house_number("12 main st"),
            ("12".to_owned(), "main st".to_owned())
        );
        assert_eq!(
            split_house_number("main st"),
            (String::new(), "main st".to_owned())
        );
    }

    #[test]
    fn reads_phones_emails_postcodes_and_sex() {
        check(
            phone,
            &[
                ("(555) 123-4567", "5551234567".to_owned()),
                ("+1 555 123 4567", "5551234567".to_owned()),
                ("123", String::new()),
            ],
        );
        check(
            email,
            &[
                ("  John.Doe@Example.COM ", "john.doe@example.com".to_owned()),
                ("none", String::new()),
            ],
        );
        check(
            postcode,
            &[
                ("12345-6789", "12345".to_owned()),
                ("2119", "2119".to_owned()),
                ("sw1a 1aa", "SW1A1AA".to_owned()),
            ],
        );
        check(sex, &[("Male", "m"), ("F", "f"), ("unknown", "")]);
    }

    #[test]
    fn reads_dates_in_common_forms() {
        let some = |s: &str| Some(s.to_owned());
        check(
            birth_date,
            &[
                ("1972-03-14", some("19720314")),
                ("1972-03-14T10:00:00Z", some("19720314")),
                ("19720314", some("19720314")),
                ("03/14/1972", some("19720314")),
                ("14/03/1972", some("19720314")),
                ("3/4/1972", some("19720304")),
                ("14.03.1972", some("19720314")),
                ("14 March 1972", some("19720314")),
                ("March 14, 1972", some("19720314")),
                ("Mar 14 1972", some("19720314")),
                ("19721314", some("19721314")),
                ("1972-02-30", None),
                ("03/14/72", None),
                ("", None),
                ("unknown", None),
            ],
        );
    }

    #[test]
    fn standardises_a_whole_record() {
        let record = Record {
            given_names: vec!["Bill J.".into()],
            family_name: "van der Berg".into(),
            birth_date: "07/04/1950".into(),
            sex: "male".into(),
            address_lines: vec!["221 Baker Street".into(), "Apartment 2".into()],
            city: "Springfield".into(),
            state: "IL".into(),
            postcode: "62701-1234".into(),
            phone: "217.555.0199".into(),
            email: "Bill@Example.org".into(),
            identifiers: vec![Identifier::new(
                "http://hl7.org/fhir/sid/us-ssn",
                "123-45-6789",
            )],
        };
        let s = standardise(&record);
        assert_eq!(s.given, "bill");
        assert_eq!(s.given_formal, "william");
        assert_eq!(s.middle, "j");
        assert_eq!(s.family, "vanderberg");
        assert_eq!(s.birth, "19500704");
        assert_eq!(
            (
                s.house_number.as_str(),
                s.street.as_str(),
                s.address2.as_str()
            ),
            ("221", "baker st", "apt 2")
        );
        assert_eq!(
            (s.postcode.as_str(), s.phone.as_str()),
            ("62701", "2175550199")
        );
        assert_eq!(
            s.identifiers,
            vec![(
                "http://hl7.org/fhir/sid/us-ssn".to_owned(),
                "123456789".to_owned()
            )]
        );
        assert!(!s.family_phonetic.is_empty());
    }
}
