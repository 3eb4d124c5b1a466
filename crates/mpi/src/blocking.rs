//! Blocking: cheap keys that put records that might be the same person into the same bucket, so that only
//! pairs sharing at least one key (the keys are joined by OR) are compared.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::standardise::Standardised;

/// One blocking key. A record without the values a key needs has no key of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockingKey {
    /// Double Metaphone of the family name and the birth year.
    FamilyPhoneticBirthYear,
    /// The first two letters of the given name and the whole birth date.
    GivenPrefixBirthDate,
    /// Any identifier (system and value).
    Identifier,
    /// The phone number.
    Phone,
    /// The email address.
    Email,
    /// The postcode and the birth date.
    PostcodeBirthDate,
    /// Double Metaphone of the given and of the family name, in either order.
    GivenPhoneticFamilyPhonetic,
    /// The postcode and the first three letters of the family name.
    PostcodeFamilyPrefix,
    /// The house number and the street.
    Address,
}

/// A set of blocking keys joined by OR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocking {
    pub keys: Vec<BlockingKey>,
    /// Buckets holding more records than this are not used to find candidates (a key shared by too many
    /// records, such as a common name in a large index, says little and costs much).
    pub max_bucket: usize,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking {
            keys: vec![
                BlockingKey::FamilyPhoneticBirthYear,
                BlockingKey::GivenPrefixBirthDate,
                BlockingKey::Identifier,
                BlockingKey::Phone,
                BlockingKey::Email,
                BlockingKey::PostcodeBirthDate,
                BlockingKey::GivenPhoneticFamilyPhonetic,
                BlockingKey::PostcodeFamilyPrefix,
                BlockingKey::Address,
            ],
            max_bucket: 1000,
        }
    }
}

/// FNV-1a 64: stable across platforms and versions, unlike `std`'s hasher.
struct Fnv(u64);

impl Fnv {
    fn new(tag: u8) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(&[tag]);
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn part(mut self, text: &str) -> Self {
        self.write(text.as_bytes());
        self.write(&[0xff]);
        self
    }
}

fn prefix(text: &str, n: usize) -> &str {
    &text[..text.len().min(n)]
}

impl Blocking {
    /// The hashed keys of one record, appended to `out` (sorted, without duplicates).
    pub fn record_keys(&self, r: &Standardised, out: &mut Vec<u64>) {
        let start = out.len();
        for (tag, key) in self.keys.iter().enumerate() {
            let h = || Fnv::new(tag as u8);
            let year = prefix(&r.birth, 4);
            match key {
                BlockingKey::FamilyPhoneticBirthYear
                    if !r.family_phonetic.is_empty() && !year.is_empty() =>
                {
                    out.push(h().part(&r.family_phonetic).part(year).0)
                }
                BlockingKey::GivenPrefixBirthDate if !r.given.is_empty() && !r.birth.is_empty() => {
                    out.push(h().part(prefix(&r.given, 2)).part(&r.birth).0)
                }
                BlockingKey::Identifier => {
                    for (system, value) in &r.identifiers {
                        out.push(h().part(system).part(value).0);
                    }
                }
                BlockingKey::Phone if !r.phone.is_empty() => out.push(h().part(&r.phone).0),
                BlockingKey::Email if !r.email.is_empty() => out.push(h().part(&r.email).0),
                BlockingKey::PostcodeBirthDate if !r.postcode.is_empty() && !r.birth.is_empty() => {
                    out.push(h().part(&r.postcode).part(&r.birth).0)
                }
                BlockingKey::GivenPhoneticFamilyPhonetic
                    if !r.given_phonetic.is_empty() && !r.family_phonetic.is_empty() =>
                {
                    // In either order, so that given and family names swapped still meet.
                    let (x, y) = (&r.given_phonetic, &r.family_phonetic);
                    let (first, second) = if x <= y { (x, y) } else { (y, x) };
                    out.push(h().part(first).part(second).0)
                }
                BlockingKey::PostcodeFamilyPrefix
                    if !r.postcode.is_empty() && !r.family.is_empty() =>
                {
                    out.push(h().part(&r.postcode).part(prefix(&r.family, 3)).0)
                }
                BlockingKey::Address if !r.house_number.is_empty() && !r.street.is_empty() => {
                    out.push(h().part(&r.house_number).part(&r.street).0)
                }
                _ => {}
            }
        }
        out[start..].sort_unstable();
        let mut keys = out.split_off(start);
        keys.dedup();
        out.extend(keys);
    }

