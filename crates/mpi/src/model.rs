//! Fellegi-Sunter scoring: per-field m and u probabilities for each comparison level, a prior, term-frequency
//! adjusted name agreement, and two thresholds that turn a match probability into a FHIR match grade.
//! [`train`] estimates a [`Model`] without labels: u from random pairs, m and the prior by expectation
//! maximisation over the candidate pairs, started from the pairs a deterministic rule links.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::compare::{Field, MISSING};
use crate::rng::Rng;
use crate::standardise::Standardised;

/// The FHIR match grade (`http://hl7.org/fhir/StructureDefinition/match-grade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    /// At or above the auto-link threshold: link without review.
    Certain,
    /// At or above the review threshold: a match, to be confirmed by a person before relying on it.
    Probable,
    /// Below the review threshold, but the fields agree more than chance would explain (Bayes factor above 1).
    Possible,
    /// Everything else.
    CertainlyNot,
}

impl Grade {
    /// The code of the FHIR match-grade extension.
    pub fn code(self) -> &'static str {
        match self {
            Grade::Certain => "certain",
            Grade::Probable => "probable",
            Grade::Possible => "possible",
            Grade::CertainlyNot => "certainly-not",
        }
    }

    /// Certain or probable: a link (automatic or after review).
    pub fn is_match(self) -> bool {
        matches!(self, Grade::Certain | Grade::Probable)
    }
}

/// The m and u probabilities of one field's levels (index 0 = disagree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldModel {
    pub field: Field,
    /// P(level | same person).
    pub m: Vec<f64>,
    /// P(level | different people).
    pub u: Vec<f64>,
}

impl FieldModel {
    /// log2(m / u) of a level; a missing value weighs nothing.
    pub fn weight(&self, level: u8) -> f64 {
        if level == MISSING {
            0.0
        } else {
            (self.m[level as usize] / self.u[level as usize]).log2()
        }
    }
}

/// How often each name occurs, for term-frequency adjustment: agreeing on a rare name counts more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TermFrequencies {
    /// Records counted.
    pub total: u64,
    pub given: BTreeMap<String, u32>,
    pub family: BTreeMap<String, u32>,
}

impl TermFrequencies {
    /// Counts the given and family names of `records`.
    pub fn count<'a>(records: impl IntoIterator<Item = &'a Standardised>) -> Self {
        let mut tf = TermFrequencies::default();
        for r in records {
            tf.add(r);
        }
        tf
    }

    /// Counts one more record.
    pub fn add(&mut self, r: &Standardised) {
        self.total += 1;
        if !r.given.is_empty() {
            *self.given.entry(r.given.clone()).or_default() += 1;
        }
        if !r.family.is_empty() {
            *self.family.entry(r.family.clone()).or_default() += 1;
        }
    }

    /// The share of records with this value, if it was seen.
    fn share(&self, field: Field, value: &str) -> Option<f64> {
        let table = match field {
            Field::Given => &self.given,
            Field::Family => &self.family,
            _ => return None,
        };
        table
            .get(value)
            .map(|&n| f64::from(n) / self.total.max(1) as f64)
    }
}

/// The score of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// log2 of the Bayes factor: the sum of the field weights (without the prior).
    pub weight: f64,
    /// The posterior probability that the pair is one person (prior and weight together).
    pub probability: f64,
    pub grade: Grade,
}

/// A trained Fellegi-Sunter model; serialise it with serde (JSON) to keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub fields: Vec<FieldModel>,
    /// The probability that two records drawn at random are the same person: the matches EM expects among
    /// the candidate pairs over all pairs of the training data. Blocking is not allowed to raise it, so a
    /// score means the same whichever keys found the pair.
    pub prior: f64,
    /// Probability at or above which a pair is `certain`.
    pub auto_link: f64,
    /// Probability at or above which a pair is `probable` (and goes to review unless it is certain).
    pub review: f64,
    /// Twins share a family name, a birth date and an address but not a given name: when the birth dates are
    /// equal, the given names are not variants of one name (level 1 or below, or 2 with different sexes) and
    /// no identifier agrees within one edit, the grade is at most `possible`.
    pub twin_guard: bool,
    pub term_frequencies: TermFrequencies,
    /// The number of records each record was compared against in training (the right-hand set); the prior
    /// is for a population of this size (see [`Model::prior_for`]).
    pub training_records: u64,
}

