//! A seeded generator of synthetic identities and their noisy duplicates (typos, nicknames, swapped day and
//! month, moved addresses, missing fields, other date formats) and of twins (same family name, birth date and
//! address, another given name), for tests and benchmarks. The same config gives the same records.

use crate::record::{Identifier, Record};
use crate::rng::Rng;

/// The identifier system of generated social security numbers.
pub const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

const SURNAMES: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "gomez",
    "phillips",
    "evans",
    "turner",
    "diaz",
    "parker",
    "cruz",
    "edwards",
    "collins",
    "reyes",
    "stewart",
    "morris",
    "morales",
    "murphy",
    "cook",
    "rogers",
    "gutierrez",
    "ortiz",
    "morgan",
    "cooper",
    "peterson",
    "bailey",
    "reed",
    "kelly",
    "howard",
    "ramos",
    "kim",
    "cox",
    "ward",
    "richardson",
    "watson",
    "brooks",
    "chavez",
    "wood",
    "james",
    "bennett",
    "gray",
    "mendoza",
    "ruiz",
    "hughes",
    "price",
    "alvarez",
    "castillo",
    "sanders",
    "patel",
    "myers",
    "long",
    "ross",
    "foster",
];

const SYLLABLES: &[&str] = &[
    "ab", "an", "ar", "ba", "be", "bri", "ca", "cor", "da", "del", "do", "el", "en", "fa", "fer",
    "ga", "gil", "ha", "hol", "in", "ja", "ka", "kel", "la", "lin", "lo", "ma", "mar", "mel", "mo",
    "na", "nor", "o", "pa", "per", "qui", "ra", "ren", "ro", "sa", "sel", "so", "ta", "ter", "to",
    "ul", "va", "ven", "wa", "wil", "ya", "za",
];

const STREET_SUFFIXES: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Place",
    "Boulevard",
    "Way",
];
const STATES: &[&str] = &[
    "CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ", "MA",
];

fn given_names() -> Vec<(&'static str, Vec<&'static str>)> {
    include_str!("../data/nicknames.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(formal, nicks)| (formal.trim(), nicks.split_whitespace().collect()))
        .collect()
}

fn capitalise(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn made_up_word(rng: &mut Rng, syllables: usize) -> String {
    (0..syllables).map(|_| *rng.pick(SYLLABLES)).collect()
}

/// Settings of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub identities: usize,
    /// Share of identities with one or more noisy duplicates.
    pub duplicate_rate: f64,
    /// Share of identities with a twin (a different person with the same family name, birth date and address).
    pub twin_rate: f64,
    /// Share of identities whose records carry a social security number.
    pub ssn_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            identities: 1000,
            duplicate_rate: 0.5,
            twin_rate: 0.02,
            ssn_rate: 0.7,
        }
    }
}

/// Generated records and, for each, the person it describes (records of one person share the number).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub records: Vec<Record>,
    pub person: Vec<u32>,
}

