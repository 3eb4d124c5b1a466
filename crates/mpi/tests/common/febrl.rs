//! The FEBRL test sets (`../shared/data/febrl`): reading them into records and running the linkage and
//! deduplication pipelines on them. Shared by the integration test and the `febrl` example.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use mpi::{
    Accuracy, Blocking, Identifier, Model, PairQuality, Record, Standardised, TrainingConfig,
};

/// `../shared/data/febrl` seen from the workspace root.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/febrl")
}

/// One FEBRL file: record ids (`rec-N-org`, `rec-N-dup-k`) and records.
pub struct Set {
    pub ids: Vec<String>,
    pub records: Vec<Record>,
}

/// Reads a FEBRL CSV (a space after each comma, LF or CRLF line ends, header first).
pub fn parse(text: &str) -> Set {
    let mut set = Set {
        ids: Vec::new(),
        records: Vec::new(),
    };
    for line in text.lines().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [id, given, surname, number, address1, address2, suburb, postcode, state, dob, ssn] =
            f[..]
        else {
            panic!("unexpected FEBRL line {line:?}");
        };
        set.ids.push(id.to_owned());
        set.records.push(Record {
            given_names: vec![given.to_owned()],
            family_name: surname.to_owned(),
            birth_date: dob.to_owned(),
            address_lines: vec![
                format!("{number} {address1}").trim().to_owned(),
                address2.to_owned(),
            ],
            city: suburb.to_owned(),
            state: state.to_owned(),
            postcode: postcode.to_owned(),
            identifiers: if ssn.is_empty() {
                Vec::new()
            } else {
                vec![Identifier::new("soc_sec_id", ssn)]
            },
            ..Record::default()
        });
    }
    set
}

/// Reads `name` from [`dir`], or `None` if the data is not there.
pub fn load(name: &str) -> Option<Set> {
    std::fs::read_to_string(dir().join(name))
        .ok()
        .map(|text| parse(&text))
}

/// The person of a record id: `rec-12-dup-0` → `rec-12`.
fn person(id: &str) -> &str {
    let mut dashes = id.match_indices('-');
    let second = dashes.nth(1).map(|(i, _)| i).unwrap_or(id.len());
    &id[..second]
}

/// True pairs across two sets.
pub fn link_truth(a: &Set, b: &Set) -> HashSet<(u32, u32)> {
    let mut by_person: HashMap<&str, Vec<u32>> = HashMap::new();
    for (j, id) in b.ids.iter().enumerate() {
        by_person.entry(person(id)).or_default().push(j as u32);
    }
    let mut truth = HashSet::new();
    for (i, id) in a.ids.iter().enumerate() {
        for &j in by_person.get(person(id)).map(Vec::as_slice).unwrap_or(&[]) {
            truth.insert((i as u32, j));
        }
    }
    truth
}

/// True pairs `(i, j)`, `i < j`, within one set.
pub fn dedup_truth(s: &Set) -> HashSet<(u32, u32)> {
    let mut by_person: HashMap<&str, Vec<u32>> = HashMap::new();
    for (i, id) in s.ids.iter().enumerate() {
        by_person.entry(person(id)).or_default().push(i as u32);
    }
    let mut truth = HashSet::new();
    for members in by_person.values() {
        for (k, &i) in members.iter().enumerate() {
            for &j in &members[k + 1..] {
                truth.insert((i.min(j), i.max(j)));
            }
        }
    }
    truth
}

/// What one run measured.
pub struct Run {
    /// Of the final answer: one-to-one links (linkage) or the pairs within each cluster (deduplication).
    pub accuracy: Accuracy,
    /// Of the pairs graded certain or probable, before one-to-one or clustering.
    pub pairwise: Accuracy,
    pub blocking: PairQuality,
    pub seconds: f64,
    pub model: Model,
}

/// FEBRL4: links `a` to `b`, each record to at most one.
pub fn run_linkage(a: &Set, b: &Set) -> Run {
    let start = Instant::now();
    let left: Vec<Standardised> = a.records.iter().map(mpi::standardise).collect();
    let right: Vec<Standardised> = b.records.iter().map(mpi::standardise).collect();
    let blocking = Blocking::default();
    let pairs = blocking.link_pairs(&left, &right);
    let model = mpi::train(&left, &right, &pairs, &TrainingConfig::default());
    let links = mpi::one_to_one(mpi::matches(&model, &left, &right, &pairs));
    let seconds = start.elapsed().as_secs_f64();
    let truth = link_truth(a, b);
    Run {
        accuracy: mpi::accuracy(links.iter().map(|l| (l.left, l.right)), &truth),
        pairwise: mpi::accuracy(links.iter().map(|l| (l.left, l.right)), &truth),
        blocking: mpi::pair_quality(&pairs, &truth, (left.len() * right.len()) as u64),
        seconds,
        model,
    }
}

/// FEBRL3: finds the duplicate pairs within one set, then groups records into identities (connected
/// components of the links) and counts every pair within an identity.
pub fn run_dedup(s: &Set) -> Run {
    let start = Instant::now();
    let records: Vec<Standardised> = s.records.iter().map(mpi::standardise).collect();
    let blocking = Blocking::default();
    let pairs = blocking.dedup_pairs(&records);
    let model = mpi::train(&records, &records, &pairs, &TrainingConfig::default());
    let links = mpi::matches(&model, &records, &records, &pairs);
    let clustered = mpi::cluster_pairs(&mpi::clusters(records.len(), &links));
    let seconds = start.elapsed().as_secs_f64();
    let truth = dedup_truth(s);
    let n = records.len() as u64;
    Run {
        accuracy: mpi::accuracy(clustered, &truth),
        pairwise: mpi::accuracy(links.iter().map(|l| (l.left, l.right)), &truth),
        blocking: mpi::pair_quality(&pairs, &truth, n * (n - 1) / 2),
        seconds,
        model,
    }
}
