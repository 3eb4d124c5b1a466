//! The licensing board's roster: a CSV of licensees (name, licence type and number, NPI, status,
//! address, county), read with every bad row named by its line, and each licensee matched to a
//! participant of the exchange: by licence, then by NPI, then by name and address. A licensee who
//! matches several participants by the same rule is ambiguous and matched to none (the operator
//! decides), never to a guess.

use std::collections::HashMap;

use crate::application::{licence_number, licence_type, Licence};
use crate::csv;
use crate::npi;

/// One licensee of the roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Licensee {
    /// The line of the CSV it came from.
    pub line: usize,
    pub name: String,
    pub licence: Licence,
    pub npi: Option<String>,
    /// The board's status (`active`, `inactive`, `expired`...), lower case.
    pub status: String,
    pub address_line: String,
    pub city: String,
    pub postcode: String,
    pub county: String,
}

impl Licensee {
    /// Whether the board lists the licence as active (only they are held to the mandate).
    pub fn active(&self) -> bool {
        self.status == "active"
    }
}

/// A bad row, or a missing column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RowError {
    pub line: usize,
    pub message: String,
}

/// The columns, by the names boards use (case and punctuation ignored).
const COLUMNS: &[(&str, &[&str])] = &[
    ("name", &["name", "licensee name", "full name"]),
    (
        "licence_type",
        &["licence type", "license type", "credential", "profession"],
    ),
    (
        "licence_number",
        &[
            "licence number",
            "license number",
            "licence no",
            "license no",
            "credential number",
        ],
    ),
    ("npi", &["npi"]),
    ("status", &["status", "licence status", "license status"]),
    (
        "address",
        &["address", "street", "address line", "address line 1"],
    ),
    ("city", &["city"]),
    ("state", &["state"]),
    ("postcode", &["zip", "zip code", "postcode", "postal code"]),
    ("county", &["county"]),
];

/// Board spellings of licence types beside the exchange's codes and labels.
const TYPE_ALIASES: &[(&str, &str)] = &[
    ("md", "physician"),
    ("do", "physician"),
    ("physician and surgeon", "physician"),
    ("apn", "aprn"),
    ("advanced practice registered nurse", "aprn"),
    ("physician assistant", "pa"),
    ("licensed clinical social worker", "lcsw"),
    ("marital and family therapist", "lmft"),
    ("marriage and family therapist", "lmft"),
    ("professional counselor", "lpc"),
    ("licensed professional counselor", "lpc"),
    ("ladc", "lads"),
    ("alcohol and drug counselor", "lads"),
    ("clinical laboratory", "laboratory"),
];

/// The exchange's licence type code for what a board wrote.
pub fn licence_type_code(text: &str) -> Option<&'static str> {
    let cleaned = mpi::standardise::clean(text);
    if let Some(t) = crate::application::LICENCE_TYPES.iter().find(|t| {
        t.code == cleaned
            || mpi::standardise::clean(t.label) == cleaned
            || mpi::standardise::clean(t.code) == cleaned
    }) {
        return Some(t.code);
    }
    TYPE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == cleaned)
        .and_then(|(_, code)| licence_type(code))
        .map(|t| t.code)
}