/// Settings of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub fields: Vec<Field>,
    pub seed: u64,
    /// Random pairs drawn to estimate u.
    pub random_pairs: usize,
    pub max_iterations: usize,
    pub auto_link: f64,
    pub review: f64,
    pub twin_guard: bool,
    /// Adjust exact agreement on given and family names by how common the name is, in EM and in scoring.
    pub term_frequency: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            fields: Field::DEFAULT.to_vec(),
            seed: 0x6e75_746d_6567,
            random_pairs: 100_000,
            max_iterations: 100,
            auto_link: 0.99,
            review: 0.5,
            twin_guard: true,
            term_frequency: true,
        }
    }
}

/// The comparison levels of one pair, one per model field.
pub fn comparison_vector(fields: &[Field], a: &Standardised, b: &Standardised) -> Vec<u8> {
    fields.iter().map(|f| f.compare(a, b)).collect()
}

/// The deterministic rules that seed training: (1) an identifier agrees exactly; (2) given name, family name
/// and birth date all agree exactly. A field's m is first estimated from the pairs linked by a rule that does
/// not look at that field, so that no field vouches for itself.
fn rules_without(fields: &[Field], levels: &[u8], field: Option<Field>) -> bool {
    let level = |f: Field| fields.iter().position(|x| *x == f).map(|i| levels[i]);
    let top =
        |f: Field| level(f).is_some_and(|l| l != MISSING && l as usize + 1 == f.levels().len());
    let identifier = field != Some(Field::Identifier) && top(Field::Identifier);
    let names_and_birth = !field
        .is_some_and(|f| [Field::Given, Field::Family, Field::Birth].contains(&f))
        && top(Field::Given)
        && top(Field::Family)
        && top(Field::Birth);
    identifier || names_and_birth
}

