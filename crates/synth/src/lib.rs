//! Deterministic synthetic FHIR R4 data for the demo, the tests and the benchmarks. The same seed and
//! size always give the same resources. Every name, identifier and address is made up: SSNs start with
//! 9 (never issued), phone numbers are in the 555-01xx range reserved for fiction, e-mail addresses use
//! the reserved `example` domains.
//!
//! The data comes as FHIR transaction Bundles: [`Generator::directory`] (organizations, practitioners
//! and their roles) first, then [`Generator::patient_bundle`] for each patient index. Patient bundles
//! refer to the directory by `Organization/synth-org-N` and `Practitioner/synth-prac-N`, and to their
//! own resources by `urn:uuid`.

mod codes;
mod directory;
mod patient;
mod util;

use serde_json::Value;

/// The default mean number of encounters per patient, which gives about 100 resources per patient.
pub const DEFAULT_MEAN_ENCOUNTERS: u32 = 10;

/// How many patients [`Generator::resources_per_patient_avg`] looks at.
const SAMPLE: u64 = 200;

/// Makes the synthetic data of one seed. Cheap to create and to share between threads.
#[derive(Clone, Debug)]
pub struct Generator {
    seed: u64,
    mean_encounters: u32,
    roster: patient::Roster,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            seed,
            mean_encounters: DEFAULT_MEAN_ENCOUNTERS,
            roster: patient::Roster::new(),
        }
    }

    /// Sets the mean number of encounters per patient (each brings about ten resources), to size the
    /// records; at least 1.
    pub fn with_mean_encounters(mut self, mean: u32) -> Self {
        self.mean_encounters = mean.max(1);
        self
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn mean_encounters(&self) -> u32 {
        self.mean_encounters
    }

    /// The provider directory as a transaction Bundle of `PUT`s: organizations (hospitals, clinics, a
    /// behavioural-health practice, an opioid treatment program, a laboratory), practitioners with NPI
    /// identifiers and licences, and their PractitionerRoles. Load it before any patient bundle.
    pub fn directory(&self) -> Value {
        directory::bundle(self.seed)
    }

    /// Patient number `index` as a transaction Bundle. Depends only on the seed, the size setting and
    /// `index`, so bundles can be made in parallel and in any order.
    pub fn patient_bundle(&self, index: u64) -> Value {
        patient::bundle(self.seed, index, self.mean_encounters, &self.roster)
    }

    /// The mean number of resources per patient bundle, measured over the first 200 patients.
    pub fn resources_per_patient_avg(&self) -> f64 {
        let total: usize = (0..SAMPLE)
            .map(|i| entry_count(&self.patient_bundle(i)))
            .sum();
        total as f64 / SAMPLE as f64
    }

    /// About how many patients make `resources` resources (at least one).
    pub fn patients_for_resources(&self, resources: u64) -> u64 {
        ((resources as f64 / self.resources_per_patient_avg()).ceil() as u64).max(1)
    }
}

/// The number of entries of a Bundle (0 for anything else).
pub fn entry_count(bundle: &Value) -> usize {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}