/// The generator: places and names are drawn once per seed, then identities and copies one by one.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    given: Vec<(&'static str, Vec<&'static str>)>,
    cities: Vec<(String, &'static str, String)>,
    streets: Vec<String>,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let cities = (0..400)
            .map(|i| {
                let syllables = 2 + rng.below(2);
                (
                    capitalise(&made_up_word(&mut rng, syllables)),
                    *rng.pick(STATES),
                    format!("{:05}", 10_000 + i * 211),
                )
            })
            .collect();
        let streets = (0..2000)
            .map(|_| {
                let syllables = 2 + rng.below(2);
                format!(
                    "{} {}",
                    capitalise(&made_up_word(&mut rng, syllables)),
                    rng.pick(STREET_SUFFIXES)
                )
            })
            .collect();
        Generator {
            rng,
            given: given_names(),
            cities,
            streets,
        }
    }

    fn family_name(&mut self) -> String {
        // Half from the common list (skewed towards its head, like real surnames), half made up (mostly rare).
        if self.rng.chance(0.5) {
            let r = self.rng.unit();
            capitalise(SURNAMES[(r * r * SURNAMES.len() as f64) as usize])
        } else {
            let syllables = 2 + self.rng.below(2);
            capitalise(&made_up_word(&mut self.rng, syllables))
        }
    }

    fn given_name(&mut self) -> String {
        capitalise(self.rng.pick(&self.given).0)
    }

    fn address(&mut self, record: &mut Record) {
        let number = 1 + self.rng.below(9999);
        let street = self.rng.pick(&self.streets).clone();
        record.address_lines = vec![format!("{number} {street}")];
        if self.rng.chance(0.2) {
            record
                .address_lines
                .push(format!("Apartment {}", 1 + self.rng.below(300)));
        }
        let (city, state, postcode) = self.rng.pick(&self.cities).clone();
        (record.city, record.state, record.postcode) = (city, state.to_owned(), postcode);
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.rng.below(10) as u8))
            .collect()
    }

    /// A new, clean identity.
    pub fn identity(&mut self, ssn_rate: f64) -> Record {
        let mut r = Record {
            given_names: vec![self.given_name()],
            family_name: self.family_name(),
            sex: if self.rng.chance(0.5) {
                "female"
            } else {
                "male"
            }
            .to_owned(),
            ..Record::default()
        };
        if self.rng.chance(0.3) {
            let middle = self.given_name();
            r.given_names.push(middle);
        }
        r.birth_date = format!(
            "{}-{:02}-{:02}",
            1930 + self.rng.below(90),
            1 + self.rng.below(12),
            1 + self.rng.below(28)
        );
        self.address(&mut r);
        r.phone = format!(
            "({}) {}-{}",
            200 + self.rng.below(800),
            self.digits(3),
            self.digits(4)
        );
        r.email = format!(
            "{}.{}{}@example.com",
            r.given_names[0],
            r.family_name,
            self.rng.below(100_000)
        )
        .to_lowercase();
        if self.rng.chance(ssn_rate) {
            r.identifiers.push(Identifier::new(
                SSN,
                format!("{}-{}-{}", self.digits(3), self.digits(2), self.digits(4)),
            ));
        }
        r
    }

    /// A twin of `record`: another person with the same family name, birth date, address and phone, and another
    /// given name, sex, email and social security number.
    pub fn twin(&mut self, record: &Record) -> Record {
        let mut twin = record.clone();
        let first = record
            .given_names
            .first()
            .map(|g| g.to_lowercase())
            .unwrap_or_default();
        loop {
            let name = self.given_name();
            if name.to_lowercase() != first
                && !crate::standardise::nickname_pair(&name.to_lowercase(), &first)
            {
                twin.given_names = vec![name];
                break;
            }
        }
        twin.sex = if self.rng.chance(0.5) {
            "female"
        } else {
            "male"
        }
        .to_owned();
        twin.email = format!(
            "{}.{}{}@example.com",
            twin.given_names[0],
            twin.family_name,
            self.rng.below(100_000)
        )
        .to_lowercase();
        for id in &mut twin.identifiers {
            id.value = format!("{}-{}-{}", self.digits(3), self.digits(2), self.digits(4));
        }
        twin
    }

    fn typo(&mut self, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        if chars.len() < 2 {
            return text.to_owned();
        }
        let i = 1 + self.rng.below(chars.len() - 1);
        let letter = char::from(b'a' + self.rng.below(26) as u8);
        match self.rng.below(4) {
            0 => chars[i] = letter,
            1 => chars.insert(i, letter),
            2 => {
                chars.remove(i);
            }
            _ => chars.swap(i - 1, i),
        }
        chars.into_iter().collect()
    }

    /// A noisy copy of `record`, as another source might hold it: one to three of typos in the names, a nickname,
    /// day and month swapped, another date format, a moved address, missing fields, a typo in the phone.
    pub fn noisy_copy(&mut self, record: &Record) -> Record {
        let mut r = record.clone();
        let changes = 1 + self.rng.below(3);
        for _ in 0..changes {
            match self.rng.below(9) {
                0 => r.family_name = self.typo(&r.family_name),
                1 => {
                    if let Some(g) = r.given_names.first_mut() {
                        let typo = self.typo(g);
                        *g = typo;
                    }
                }
                2 => {
                    let lower = r
                        .given_names
                        .first()
                        .map(|g| g.to_lowercase())
                        .unwrap_or_default();
                    if let Some((_, nicks)) = self.given.iter().find(|(f, _)| *f == lower).cloned()
                    {
                        let nick: &&str = self.rng.pick(&nicks);
                        let nick = capitalise(nick);
                        r.given_names[0] = nick;
                    }
                }
                3 => {
                    // Day and month swapped, when the day can be a month.
                    if let Some((y, m, d)) = iso_parts(&r.birth_date) {
                        if d.as_str() <= "12" {
                            r.birth_date = format!("{y}-{d}-{m}");
                        }
                    }
                }
                4 => {
                    if let Some((y, m, d)) = iso_parts(&r.birth_date) {
                        r.birth_date = format!("{m}/{d}/{y}");
                    }
                }
                5 => {
                    self.address(&mut r);
                    if self.rng.chance(0.5) {
                        r.phone = format!(
                            "({}) {}-{}",
                            200 + self.rng.below(800),
                            self.digits(3),
                            self.digits(4)
                        );
                    }
                }
                6 => match self.rng.below(4) {
                    0 => r.phone.clear(),
                    1 => r.email.clear(),
                    2 => r.identifiers.clear(),
                    _ => r.address_lines.clear(),
                },
                7 => r.phone = self.typo(&r.phone),
                _ => {
                    r.family_name = r.family_name.to_uppercase();
                    r.given_names = r.given_names.iter().map(|g| g.to_uppercase()).collect();
                }
            }
        }
        r
    }
}

