//! A seeded roster of licensees in several states of progress, shared by the scale test and the
//! benchmark: the roster as the board's CSV, the participants some of them became, and, for each
//! licensee, the facts the exchange knows and the status Connecticut's rules give, worked out
//! here by hand (not by the crate's mandate code).

#![allow(dead_code)]

use onboard::application::Licence;
use onboard::mandate::Facts;
use onboard::roster::Candidate;
use onboard::Date;
use time::macros::date;

pub struct Generated {
    pub csv: String,
    pub candidates: Vec<Candidate>,
    /// Per roster line (in order): the facts, and the expected status code and whether overdue.
    pub facts: Vec<Facts>,
    pub expected: Vec<(&'static str, bool)>,
    pub active: Vec<bool>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TYPES: &[&str] = &[
    "physician",
    "lmft",
    "lcsw",
    "lpc",
    "psychologist",
    "aprn",
    "hospital",
    "laboratory",
];
const COUNTIES: &[&str] = &[
    "Hartford",
    "New Haven",
    "Fairfield",
    "New London",
    "Litchfield",
    "Middlesex",
    "Tolland",
    "Windham",
];

fn day(offset: i64) -> Date {
    date!(2021 - 01 - 01) + time::Duration::days(offset)
}

/// Connecticut's rules, by hand.
fn expect(kind: &str, capable: Option<bool>, facts: &Facts, as_of: Date) -> (&'static str, bool) {
    if facts.exemptions.iter().any(|(_, since)| *since <= as_of) {
        return ("exempt", false);
    }
    let facility = kind == "hospital" || kind == "laboratory";
    let deadline = if facility {
        date!(2022 - 05 - 03)
    } else {
        date!(2023 - 05 - 03)
    };
    let applied = facts.applied.is_some_and(|d| d <= as_of);
    let messaging = facts.secure_messaging.is_some_and(|d| d <= as_of);
    let done = if facility {
        applied
    } else {
        match capable {
            Some(true) => applied,
            Some(false) => messaging,
            None => applied || messaging,
        }
    };
    if done {
        ("compliant", false)
    } else {
        ("not-yet-compliant", as_of > deadline)
    }
}

pub fn generate(n: usize, as_of: Date, seed: u64) -> Generated {
    let mut rng = Rng(seed | 1);
    let mut csv =
        String::from("Name,License Type,License Number,NPI,Status,Address,City,Zip,County\r\n");
    let mut candidates = Vec::new();
    let mut facts = Vec::with_capacity(n);
    let mut expected = Vec::with_capacity(n);
    let mut active = Vec::with_capacity(n);
    for i in 0..n {
        let kind = TYPES[rng.below(TYPES.len() as u64) as usize];
        let county = COUNTIES[rng.below(COUNTIES.len() as u64) as usize];
        let is_active = rng.below(20) != 0;
        let number = format!("{}{:07}", &kind[..2].to_uppercase(), i);
        csv.push_str(&format!(
            "\"Person{i}, Given\",{kind},{number},,{},{} Main Street,Town,06{:03},{county}\r\n",
            if is_active { "Active" } else { "Expired" },
            i % 997,
            i % 1000
        ));
        // Several states of progress: nothing; applied (capable or not); secure messaging done,
        // before or after the deadline; exempt.
        let progress = rng.below(6);
        let capable = match progress {
            0 => None,
            _ => Some(rng.below(2) == 0),
        };
        let mut f = Facts {
            licence_type: kind.to_string(),
            ehr_capable: capable,
            ..Facts::default()
        };
        if progress >= 2 {
            f.applied = Some(day(rng.below(1400) as i64));
        }
        if progress >= 3 && capable == Some(false) {
            f.secure_messaging = f
                .applied
                .map(|a| a + time::Duration::days(rng.below(200) as i64));
        }
        if progress == 5 && rng.below(3) == 0 {
            f.exemptions = vec![(
                "no-patient-records".to_string(),
                day(rng.below(1400) as i64),
            )];
        }
        if f.applied.is_some() {
            candidates.push(Candidate {
                id: format!("participant-{i}"),
                name: format!("Given Person{i}"),
                npi: None,
                licences: vec![Licence {
                    kind: kind.to_string(),
                    number: number.clone(),
                    state: "CT".to_string(),
                }],
                address_line: String::new(),
                postcode: String::new(),
            });
        }
        expected.push(expect(kind, capable, &f, as_of));
        facts.push(f);
        active.push(is_active);
    }
    Generated {
        csv,
        candidates,
        facts,
        expected,
        active,
    }
}
