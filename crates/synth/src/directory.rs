//! The provider directory: hospitals, clinics, a behavioural-health practice, an opioid treatment
//! program and a laboratory, with their practitioners (including behavioural-health licences such as
//! psychiatrist, psychologist, LCSW and LMFT) and PractitionerRoles. The roster's shape is fixed, so
//! patient bundles can refer to `Organization/synth-org-N` and `Practitioner/synth-prac-N` without
//! generating the directory; names, NPIs and places vary with the seed.

use fastrand::Rng;
use serde_json::{json, Value};

use crate::codes::{CITIES, FAMILY, GIVEN_FEMALE, GIVEN_MALE, NPI, NUCC, ORG_TYPE};
use crate::util::{address, concept, mix, npi, phone, pick, uuid};

/// What an organization is; fixes which practitioners work there and which patients go there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgKind {
    Hospital,
    Clinic,
    Pediatrics,
    BehavioralHealth,
    /// An opioid treatment program (methadone, buprenorphine, counselling).
    SubstanceUse,
    Laboratory,
}

/// The organizations, in id order (`synth-org-1` is the first).
pub const ORGS: &[OrgKind] = &[
    OrgKind::Hospital,
    OrgKind::Hospital,
    OrgKind::Hospital,
    OrgKind::Clinic,
    OrgKind::Clinic,
    OrgKind::Pediatrics,
    OrgKind::Clinic,
    OrgKind::BehavioralHealth,
    OrgKind::SubstanceUse,
    OrgKind::Laboratory,
];

/// A licence type: NUCC taxonomy code and display, the credential written after the name, and
/// whether the holder is a physician (addressed as "Dr.").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specialty {
    pub nucc: &'static str,
    pub display: &'static str,
    pub credential: &'static str,
    pub physician: bool,
}

#[rustfmt::skip]
pub const FAMILY_MEDICINE: Specialty = Specialty { nucc: "207Q00000X", display: "Family Medicine", credential: "MD", physician: true };
#[rustfmt::skip]
pub const INTERNAL_MEDICINE: Specialty = Specialty { nucc: "207R00000X", display: "Internal Medicine", credential: "DO", physician: true };
#[rustfmt::skip]
pub const EMERGENCY_MEDICINE: Specialty = Specialty { nucc: "207P00000X", display: "Emergency Medicine", credential: "MD", physician: true };
#[rustfmt::skip]
pub const PEDIATRICS: Specialty = Specialty { nucc: "208000000X", display: "Pediatrics", credential: "MD", physician: true };
#[rustfmt::skip]
pub const NURSE_PRACTITIONER: Specialty = Specialty { nucc: "363L00000X", display: "Nurse Practitioner", credential: "NP", physician: false };
#[rustfmt::skip]
pub const PHYSICIAN_ASSISTANT: Specialty = Specialty { nucc: "363A00000X", display: "Physician Assistant", credential: "PA-C", physician: false };
#[rustfmt::skip]
pub const PSYCHIATRIST: Specialty = Specialty { nucc: "2084P0800X", display: "Psychiatry & Neurology, Psychiatry", credential: "MD", physician: true };
#[rustfmt::skip]
pub const PSYCHOLOGIST: Specialty = Specialty { nucc: "103T00000X", display: "Psychologist", credential: "PhD", physician: false };
#[rustfmt::skip]
pub const LCSW: Specialty = Specialty { nucc: "1041C0700X", display: "Social Worker, Clinical", credential: "LCSW", physician: false };
#[rustfmt::skip]
pub const LMFT: Specialty = Specialty { nucc: "106H00000X", display: "Marriage & Family Therapist", credential: "LMFT", physician: false };
#[rustfmt::skip]
pub const ADDICTION_MEDICINE: Specialty = Specialty { nucc: "2084A0401X", display: "Psychiatry & Neurology, Addiction Medicine", credential: "MD", physician: true };
#[rustfmt::skip]
pub const ADDICTION_COUNSELOR: Specialty = Specialty { nucc: "101YA0400X", display: "Counselor, Addiction (Substance Use Disorder)", credential: "LADC", physician: false };
#[rustfmt::skip]
pub const PATHOLOGIST: Specialty = Specialty { nucc: "207ZP0102X", display: "Pathology, Anatomic Pathology & Clinical Pathology", credential: "MD", physician: true };

/// Who works at each kind of organization.
fn staff(kind: OrgKind) -> &'static [Specialty] {
    match kind {
        OrgKind::Hospital => &[
            EMERGENCY_MEDICINE,
            EMERGENCY_MEDICINE,
            INTERNAL_MEDICINE,
            NURSE_PRACTITIONER,
        ],
        OrgKind::Clinic => &[
            FAMILY_MEDICINE,
            FAMILY_MEDICINE,
            NURSE_PRACTITIONER,
            PHYSICIAN_ASSISTANT,
        ],
        OrgKind::Pediatrics => &[PEDIATRICS, PEDIATRICS, NURSE_PRACTITIONER, PEDIATRICS],
        OrgKind::BehavioralHealth => &[
            PSYCHIATRIST,
            PSYCHIATRIST,
            PSYCHOLOGIST,
            LCSW,
            LCSW,
            LMFT,
            LMFT,
        ],
        OrgKind::SubstanceUse => &[
            ADDICTION_MEDICINE,
            ADDICTION_COUNSELOR,
            ADDICTION_COUNSELOR,
            LCSW,
        ],
        OrgKind::Laboratory => &[PATHOLOGIST],
    }
}

/// One practitioner of the roster: number (for `synth-prac-N`), organization number, licence.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub number: usize,
    pub org: usize,
    pub specialty: Specialty,
}

