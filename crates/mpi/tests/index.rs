//! The engine end to end on generated data: training is deterministic, a model survives JSON, the incremental
//! index finds a noisy copy of a record, and twins are never linked.

use std::collections::HashSet;

use mpi::{
    Blocking, Generator, GeneratorConfig, Grade, Index, Model, Standardised, TrainingConfig,
};

fn trained(seed: u64) -> (mpi::Generated, Vec<Standardised>, Model) {
    let set = mpi::generate(&GeneratorConfig {
        seed,
        identities: 3000,
        twin_rate: 0.05,
        ..GeneratorConfig::default()
    });
    let records: Vec<Standardised> = set.records.iter().map(mpi::standardise).collect();
    let pairs = Blocking::default().dedup_pairs(&records);
    let model = mpi::train(
        &records,
        &records,
        &pairs,
        &TrainingConfig {
            random_pairs: 100_000,
            ..TrainingConfig::default()
        },
    );
    (set, records, model)
}

#[test]
fn same_seed_and_input_give_the_same_model_and_matches() {
    let (_, records, a) = trained(11);
    let (_, _, b) = trained(11);
    assert!(a == b, "two trainings differ");
    assert_eq!(a.to_json(), b.to_json());
    let pairs = Blocking::default().dedup_pairs(&records);
    assert_eq!(
        mpi::matches(&a, &records, &records, &pairs),
        mpi::matches(&b, &records, &records, &pairs)
    );
}

#[test]
fn a_model_survives_json() {
    let (_, records, model) = trained(12);
    let back = Model::from_json(&model.to_json()).unwrap();
    assert_eq!(back.term_frequencies, model.term_frequencies);
    // serde_json reads floats back to within a unit in the last place, so scores agree to far below any threshold.
    for (a, b) in Blocking::default()
        .dedup_pairs(&records)
        .into_iter()
        .take(2000)
    {
        let (x, y) = (
            model.score(&records[a as usize], &records[b as usize]),
            back.score(&records[a as usize], &records[b as usize]),
        );
        assert!(
            (x.probability - y.probability).abs() < 1e-9 && x.grade == y.grade,
            "{x:?} {y:?}"
        );
    }
}

#[test]
fn generated_duplicates_are_found_and_different_people_kept_apart() {
    let (set, records, model) = trained(13);
    let pairs = Blocking::default().dedup_pairs(&records);
    let truth: HashSet<(u32, u32)> = pairs
        .iter()
        .copied()
        .filter(|&(i, j)| set.person[i as usize] == set.person[j as usize])
        .collect();
    let all_true = (0..set.records.len())
        .flat_map(|i| (i + 1..set.records.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| set.person[i] == set.person[j])
        .count();
    let found = mpi::matches(&model, &records, &records, &pairs);
    let accuracy = mpi::accuracy(found.iter().map(|l| (l.left, l.right)), &truth);
    assert!(
        truth.len() as f64 >= 0.97 * all_true as f64,
        "blocking found {} of {all_true}",
        truth.len()
    );
    assert!(
        accuracy.precision >= 0.99 && accuracy.recall >= 0.9,
        "{accuracy:?}"
    );
}

#[test]
fn twins_are_not_linked() {
    let (_, _, model) = trained(14);
    let mut g = Generator::new(99);
    let mut index = Index::new(Blocking::default());
    let mut twins = Vec::new();
    let mut people = Vec::new();
    for k in 0..300 {
        let person = g.identity(if k % 2 == 0 { 1.0 } else { 0.0 });
        let twin = g.twin(&person);
        index.insert(format!("p{k}"), &person);
        people.push(person);
        twins.push((k, twin));
    }
    for (k, twin) in &twins {
        let matches = index.match_record(twin, &model);
        assert!(
            matches.iter().all(|m| !m.grade.is_match()),
            "twin of p{k} linked: {twin:?} -> {matches:?} {:?}",
            matches
                .iter()
                .map(|m| people[m.id[1..].parse::<usize>().unwrap()].clone())
                .collect::<Vec<_>>()
        );
        assert!(
            index.candidates(twin).contains(&format!("p{k}").as_str()),
            "the twin is a candidate"
        );
    }
}

#[test]
fn the_index_matches_a_noisy_copy_to_its_original() {
    let (_, _, model) = trained(15);
    let mut g = Generator::new(7);
    let mut index = Index::new(Blocking::default());
    let people: Vec<_> = (0..2000).map(|_| g.identity(0.7)).collect();
    for (k, p) in people.iter().enumerate() {
        index.insert(format!("p{k}"), p);
    }
    assert_eq!(index.len(), 2000);
    let mut top = 0;
    for (k, p) in people.iter().enumerate().take(500) {
        let copy = g.noisy_copy(p);
        let matches = index.match_record(&copy, &model);
        if matches
            .first()
            .is_some_and(|m| m.id == format!("p{k}") && m.grade.is_match())
        {
            top += 1;
        }
    }
    assert!(
        top >= 475,
        "{top} of 500 noisy copies matched their original first"
    );

    // An exact copy is certain; replacing and removing take effect.
    let first = index.match_record(&people[0], &model);
    assert_eq!(
        (first[0].id.as_str(), first[0].grade),
        ("p0", Grade::Certain)
    );
    index.insert("p0", &people[1]);
    assert!(index
        .match_record(&people[0], &model)
        .iter()
        .all(|m| m.id != "p0" || !m.grade.is_match()));
    assert!(index.remove("p0"));
    assert!(!index.remove("p0"));
    assert_eq!(index.len(), 1999);
}