/// Reads a roster; `state` is the board's state, used where a row has none. Every bad row is
/// named; the good rows are returned with them, so one typo does not hold up a hundred thousand.
pub fn read(text: &str, state: &str) -> Result<(Vec<Licensee>, Vec<RowError>), RowError> {
    let records = csv::read(text).map_err(|e| RowError {
        line: e.line,
        message: e.to_string(),
    })?;
    let mut records = records.into_iter();
    let header = records.next().ok_or(RowError {
        line: 1,
        message: "the file is empty".into(),
    })?;
    let mut at = HashMap::new();
    for (i, name) in header.cells.iter().enumerate() {
        let cleaned = mpi::standardise::clean(name);
        if let Some((column, _)) = COLUMNS
            .iter()
            .find(|(_, names)| names.contains(&cleaned.as_str()))
        {
            at.entry(*column).or_insert(i);
        }
    }
    let missing: Vec<&str> = ["name", "licence_type", "licence_number", "status"]
        .into_iter()
        .filter(|c| !at.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(RowError {
            line: header.line,
            message: format!("the header has no column for: {}", missing.join(", ")),
        });
    }
    let mut licensees = Vec::new();
    let mut errors = Vec::new();
    for record in records {
        let get = |column: &str| {
            at.get(column)
                .and_then(|i| record.cells.get(*i))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let mut problems = Vec::new();
        let name = get("name");
        if name.is_empty() {
            problems.push("no name".to_string());
        }
        let kind = licence_type_code(&get("licence_type"));
        if kind.is_none() {
            problems.push(format!("unknown licence type `{}`", get("licence_type")));
        }
        let number = licence_number(&get("licence_number"));
        if number.is_empty() {
            problems.push("no licence number".to_string());
        }
        let npi_text = get("npi");
        let npi = if npi_text.is_empty() {
            None
        } else {
            match npi::check(&npi_text) {
                Ok(n) => Some(n.as_str().to_string()),
                Err(e) => {
                    problems.push(format!("NPI: {e}"));
                    None
                }
            }
        };
        let status = get("status").to_lowercase();
        if status.is_empty() {
            problems.push("no licence status".to_string());
        }
        if !problems.is_empty() {
            errors.push(RowError {
                line: record.line,
                message: problems.join("; "),
            });
            continue;
        }
        let row_state = get("state");
        licensees.push(Licensee {
            line: record.line,
            name,
            licence: Licence {
                kind: kind.unwrap_or_default().to_string(),
                number,
                state: if row_state.is_empty() {
                    state.to_ascii_uppercase()
                } else {
                    row_state.to_ascii_uppercase()
                },
            },
            npi,
            status,
            address_line: get("address"),
            city: get("city"),
            postcode: mpi::standardise::postcode(&get("postcode")),
            county: get("county"),
        });
    }
    Ok((licensees, errors))
}

/// A participant as the roster is matched against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub npi: Option<String>,
    pub licences: Vec<Licence>,
    pub address_line: String,
    pub postcode: String,
}

/// How a licensee was matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchedBy {
    Licence,
    Npi,
    NameAndAddress,
    /// The operator decided (an ambiguous match, or a correction); the [`Matcher`] never says so.
    Operator,
}

impl MatchedBy {
    pub fn code(self) -> &'static str {
        match self {
            MatchedBy::Licence => "licence",
            MatchedBy::Npi => "npi",
            MatchedBy::NameAndAddress => "name-and-address",
            MatchedBy::Operator => "operator",
        }
    }
}

/// The outcome for one licensee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matched {
    One {
        participant: String,
        by: MatchedBy,
    },
    /// Several participants fit equally: the operator decides.
    Ambiguous {
        participants: Vec<String>,
        by: MatchedBy,
    },
    None,
}

/// Matches licensees to participants, each with the first rule that finds anyone.
pub struct Matcher<'a> {
    by_licence: HashMap<(String, String, String), Vec<&'a str>>,
    by_npi: HashMap<&'a str, Vec<&'a str>>,
    by_name_address: HashMap<(String, String), Vec<&'a str>>,
}

fn name_key(name: &str) -> String {
    let mut words: Vec<String> = mpi::standardise::clean(name)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    // "Doe, Jane" and "Jane Doe" are one name.
    words.sort();
    words.join(" ")
}

fn address_key(line: &str, postcode: &str) -> String {
    format!(
        "{}|{}",
        mpi::standardise::address(line),
        mpi::standardise::postcode(postcode)
    )
}