/// The whole roster, numbered from 1 in organization order.
pub fn roster() -> Vec<Member> {
    let mut members = Vec::new();
    for (i, kind) in ORGS.iter().enumerate() {
        for specialty in staff(*kind) {
            members.push(Member {
                number: members.len() + 1,
                org: i + 1,
                specialty: *specialty,
            });
        }
    }
    members
}

pub fn org_id(number: usize) -> String {
    format!("synth-org-{number}")
}

pub fn practitioner_id(number: usize) -> String {
    format!("synth-prac-{number}")
}

/// Organization numbers (from 1) of one kind.
pub fn orgs_of(kind: OrgKind) -> Vec<usize> {
    ORGS.iter()
        .enumerate()
        .filter(|(_, k)| **k == kind)
        .map(|(i, _)| i + 1)
        .collect()
}

/// The directory as a transaction Bundle of `PUT`s, so loading it twice changes nothing.
pub fn bundle(seed: u64) -> Value {
    let mut rng = Rng::with_seed(mix(seed, u64::MAX));
    let mut entries = Vec::new();
    let mut org_cities = Vec::new();
    for (i, kind) in ORGS.iter().enumerate() {
        let city = *pick(&mut rng, CITIES);
        org_cities.push(city);
        let place = pick(
            &mut rng,
            &[
                "Riverside",
                "Lakeview",
                "Hillcrest",
                "Harbor",
                "Northgate",
                "Fairview",
                "Greenwood",
                "Westbrook",
                "Maplewood",
                "Cedar Valley",
            ],
        );
        let (name, type_text) = match kind {
            OrgKind::Hospital => (
                format!(
                    "{place} {} Hospital",
                    pick(&mut rng, &["General", "Memorial", "Regional", "Community"])
                ),
                "Hospital",
            ),
            OrgKind::Clinic => (
                format!(
                    "{place} {}",
                    pick(
                        &mut rng,
                        &[
                            "Family Health Center",
                            "Primary Care",
                            "Community Health Center",
                            "Medical Group"
                        ]
                    )
                ),
                "Primary care clinic",
            ),
            OrgKind::Pediatrics => (format!("{place} Pediatrics"), "Pediatric clinic"),
            OrgKind::BehavioralHealth => (
                format!("{place} Behavioral Health Associates"),
                "Behavioral health practice",
            ),
            OrgKind::SubstanceUse => (
                format!("{place} Recovery Center"),
                "Opioid treatment program",
            ),
            OrgKind::Laboratory => (
                format!("{place} Clinical Laboratory"),
                "Clinical laboratory",
            ),
        };
        let id = org_id(i + 1);
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid(&mut rng)),
            "resource": {
                "resourceType": "Organization",
                "id": id,
                "identifier": [{ "system": NPI, "value": npi(&mut rng, true) }],
                "active": true,
                "type": [{
                    "coding": [{ "system": ORG_TYPE, "code": "prov", "display": "Healthcare Provider" }],
                    "text": type_text
                }],
                "name": name,
                "telecom": [{ "system": "phone", "value": phone(&mut rng, city.3), "use": "work" }],
                "address": [address(&mut rng, &city, "work")]
            },
            "request": { "method": "PUT", "url": format!("Organization/{id}") }
        }));
    }
    for member in roster() {
        let city = org_cities[member.org - 1];
        let female = rng.bool();
        let given = if female {
            pick(&mut rng, GIVEN_FEMALE)
        } else {
            pick(&mut rng, GIVEN_MALE)
        };
        let family = pick(&mut rng, FAMILY);
        let s = member.specialty;
        let mut name = json!({ "use": "official", "family": family, "given": [given], "suffix": [s.credential] });
        if s.physician {
            name["prefix"] = json!(["Dr."]);
        }
        let id = practitioner_id(member.number);
        let licence = format!(
            "{}{:06}",
            s.credential.replace('-', ""),
            rng.u32(0..1_000_000)
        );
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid(&mut rng)),
            "resource": {
                "resourceType": "Practitioner",
                "id": id,
                "identifier": [{ "system": NPI, "value": npi(&mut rng, false) }],
                "active": true,
                "name": [name],
                "telecom": [
                    { "system": "phone", "value": phone(&mut rng, city.3), "use": "work" },
                    { "system": "email", "value": format!("{}.{}@synth-provider.example", given.to_lowercase(), family.to_lowercase().replace(['\'', ' '], "")), "use": "work" }
                ],
                "gender": if female { "female" } else { "male" },
                "qualification": [{
                    "identifier": [{ "system": format!("https://synth.nutmeg.example/fhir/sid/license/{}", city.1), "value": licence }],
                    "code": { "coding": [{ "system": NUCC, "code": s.nucc, "display": s.display }], "text": s.credential },
                    "issuer": { "display": format!("{} licensing board", city.1) }
                }]
            },
            "request": { "method": "PUT", "url": format!("Practitioner/{id}") }
        }));
        let role_id = format!("synth-role-{}", member.number);
        let mut role = json!({
            "resourceType": "PractitionerRole",
            "id": role_id,
            "active": true,
            "practitioner": { "reference": format!("Practitioner/{id}") },
            "organization": { "reference": format!("Organization/{}", org_id(member.org)) },
            "specialty": [concept(NUCC, s.nucc, s.display)]
        });
        if s.physician {
            role["code"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": "doctor", "display": "Doctor" }] }]);
        }
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", uuid(&mut rng)),
            "resource": role,
            "request": { "method": "PUT", "url": format!("PractitionerRole/{role_id}") }
        }));
    }
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}