/// Trains a model on candidate `pairs` between `left` and `right` (for deduplication pass the same slice twice).
/// Deterministic for a given seed and input order.
pub fn train(
    left: &[Standardised],
    right: &[Standardised],
    pairs: &[(u32, u32)],
    config: &TrainingConfig,
) -> Model {
    let fields = &config.fields;
    let same_set = std::ptr::eq(left, right);

    // u: level frequencies over random pairs, which are almost all different people.
    let mut rng = Rng::new(config.seed);
    let mut u_counts: Vec<Vec<f64>> = fields.iter().map(|f| vec![0.0; f.levels().len()]).collect();
    if !(left.is_empty() || right.is_empty() || (same_set && left.len() < 2)) {
        for _ in 0..config.random_pairs {
            let i = rng.below(left.len());
            let mut j = rng.below(right.len());
            while same_set && j == i {
                j = rng.below(right.len());
            }
            for (k, f) in fields.iter().enumerate() {
                let level = f.compare(&left[i], &right[j]);
                if level != MISSING {
                    u_counts[k][level as usize] += 1.0;
                }
            }
        }
    }
    let u: Vec<Vec<f64>> = u_counts.iter().map(|c| smooth(c, 1.0)).collect();

    let term_frequencies = if config.term_frequency {
        if same_set {
            TermFrequencies::count(left)
        } else {
            TermFrequencies::count(left.iter().chain(right))
        }
    } else {
        TermFrequencies::default()
    };

    // The candidate pairs, grouped by comparison vector: EM runs over distinct vectors. Exact agreement on a
    // name also carries how common the name is (as -log2 of its share, rounded), so that EM prices agreeing on
    // "smith" as the scorer does, not as agreeing on an average name.
    let nf = fields.len();
    let mut patterns: HashMap<Vec<u8>, f64> = HashMap::new();
    for &(i, j) in pairs {
        let (a, b) = (&left[i as usize], &right[j as usize]);
        let mut key = comparison_vector(fields, a, b);
        for k in 0..nf {
            let top = key[k] != MISSING && key[k] as usize + 1 == fields[k].levels().len();
            let bucket = match fields[k] {
                Field::Given | Field::Family if top && config.term_frequency => {
                    let value = if fields[k] == Field::Given {
                        &a.given
                    } else {
                        &a.family
                    };
                    term_frequencies.share(fields[k], value).map(|share| {
                        let floor = 1.0 / term_frequencies.total.max(1) as f64;
                        (-share.max(floor).log2()).round().clamp(0.0, 60.0) as u8
                    })
                }
                _ => None,
            };
            key.push(bucket.unwrap_or(u8::MAX));
        }
        *patterns.entry(key).or_default() += 1.0;
    }
    let mut patterns: Vec<(Vec<u8>, f64)> = patterns.into_iter().collect();
    patterns.sort_by(|a, b| a.0.cmp(&b.0));
    let total: f64 = patterns.iter().map(|p| p.1).sum();

    // Start from the pairs the deterministic rules link: each field's levels among the pairs linked by a rule
    // that ignores it are its first m, and stay in EM as a Dirichlet prior worth as many pairs as the rule linked
    // (so pairs that agree on names alone cannot talk EM into believing that matches often disagree on the rest).
    let mut rule_counts: Vec<Vec<f64>> =
        fields.iter().map(|f| vec![0.0; f.levels().len()]).collect();
    let mut rule_pairs = 0.0;
    for (key, n) in &patterns {
        let levels = &key[..nf];
        if rules_without(fields, levels, None) {
            rule_pairs += n;
        }
        for (k, &l) in levels.iter().enumerate() {
            if l != MISSING && rules_without(fields, levels, Some(fields[k])) {
                rule_counts[k][l as usize] += n;
            }
        }
    }
    let rule_m: Vec<Vec<f64>> = fields
        .iter()
        .zip(&rule_counts)
        .map(|(f, counts)| {
            let default = default_m(f.levels().len());
            let seen: f64 = counts.iter().sum();
            // Few rule pairs say little: lean on the default until there are some hundreds.
            let w = seen / (seen + 100.0);
            let from_rule = smooth(counts, 0.5);
            default
                .iter()
                .zip(&from_rule)
                .map(|(d, r)| (1.0 - w) * d + w * r)
                .collect()
        })
        .collect();
    let strength: Vec<f64> = rule_counts
        .iter()
        .map(|c| c.iter().sum::<f64>().max(10.0))
        .collect();
    let mut m = rule_m.clone();
    let mut prior = if total > 0.0 {
        (rule_pairs / total).clamp(1e-4, 0.5)
    } else {
        1e-3
    };
    // The share of matches among the candidates stays between what the rules link and twice that: a guard
    // against EM settling on a class of strangers who share a family name, which it did on large generated
    // sets before exact name agreement carried its term frequency into EM.
    let share_bounds = if rule_pairs >= 10.0 && total > 0.0 {
        let share = rule_pairs / total;
        (share, (2.0 * share).min(1.0 - 1e-6))
    } else {
        (1e-6, 1.0 - 1e-6)
    };

    for _ in 0..config.max_iterations {
        let mut m_counts: Vec<Vec<f64>> =
            fields.iter().map(|f| vec![0.0; f.levels().len()]).collect();
        let mut matched = 0.0;
        for (key, n) in &patterns {
            let (levels, buckets) = key.split_at(nf);
            let (mut pm, mut pu) = (prior, 1.0 - prior);
            for (k, &l) in levels.iter().enumerate() {
                if l != MISSING {
                    pm *= m[k][l as usize];
                    pu *= match buckets[k] {
                        u8::MAX => u[k][l as usize],
                        bucket => (-f64::from(bucket)).exp2(),
                    };
                }
            }
            let g = pm / (pm + pu);
            matched += g * n;
            for (k, &l) in levels.iter().enumerate() {
                if l != MISSING {
                    m_counts[k][l as usize] += g * n;
                }
            }
        }
        let new_m: Vec<Vec<f64>> = m_counts
            .iter()
            .zip(rule_m.iter().zip(&strength))
            .map(|(c, (prior_m, alpha))| {
                let with_prior: Vec<f64> =
                    c.iter().zip(prior_m).map(|(c, p)| c + alpha * p).collect();
                smooth(&with_prior, 1e-3)
            })
            .collect();
        let new_prior = if total > 0.0 {
            (matched / total).clamp(share_bounds.0, share_bounds.1)
        } else {
            prior
        };
        let change = new_m
            .iter()
            .flatten()
            .zip(m.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold((new_prior - prior).abs(), f64::max);
        m = new_m;
        prior = new_prior;
        if change < 1e-7 {
            break;
        }
    }

    let all_pairs = if same_set {
        left.len() as f64 * (left.len() as f64 - 1.0) / 2.0
    } else {
        left.len() as f64 * right.len() as f64
    };
    Model {
        fields: fields
            .iter()
            .zip(m)
            .zip(u)
            .map(|((&field, m), u)| FieldModel { field, m, u })
            .collect(),
        prior: if all_pairs > 0.0 {
            (prior * total / all_pairs).clamp(1e-12, 0.5)
        } else {
            prior
        },
        auto_link: config.auto_link,
        review: config.review,
        twin_guard: config.twin_guard,
        term_frequencies,
        training_records: right.len() as u64,
    }
}

/// Normalised counts with `pseudo` added to each level, so that no level has probability zero.
fn smooth(counts: &[f64], pseudo: f64) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + pseudo * counts.len() as f64;
    counts.iter().map(|c| (c + pseudo) / total).collect()
}