impl<'a> Matcher<'a> {
    pub fn new(candidates: &'a [Candidate]) -> Matcher<'a> {
        let mut by_licence: HashMap<_, Vec<&str>> = HashMap::new();
        let mut by_npi: HashMap<_, Vec<&str>> = HashMap::new();
        let mut by_name_address: HashMap<_, Vec<&str>> = HashMap::new();
        for c in candidates {
            for l in &c.licences {
                by_licence
                    .entry((l.kind.clone(), licence_number(&l.number), l.state.clone()))
                    .or_default()
                    .push(c.id.as_str());
            }
            if let Some(npi) = &c.npi {
                by_npi.entry(npi.as_str()).or_default().push(c.id.as_str());
            }
            if !c.address_line.trim().is_empty() {
                by_name_address
                    .entry((name_key(&c.name), address_key(&c.address_line, &c.postcode)))
                    .or_default()
                    .push(c.id.as_str());
            }
        }
        Matcher {
            by_licence,
            by_npi,
            by_name_address,
        }
    }

    pub fn find(&self, l: &Licensee) -> Matched {
        // Each rule's key is made only when the rules before it found nobody.
        let by_licence = || {
            self.by_licence.get(&(
                l.licence.kind.clone(),
                l.licence.number.clone(),
                l.licence.state.clone(),
            ))
        };
        let by_npi = || l.npi.as_deref().and_then(|n| self.by_npi.get(n));
        let by_name_address = || {
            if l.address_line.trim().is_empty() || self.by_name_address.is_empty() {
                None
            } else {
                self.by_name_address
                    .get(&(name_key(&l.name), address_key(&l.address_line, &l.postcode)))
            }
        };
        type Rule<'r, 'a> = (MatchedBy, &'r dyn Fn() -> Option<&'r Vec<&'a str>>);
        let rules: [Rule<'_, 'a>; 3] = [
            (MatchedBy::Licence, &by_licence),
            (MatchedBy::Npi, &by_npi),
            (MatchedBy::NameAndAddress, &by_name_address),
        ];
        for (by, rule) in rules {
            let Some(found) = rule() else { continue };
            let mut ids: Vec<String> = found.iter().map(|s| s.to_string()).collect();
            ids.sort();
            ids.dedup();
            return match ids.len() {
                1 => Matched::One {
                    participant: ids.remove(0),
                    by,
                },
                _ => Matched::Ambiguous {
                    participants: ids,
                    by,
                },
            };
        }
        Matched::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROSTER: &str = "Licensee Name,License Type,License No.,NPI,Status,Address,City,State,Zip Code,County\r\n\
        \"Doe, Jane\",Marriage and Family Therapist,LMFT-001234,1234567893,Active,12 Main Street,Hartford,CT,06103,Hartford\r\n\
        Sam Roe,LCSW,LCSW 55,,ACTIVE,1 Elm St,New Haven,,06510-1234,New Haven\r\n\
        ,Astrologer,,123,,,,,,\r\n\
        Ann Poe,MD,045678,,Inactive,,,,,\r\n";

    #[test]
    fn a_roster_is_read_and_bad_rows_are_named() {
        let (rows, errors) = read(ROSTER, "ct").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].licence.kind, "lmft");
        assert_eq!(rows[0].licence.number, "LMFT001234");
        assert_eq!(rows[1].licence.state, "CT");
        assert_eq!(rows[1].postcode, "06510");
        assert_eq!(rows[2].licence.kind, "physician");
        assert!(!rows[2].active() && rows[0].active());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4);
        assert!(
            errors[0].message.contains("no name"),
            "{}",
            errors[0].message
        );
        assert!(errors[0]
            .message
            .contains("unknown licence type `Astrologer`"));
        assert!(errors[0].message.contains("NPI"));
        let e = read("Name,Status\nx,active\n", "CT").unwrap_err();
        assert!(
            e.message.contains("licence_type, licence_number"),
            "{}",
            e.message
        );
    }

    #[test]
    fn licensees_are_matched_by_licence_then_npi_then_name_and_address() {
        let (rows, _) = read(ROSTER, "CT").unwrap();
        let candidates = vec![
            Candidate {
                id: "p-jane".into(),
                name: "Jane Doe".into(),
                npi: None,
                licences: vec![Licence {
                    kind: "lmft".into(),
                    number: "lmft001234".into(),
                    state: "CT".into(),
                }],
                address_line: String::new(),
                postcode: String::new(),
            },
            Candidate {
                id: "p-sam".into(),
                name: "Roe Sam".into(),
                npi: None,
                licences: vec![],
                address_line: "1 Elm Street".into(),
                postcode: "06510".into(),
            },
            Candidate {
                id: "p-other".into(),
                name: "Jane Doe".into(),
                npi: Some("1234567893".into()),
                licences: vec![],
                address_line: String::new(),
                postcode: String::new(),
            },
        ];
        let m = Matcher::new(&candidates);
        // Jane's licence wins over the other participant's NPI.
        assert_eq!(
            m.find(&rows[0]),
            Matched::One {
                participant: "p-jane".into(),
                by: MatchedBy::Licence
            }
        );
        assert_eq!(
            m.find(&rows[1]),
            Matched::One {
                participant: "p-sam".into(),
                by: MatchedBy::NameAndAddress
            }
        );
        assert_eq!(m.find(&rows[2]), Matched::None);
        let twins = vec![
            candidates[1].clone(),
            Candidate {
                id: "p-sam-2".into(),
                ..candidates[1].clone()
            },
        ];
        let m = Matcher::new(&twins);
        assert!(
            matches!(m.find(&rows[1]), Matched::Ambiguous { ref participants, .. } if participants.len() == 2)
        );
    }
}