    fn buckets(&self, records: &[Standardised]) -> (HashMap<u64, Vec<u32>>, Vec<Vec<u64>>) {
        let mut buckets: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut keys_of = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let mut keys = Vec::new();
            self.record_keys(r, &mut keys);
            for k in &keys {
                buckets.entry(*k).or_default().push(i as u32);
            }
            keys_of.push(keys);
        }
        (buckets, keys_of)
    }

    /// Candidate pairs `(i, j)` between two sets (`i` in `left`, `j` in `right`), sorted, each once.
    pub fn link_pairs(&self, left: &[Standardised], right: &[Standardised]) -> Vec<(u32, u32)> {
        let (buckets, _) = self.buckets(right);
        let mut pairs = Vec::new();
        let mut keys = Vec::new();
        let mut mine = Vec::new();
        for (i, r) in left.iter().enumerate() {
            keys.clear();
            self.record_keys(r, &mut keys);
            mine.clear();
            for k in &keys {
                if let Some(bucket) = buckets.get(k).filter(|b| b.len() <= self.max_bucket) {
                    mine.extend_from_slice(bucket);
                }
            }
            mine.sort_unstable();
            mine.dedup();
            pairs.extend(mine.iter().map(|&j| (i as u32, j)));
        }
        pairs
    }

    /// Candidate pairs `(i, j)` with `i < j` within one set, sorted, each once.
    pub fn dedup_pairs(&self, records: &[Standardised]) -> Vec<(u32, u32)> {
        let (buckets, keys_of) = self.buckets(records);
        let mut pairs = Vec::new();
        let mut mine = Vec::new();
        for (i, keys) in keys_of.iter().enumerate() {
            mine.clear();
            for k in keys {
                if let Some(bucket) = buckets.get(k).filter(|b| b.len() <= self.max_bucket) {
                    mine.extend(bucket.iter().copied().filter(|&j| j > i as u32));
                }
            }
            mine.sort_unstable();
            mine.dedup();
            pairs.extend(mine.iter().map(|&j| (i as u32, j)));
        }
        pairs
    }
}

/// How well candidate pairs cover the true pairs, and how much they save.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairQuality {
    pub candidate_pairs: u64,
    pub true_pairs: u64,
    pub true_pairs_found: u64,
    /// All pairs there are (`|A| x |B|`, or `n (n - 1) / 2` within one set).
    pub all_pairs: u64,
    /// Share of true pairs among the candidates.
    pub pair_completeness: f64,
    /// `1 - candidates / all pairs`.
    pub reduction_ratio: f64,
}

/// Pair completeness and reduction ratio of `candidates` against labelled `truth`.
pub fn pair_quality(
    candidates: &[(u32, u32)],
    truth: &HashSet<(u32, u32)>,
    all_pairs: u64,
) -> PairQuality {
    let found = candidates.iter().filter(|p| truth.contains(p)).count() as u64;
    PairQuality {
        candidate_pairs: candidates.len() as u64,
        true_pairs: truth.len() as u64,
        true_pairs_found: found,
        all_pairs,
        pair_completeness: if truth.is_empty() {
            1.0
        } else {
            found as f64 / truth.len() as f64
        },
        reduction_ratio: 1.0 - candidates.len() as f64 / all_pairs.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::standardise::standardise;

    fn rec(given: &str, family: &str, birth: &str, postcode: &str) -> Standardised {
        standardise(&Record {
            given_names: vec![given.into()],
            family_name: family.into(),
            birth_date: birth.into(),
            postcode: postcode.into(),
            ..Record::default()
        })
    }

    #[test]
    fn pairs_share_at_least_one_key() {
        let records = vec![
            rec("john", "smith", "1970-01-02", "2000"),
            rec("jon", "smyth", "1970-05-06", "3000"), // family phonetic + year with 0
            rec("mary", "jones", "1980-01-01", "2000"), // nothing in common with 0 or 1
            rec("jo", "brown", "1970-01-02", "9999"),  // given prefix + birth date with 0
        ];
        let blocking = Blocking::default();
        assert_eq!(blocking.dedup_pairs(&records), vec![(0, 1), (0, 3)]);
        assert_eq!(
            blocking.link_pairs(&records[..1], &records[1..]),
            vec![(0, 0), (0, 2)]
        );
        let truth: HashSet<(u32, u32)> = [(0, 1), (2, 3)].into_iter().collect();
        let q = pair_quality(&blocking.dedup_pairs(&records), &truth, 6);
        assert_eq!(
            (q.true_pairs_found, q.pair_completeness, q.reduction_ratio),
            (1, 0.5, 1.0 - 2.0 / 6.0)
        );
    }

    #[test]
    fn oversized_buckets_are_skipped() {
        let records: Vec<_> = (0..5)
            .map(|_| rec("ann", "lee", "1990-01-01", ""))
            .collect();
        let blocking = Blocking {
            max_bucket: 4,
            ..Blocking::default()
        };
        assert!(blocking.dedup_pairs(&records).is_empty());
        assert_eq!(Blocking::default().dedup_pairs(&records).len(), 10);
    }
}