/// Before any evidence: most matches agree exactly, the rest spread over the lower levels.
fn default_m(levels: usize) -> Vec<f64> {
    let rest = 0.1 / (levels - 1) as f64;
    (0..levels)
        .map(|l| if l + 1 == levels { 0.9 } else { rest })
        .collect()
}

impl Model {
    /// The fields this model compares, in order.
    pub fn field_list(&self) -> Vec<Field> {
        self.fields.iter().map(|f| f.field).collect()
    }

    /// The prior for matching against `population` records: a person has about as many records in any
    /// population, so the chance that a given pair is that person's falls as the population grows.
    pub fn prior_for(&self, population: usize) -> f64 {
        if population as u64 > self.training_records {
            self.prior * self.training_records as f64 / population as f64
        } else {
            self.prior
        }
    }

    /// Scores one pair with the prior of training.
    pub fn score(&self, a: &Standardised, b: &Standardised) -> Score {
        self.score_with_prior(a, b, self.prior)
    }

    /// Scores one pair with another prior (see [`Model::prior_for`]).
    pub fn score_with_prior(&self, a: &Standardised, b: &Standardised, prior: f64) -> Score {
        let mut weight = 0.0;
        let mut birth_exact = false;
        let mut given = MISSING;
        let mut sex = MISSING;
        let mut identifier_close = false;
        for fm in &self.fields {
            let level = fm.field.compare(a, b);
            let top = level != MISSING && level as usize + 1 == fm.m.len();
            weight += match fm.field {
                Field::Given | Field::Family if top => self.exact_name_weight(fm, a),
                _ => fm.weight(level),
            };
            match fm.field {
                Field::Birth => birth_exact = top,
                Field::Given => given = level,
                Field::Sex => sex = level,
                Field::Identifier => {
                    identifier_close = level != MISSING && level as usize + 2 >= fm.m.len()
                }
                _ => {}
            }
        }
        // Twins: the same birth date, given names that are not variants of one name (at best Jaro-Winkler >= 0.80,
        // or below a nickname or one edit when the sexes differ), and no identifier to say otherwise.
        let unlike = given != MISSING && (given <= 1 || (given <= 2 && sex == 0));
        self.grade(
            weight,
            self.twin_guard && birth_exact && unlike && !identifier_close,
            prior,
        )
    }

    /// The weight of exact agreement on a name, adjusted by how common the name is: u becomes the share of
    /// records with that name (never less than one record in the training data).
    fn exact_name_weight(&self, fm: &FieldModel, a: &Standardised) -> f64 {
        let top = fm.m.len() - 1;
        let value = if fm.field == Field::Given {
            &a.given
        } else {
            &a.family
        };
        match self.term_frequencies.share(fm.field, value) {
            Some(share) => {
                let floor = 1.0 / self.term_frequencies.total.max(1) as f64;
                (fm.m[top] / share.max(floor)).log2()
            }
            None => fm.weight(top as u8),
        }
    }

    /// Turns a weight and a prior into a probability and grade; `twin` caps the grade at possible.
    pub fn grade(&self, weight: f64, twin: bool, prior: f64) -> Score {
        let prior_odds = (prior / (1.0 - prior)).log2();
        let mut probability = 1.0 / (1.0 + (-(weight + prior_odds)).exp2());
        if twin {
            probability = probability.min(self.review * 0.999);
        }
        let grade = if probability >= self.auto_link {
            Grade::Certain
        } else if probability >= self.review {
            Grade::Probable
        } else if weight > 0.0 {
            Grade::Possible
        } else {
            Grade::CertainlyNot
        };
        Score {
            weight,
            probability,
            grade,
        }
    }

