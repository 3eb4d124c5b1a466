//! The incremental index: standardised records and their blocking buckets in memory, so that one new record
//! is matched against everything inserted so far without a batch run.

use std::collections::HashMap;

use crate::blocking::Blocking;
use crate::model::{Grade, Model};
use crate::record::Record;
use crate::standardise::{standardise, Standardised};

/// Records by id, with their blocking buckets.
#[derive(Debug, Clone, Default)]
pub struct Index {
    blocking: Blocking,
    ids: Vec<String>,
    records: Vec<Standardised>,
    /// Slots whose record was replaced by a later insert with the same id.
    removed: Vec<bool>,
    slot_of: HashMap<String, u32>,
    buckets: HashMap<u64, Vec<u32>>,
    keys: Vec<u64>,
}

/// One match of [`Index::match_record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub id: String,
    /// Probability that the record is this one's person.
    pub score: f64,
    pub grade: Grade,
}

impl Index {
    pub fn new(blocking: Blocking) -> Self {
        Index {
            blocking,
            ..Index::default()
        }
    }

    /// Records currently held.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Adds a record, or replaces the one with the same id.
    pub fn insert(&mut self, id: impl Into<String>, record: &Record) {
        self.insert_standardised(id, standardise(record));
    }

    /// Adds an already standardised record, or replaces the one with the same id.
    pub fn insert_standardised(&mut self, id: impl Into<String>, record: Standardised) {
        let id = id.into();
        let slot = self.records.len() as u32;
        if let Some(old) = self.slot_of.insert(id.clone(), slot) {
            self.remove_slot(old);
        }
        self.keys.clear();
        self.blocking.record_keys(&record, &mut self.keys);
        for k in &self.keys {
            self.buckets.entry(*k).or_default().push(slot);
        }
        self.ids.push(id);
        self.records.push(record);
        self.removed.push(false);
    }

    /// Removes the record with this id; false if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.slot_of.remove(id) {
            Some(slot) => {
                self.remove_slot(slot);
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        self.removed[slot as usize] = true;
        let mut keys = Vec::new();
        self.blocking
            .record_keys(&self.records[slot as usize], &mut keys);
        for k in keys {
            if let Some(bucket) = self.buckets.get_mut(&k) {
                bucket.retain(|&s| s != slot);
            }
        }
        self.records[slot as usize] = Standardised::default();
    }

    fn candidate_slots(&self, record: &Standardised) -> Vec<u32> {
        let mut keys = Vec::new();
        self.blocking.record_keys(record, &mut keys);
        let mut slots = Vec::new();
        for k in &keys {
            if let Some(bucket) = self
                .buckets
                .get(k)
                .filter(|b| b.len() <= self.blocking.max_bucket)
            {
                slots.extend_from_slice(bucket);
            }
        }
        slots.sort_unstable();
        slots.dedup();
        slots.retain(|&s| !self.removed[s as usize]);
        slots
    }

    /// The ids of records sharing at least one blocking key with `record`, in insertion order.
    pub fn candidates(&self, record: &Record) -> Vec<&str> {
        self.candidate_slots(&standardise(record))
            .into_iter()
            .map(|s| self.ids[s as usize].as_str())
            .collect()
    }

    /// Scores `record` against its candidates: every candidate not graded certainly-not, best first
    /// (ties in insertion order). The model's prior is scaled to the size of the index ([`Model::prior_for`]).
    pub fn match_record(&self, record: &Record, model: &Model) -> Vec<Match> {
        self.match_standardised(&standardise(record), model)
    }

    /// [`Index::match_record`] for an already standardised record.
    pub fn match_standardised(&self, record: &Standardised, model: &Model) -> Vec<Match> {
        let prior = model.prior_for(self.len());
        let mut matches: Vec<Match> = self
            .candidate_slots(record)
            .into_iter()
            .filter_map(|s| {
                let score = model.score_with_prior(record, &self.records[s as usize], prior);
                (score.grade != Grade::CertainlyNot).then(|| Match {
                    id: self.ids[s as usize].clone(),
                    score: score.probability,
                    grade: score.grade,
                })
            })
            .collect();
        matches.sort_by(|a, b| b.score.total_cmp(&a.score));
        matches
    }
}
