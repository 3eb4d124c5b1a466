//! Batch linkage and deduplication over whole sets, and their accuracy against labelled truth.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::standardise::Standardised;

/// A scored candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredPair {
    pub left: u32,
    pub right: u32,
    pub probability: f64,
}

/// Scores every candidate pair and keeps those graded certain or probable. The prior is scaled to the size of
/// `right` ([`Model::prior_for`]), so a model trained on a sample can score a whole set.
pub fn matches(
    model: &Model,
    left: &[Standardised],
    right: &[Standardised],
    pairs: &[(u32, u32)],
) -> Vec<ScoredPair> {
    let prior = model.prior_for(right.len());
    pairs
        .iter()
        .filter_map(|&(i, j)| {
            let score = model.score_with_prior(&left[i as usize], &right[j as usize], prior);
            score.grade.is_match().then_some(ScoredPair {
                left: i,
                right: j,
                probability: score.probability,
            })
        })
        .collect()
}

/// For two sets that each hold a person at most once: keeps the best-scored link of each record
/// (greedily, highest probability first, ties by position), so no record links twice.
pub fn one_to_one(mut links: Vec<ScoredPair>) -> Vec<ScoredPair> {
    links.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then(a.left.cmp(&b.left))
            .then(a.right.cmp(&b.right))
    });
    let mut left_used = HashSet::new();
    let mut right_used = HashSet::new();
    links.retain(|l| {
        if left_used.contains(&l.left) || right_used.contains(&l.right) {
            return false;
        }
        left_used.insert(l.left);
        right_used.insert(l.right);
        true
    });
    links.sort_by_key(|l| (l.left, l.right));
    links
}

/// Groups `n` records into identities: the connected components of `links` (a link joins its two records).
/// Each record gets the smallest index in its component as its identity, so the result depends only on the
/// links, not on their order.
pub fn clusters(n: usize, links: &[ScoredPair]) -> Vec<u32> {
    fn root(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    let mut parent: Vec<u32> = (0..n as u32).collect();
    for l in links {
        let (a, b) = (root(&mut parent, l.left), root(&mut parent, l.right));
        // The smaller root wins, which keeps every root the smallest index of its component.
        let (keep, join) = if a < b { (a, b) } else { (b, a) };
        parent[join as usize] = keep;
    }
    (0..n as u32).map(|x| root(&mut parent, x)).collect()
}

/// Every pair `(i, j)`, `i < j`, of records in the same cluster.
pub fn cluster_pairs(clusters: &[u32]) -> Vec<(u32, u32)> {
    let mut members: std::collections::BTreeMap<u32, Vec<u32>> = std::collections::BTreeMap::new();
    for (i, &c) in clusters.iter().enumerate() {
        members.entry(c).or_default().push(i as u32);
    }
    let mut pairs = Vec::new();
    for m in members.values() {
        for (k, &i) in m.iter().enumerate() {
            pairs.extend(m[k + 1..].iter().map(|&j| (i, j)));
        }
    }
    pairs.sort_unstable();
    pairs
}

/// Precision, recall and F1 of predicted pairs against the true ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub predicted: u64,
    pub true_positives: u64,
    pub true_pairs: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Scores `predicted` pairs against `truth` (both in the same orientation).
pub fn accuracy(
    predicted: impl IntoIterator<Item = (u32, u32)>,
    truth: &HashSet<(u32, u32)>,
) -> Accuracy {
    let predicted: HashSet<(u32, u32)> = predicted.into_iter().collect();
    let tp = predicted.iter().filter(|p| truth.contains(p)).count() as u64;
    let precision = if predicted.is_empty() {
        0.0
    } else {
        tp as f64 / predicted.len() as f64
    };
    let recall = if truth.is_empty() {
        0.0
    } else {
        tp as f64 / truth.len() as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Accuracy {
        predicted: predicted.len() as u64,
        true_positives: tp,
        true_pairs: truth.len() as u64,
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_one_keeps_the_best_link_of_each_record() {
        let p = |left, right, probability| ScoredPair {
            left,
            right,
            probability,
        };
        let kept = one_to_one(vec![
            p(0, 0, 0.9),
            p(0, 1, 0.95),
            p(1, 1, 0.8),
            p(2, 2, 0.7),
        ]);
        assert_eq!(kept, vec![p(0, 1, 0.95), p(2, 2, 0.7)]);
    }

    #[test]
    fn clusters_are_connected_components_named_by_their_smallest_record() {
        let p = |left, right| ScoredPair {
            left,
            right,
            probability: 0.9,
        };
        let c = clusters(6, &[p(4, 1), p(1, 3), p(5, 2)]);
        assert_eq!(c, vec![0, 1, 2, 1, 1, 2]);
        assert_eq!(cluster_pairs(&c), vec![(1, 3), (1, 4), (2, 5), (3, 4)]);
        assert_eq!(clusters(3, &[p(2, 0)]), clusters(3, &[p(0, 2)]));
    }

    #[test]
    fn accuracy_counts_true_positives() {
        let truth: HashSet<(u32, u32)> = [(0, 0), (1, 1)].into_iter().collect();
        let a = accuracy([(0, 0), (1, 2)], &truth);
        assert_eq!(
            (a.true_positives, a.precision, a.recall, a.f1),
            (1, 0.5, 0.5, 0.5)
        );
    }
}