    /// The model as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serialises")
    }

    /// A model from JSON written by [`Model::to_json`].
    pub fn from_json(json: &str) -> Result<Model, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::standardise::standardise;

    fn person(given: &str, family: &str, birth: &str) -> Standardised {
        standardise(&Record {
            given_names: vec![given.into()],
            family_name: family.into(),
            birth_date: birth.into(),
            ..Record::default()
        })
    }

    /// A hand-made model over given name, family name and birth date.
    fn model(prior: f64) -> Model {
        let field = |field: Field, m: &[f64], u: &[f64]| FieldModel {
            field,
            m: m.to_vec(),
            u: u.to_vec(),
        };
        let mut names = vec![person("ann", "smith", ""); 98];
        names.push(person("ann", "quaresma", ""));
        names.push(person("bo", "smith", ""));
        Model {
            fields: vec![
                field(
                    Field::Given,
                    &[0.05, 0.02, 0.03, 0.1, 0.8],
                    &[0.97, 0.01, 0.01, 0.005, 0.005],
                ),
                field(
                    Field::Family,
                    &[0.05, 0.02, 0.03, 0.1, 0.8],
                    &[0.97, 0.01, 0.01, 0.005, 0.005],
                ),
                field(
                    Field::Birth,
                    &[0.02, 0.02, 0.06, 0.9],
                    &[0.99, 0.005, 0.004, 0.001],
                ),
            ],
            prior,
            auto_link: 0.99,
            review: 0.5,
            twin_guard: true,
            term_frequencies: TermFrequencies::count(&names),
            training_records: 100,
        }
    }

    #[test]
    fn a_rare_family_name_counts_more_than_a_common_one() {
        let m = model(0.01);
        let common = m.score(&person("jo", "smith", ""), &person("jo", "smith", ""));
        let rare = m.score(&person("jo", "quaresma", ""), &person("jo", "quaresma", ""));
        assert!(rare.weight > common.weight + 5.0, "{rare:?} {common:?}");
        // smith is 99 of 100 records: agreeing on it says almost nothing.
        let family = &m.fields[1];
        assert!(
            (m.exact_name_weight(family, &person("", "smith", "")) - (0.8f64 / 0.99).log2()).abs()
                < 1e-9
        );
    }

    #[test]
    fn a_missing_value_weighs_nothing() {
        let m = model(0.01);
        let without = m.score(
            &person("jo", "quaresma", ""),
            &person("jo", "quaresma", "1970-01-01"),
        );
        let name_only = m.score(&person("jo", "quaresma", ""), &person("jo", "quaresma", ""));
        assert_eq!(without.weight, name_only.weight);
        assert_eq!(m.fields[2].weight(MISSING), 0.0);
    }

    #[test]
    fn probabilities_map_to_match_grades() {
        let m = model(0.5);
        assert_eq!(m.grade(10.0, false, 0.5).grade, Grade::Certain);
        assert_eq!(m.grade(2.0, false, 0.5).grade, Grade::Probable);
        assert_eq!(m.grade(10.0, true, 0.5).grade, Grade::Possible);
        assert_eq!(m.grade(2.0, false, 0.01).grade, Grade::Possible);
        assert_eq!(m.grade(-2.0, false, 0.01).grade, Grade::CertainlyNot);
        assert_eq!(Grade::CertainlyNot.code(), "certainly-not");
        assert!((m.grade(0.0, false, 0.2).probability - 0.2).abs() < 1e-12);
    }

    #[test]
    fn the_prior_falls_with_the_population() {
        let m = model(0.01);
        assert_eq!(m.prior_for(50), 0.01);
        assert!((m.prior_for(1000) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn twins_are_at_most_possible() {
        let m = model(0.5);
        let twin = m.score(
            &person("mary", "quaresma", "1990-05-05"),
            &person("john", "quaresma", "1990-05-05"),
        );
        assert_eq!(twin.grade, Grade::Possible);
        let same = m.score(
            &person("mary", "quaresma", "1990-05-05"),
            &person("mary", "quaresma", "1990-05-05"),
        );
        assert_eq!(same.grade, Grade::Certain);
    }

    #[test]
    fn training_finds_m_above_u_for_agreement() {
        let set = crate::generate::generate(&crate::generate::GeneratorConfig {
            identities: 500,
            ..Default::default()
        });
        let records: Vec<Standardised> = set.records.iter().map(standardise).collect();
        let pairs = crate::blocking::Blocking::default().dedup_pairs(&records);
        let config = TrainingConfig {
            random_pairs: 20_000,
            ..TrainingConfig::default()
        };
        let model = train(&records, &records, &pairs, &config);
        for f in &model.fields {
            let top = f.m.len() - 1;
            assert!(f.m[top] > f.u[top] && f.m[0] < f.u[0], "{f:?}");
            assert!(
                (f.m.iter().sum::<f64>() - 1.0).abs() < 1e-9
                    && (f.u.iter().sum::<f64>() - 1.0).abs() < 1e-9
            );
        }
        assert!(model.prior > 0.0 && model.prior < 0.01, "{}", model.prior);
    }
}