fn iso_parts(date: &str) -> Option<(String, String, String)> {
    let b = date.as_bytes();
    (b.len() == 10 && b[4] == b'-' && b[7] == b'-').then(|| {
        (
            date[..4].to_owned(),
            date[5..7].to_owned(),
            date[8..].to_owned(),
        )
    })
}

/// Identities, their noisy duplicates and twins, shuffled into one list with each record's person.
pub fn generate(config: &GeneratorConfig) -> Generated {
    let mut g = Generator::new(config.seed);
    let mut records = Vec::new();
    let mut person = Vec::new();
    let mut next_person = 0u32;
    for _ in 0..config.identities {
        let identity = g.identity(config.ssn_rate);
        let p = next_person;
        next_person += 1;
        if g.rng.chance(config.twin_rate) {
            let twin = g.twin(&identity);
            records.push(twin);
            person.push(next_person);
            next_person += 1;
        }
        if g.rng.chance(config.duplicate_rate) {
            let copies = 1 + g.rng.below(3);
            for _ in 0..copies {
                let copy = g.noisy_copy(&identity);
                records.push(copy);
                person.push(p);
            }
        }
        records.push(identity);
        person.push(p);
    }
    // Fisher-Yates, so that duplicates are not next to their originals.
    for i in (1..records.len()).rev() {
        let j = g.rng.below(i + 1);
        records.swap(i, j);
        person.swap(i, j);
    }
    Generated { records, person }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records() {
        let config = GeneratorConfig {
            identities: 200,
            ..GeneratorConfig::default()
        };
        assert_eq!(generate(&config), generate(&config));
        let other = generate(&GeneratorConfig {
            seed: 2,
            ..config.clone()
        });
        assert_ne!(generate(&config).records, other.records);
    }

    #[test]
    fn twins_share_birth_date_and_address_but_not_given_name() {
        let mut g = Generator::new(3);
        let a = g.identity(1.0);
        let b = g.twin(&a);
        assert_eq!(
            (&a.family_name, &a.birth_date, &a.address_lines),
            (&b.family_name, &b.birth_date, &b.address_lines)
        );
        assert_ne!(a.given_names[0], b.given_names[0]);
        assert_ne!(a.identifiers, b.identifiers);
    }

    #[test]
    fn noisy_copies_differ_but_keep_most_fields() {
        let mut g = Generator::new(4);
        let a = g.identity(1.0);
        let copies: Vec<Record> = (0..50).map(|_| g.noisy_copy(&a)).collect();
        assert!(copies.iter().any(|c| c != &a));
        assert!(copies.iter().all(|c| c
            .family_name
            .to_lowercase()
            .len()
            .abs_diff(a.family_name.len())
            <= 3));
    }
}
