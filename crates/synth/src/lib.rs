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

/// A generated bundle as a participant sends it. The exchange lets participants create Patients by
/// `POST` or conditional update only (never `PUT Patient/[id]`: that would tell them whether a
/// withheld id exists), so each `PUT Patient/[id]` entry becomes `PUT Patient?identifier=SYSTEM|VALUE`
/// without the id; the other entries refer to the Patient by its `urn:uuid`, which the transaction
/// resolves to the id the exchange assigns.
pub fn as_participant(bundle: &mut Value) {
    let Some(entries) = bundle["entry"].as_array_mut() else {
        return;
    };
    for entry in entries {
        let by_id = entry["request"]["method"] == "PUT"
            && entry["request"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("Patient/"));
        if !by_id {
            continue;
        }
        let identifier = &entry["resource"]["identifier"][0];
        let (Some(system), Some(value)) =
            (identifier["system"].as_str(), identifier["value"].as_str())
        else {
            continue;
        };
        let url = format!("Patient?identifier={}|{}", encode(system), encode(value));
        entry["request"]["url"] = Value::String(url);
        if let Some(resource) = entry["resource"].as_object_mut() {
            resource.remove("id");
        }
    }
}

/// A query-string value percent-encoded (everything but RFC 3986's unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod participant_tests {
    use serde_json::json;

    #[test]
    fn a_participant_sends_its_patients_as_conditional_updates() {
        let generator = crate::Generator::new(7);
        let mut bundle = generator.patient_bundle(3);
        crate::as_participant(&mut bundle);
        let entries = bundle["entry"].as_array().expect("entries");
        let patient = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient")
            .expect("a Patient");
        let url = patient["request"]["url"].as_str().expect("url");
        assert!(url.starts_with("Patient?identifier="), "{url}");
        assert!(url.contains('|'), "{url}");
        assert_eq!(patient["request"]["method"], "PUT");
        assert!(patient["resource"]["id"].is_null());
        assert!(entries.iter().all(|e| !e["request"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("Patient/"))));
        // The rest still refers to the Patient by its full URL.
        let full_url = patient["fullUrl"].as_str().expect("fullUrl");
        assert!(json!(entries).to_string().matches(full_url).count() > 1);
    }
}
