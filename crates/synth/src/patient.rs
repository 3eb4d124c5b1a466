//! One patient's record as a transaction Bundle: the Patient (`PUT` by a UUID id, so a reload replaces
//! it), then each encounter in time order with the conditions diagnosed, the observations taken and the
//! medicines prescribed there, then allergies (all `POST`, linked by `urn:uuid` full URLs). A patient
//! depends only on the seed and its index, so bundles can be made in parallel and in any order.

use fastrand::Rng;
use serde_json::{json, Value};

use crate::codes::*;
use crate::directory::{self, Member, OrgKind};
use crate::util::*;

/// The roster, grouped once per generator so that each patient only picks from it.
#[derive(Clone, Debug)]
pub struct Roster {
    by_org: Vec<Vec<Member>>,
    hospitals: Vec<usize>,
    clinics: Vec<usize>,
    pediatrics: usize,
    behavioral: usize,
    substance_use: usize,
    laboratory: usize,
}

impl Roster {
    pub fn new() -> Self {
        let members = directory::roster();
        let mut by_org = vec![Vec::new(); directory::ORGS.len() + 1];
        for m in members {
            by_org[m.org].push(m);
        }
        let first = |kind| directory::orgs_of(kind).first().copied().unwrap_or(1);
        Roster {
            by_org,
            hospitals: directory::orgs_of(OrgKind::Hospital),
            clinics: directory::orgs_of(OrgKind::Clinic),
            pediatrics: first(OrgKind::Pediatrics),
            behavioral: first(OrgKind::BehavioralHealth),
            substance_use: first(OrgKind::SubstanceUse),
            laboratory: first(OrgKind::Laboratory),
        }
    }

    /// A practitioner of an organization; `physician` narrows to those who prescribe as doctors.
    fn member(&self, rng: &mut Rng, org: usize, physician: Option<bool>) -> Member {
        let staff = &self.by_org[org];
        let fitting: Vec<&Member> = staff
            .iter()
            .filter(|m| physician.is_none_or(|p| m.specialty.physician == p))
            .collect();
        if fitting.is_empty() {
            *pick(rng, staff)
        } else {
            **pick(rng, &fitting)
        }
    }
}

/// The kinds of visit, which decide where, with whom, and what is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    Wellness,
    Symptom,
    Emergency,
    Inpatient,
    BehavioralHealth,
    SubstanceUse,
}

struct Planned {
    visit: Visit,
    at: i64,
    /// Indices into [`DIAGNOSES`] first recorded at this visit.
    diagnoses: Vec<usize>,
}

/// What stays the same about a patient across visits.
struct Person {
    urn: String,
    birth: i64,
    female: bool,
    height_cm: f64,
    bmi: f64,
    hypertensive: bool,
    diabetic: bool,
    depressed: bool,
    anxious: bool,
    alcohol: bool,
    opioids: bool,
    clinic: usize,
    pcp: Member,
    hospital: usize,
}

const YEAR: i64 = 365 * DAY + DAY / 4;

pub fn bundle(seed: u64, index: u64, mean_encounters: u32, roster: &Roster) -> Value {
    let mut rng = Rng::with_seed(mix(seed, index));
    let rng = &mut rng;
    let mut entries: Vec<Value> = Vec::with_capacity(16 * mean_encounters as usize);

    let id = uuid(rng);
    let urn = format!("urn:uuid:{id}");
    let female = rng.bool();
    let age_years = if rng.f64() < 0.22 {
        rng.i64(0..18)
    } else {
        rng.i64(18..95)
    };
    let birth = TODAY - age_years * YEAR - rng.i64(60..365) * DAY;
    let age_now = (TODAY - birth) / YEAR;

    // Diagnoses the patient will have, by area; chronic ones get likelier with age.
    let mut chronic = Vec::new();
    let mut mental = Vec::new();
    let mut substance = Vec::new();
    for (i, dx) in DIAGNOSES.iter().enumerate() {
        if age_now < i64::from(dx.min_age) {
            continue;
        }
        let p = match dx.area {
            Area::General => dx.prevalence * (age_now as f64 / 50.0).clamp(0.3, 1.6),
            Area::MentalHealth | Area::SubstanceUse => dx.prevalence,
            Area::Acute => continue,
        };
        if rng.f64() < p {
            match dx.area {
                Area::General => chronic.push(i),
                Area::MentalHealth => mental.push(i),
                _ => substance.push(i),
            }
        }
    }
    let has =
        |list: &[usize], code: &str| list.iter().any(|i| DIAGNOSES[*i].icd10.starts_with(code));
    // Nicotine dependence alone is handled in primary care; other substance use brings program visits.
    let (tobacco, treated): (Vec<usize>, Vec<usize>) = substance
        .iter()
        .partition(|i| DIAGNOSES[**i].icd10.starts_with("F17"));
    chronic.extend(tobacco);
    let substance = treated;

    let child = age_now < 18;
    let clinic = if child {
        roster.pediatrics
    } else {
        *pick(rng, &roster.clinics)
    };
    let pcp = roster.member(rng, clinic, Some(true));
    let hospital = *pick(rng, &roster.hospitals);
    let obese = has(&chronic, "E66");
    let person = Person {
        urn: urn.clone(),
        birth,
        female,
        height_cm: if female { 162.0 } else { 176.0 } + (rng.f64() - 0.5) * 16.0,
        bmi: if obese {
            between(rng, 30.5, 41.0, 1)
        } else {
            between(rng, 19.0, 29.5, 1)
        },
        hypertensive: has(&chronic, "I10"),
        diabetic: has(&chronic, "E11"),
        depressed: has(&mental, "F32") || has(&mental, "F33"),
        anxious: has(&mental, "F41") || has(&mental, "F43"),
        alcohol: has(&substance, "F10"),
        opioids: has(&substance, "F11"),
        clinic,
        pcp,
        hospital,
    };

    entries.push(patient(rng, &id, &urn, index, seed, &person, age_now));

    // The visits, spread over up to twelve years of history.
    let end = TODAY - 7 * DAY;
    let start = (TODAY - 12 * YEAR).max(birth + DAY).min(end - DAY);
    let mean = i64::from(mean_encounters.max(1));
    let count = rng.i64((mean / 2).max(1)..=(mean * 3 / 2).max(1)) as usize;
    let mut plans: Vec<Planned> = (0..count)
        .map(|_| {
            let r = rng.f64();
            let visit = if !mental.is_empty() && r < 0.3 {
                Visit::BehavioralHealth
            } else if !substance.is_empty() && r > 0.7 {
                Visit::SubstanceUse
            } else {
                match rng.u32(0..100) {
                    0..=39 => Visit::Wellness,
                    40..=84 => Visit::Symptom,
                    85..=96 => Visit::Emergency,
                    _ => Visit::Inpatient,
                }
            };
            let day = rng.i64(start / DAY..=end / DAY);
            let hour = if visit == Visit::Emergency {
                rng.i64(0..24)
            } else {
                rng.i64(8..18)
            };
            Planned {
                visit,
                at: day * DAY + hour * 3600 + rng.i64(0..12) * 300,
                diagnoses: Vec::new(),
            }
        })
        .collect();
    // Anyone with a behavioural-health or substance-use diagnosis has been seen for it at least once.
    for (needed, visit) in [
        (!mental.is_empty(), Visit::BehavioralHealth),
        (!substance.is_empty(), Visit::SubstanceUse),
    ] {
        if needed && !plans.iter().any(|p| p.visit == visit) {
            let at = rng.i64(start / DAY..=end / DAY) * DAY + 10 * 3600;
            plans.push(Planned {
                visit,
                at,
                diagnoses: Vec::new(),
            });
        }
    }
    plans.sort_by_key(|p| p.at);

    // Record each diagnosis at a fitting visit: chronic ones at a primary-care visit, the sensitive ones
    // at the first visit of their kind, acute ones at symptom and emergency visits.
    let primary: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.visit, Visit::Wellness | Visit::Symptom | Visit::Inpatient))
        .map(|(i, _)| i)
        .collect();
    for dx in chronic {
        let at = if primary.is_empty() {
            rng.usize(..plans.len())
        } else {
            *pick(rng, &primary)
        };
        plans[at].diagnoses.push(dx);
    }
    for (list, visit) in [
        (mental, Visit::BehavioralHealth),
        (substance, Visit::SubstanceUse),
    ] {
        if let Some(first) = plans.iter().position(|p| p.visit == visit) {
            plans[first].diagnoses.extend(list);
        }
    }
    let acute: Vec<usize> = (0..DIAGNOSES.len())
        .filter(|i| DIAGNOSES[*i].area == Area::Acute)
        .collect();
    for plan in plans.iter_mut() {
        if matches!(plan.visit, Visit::Symptom | Visit::Emergency) && rng.f64() < 0.8 {
            let age = (plan.at - birth) / YEAR;
            let fitting: Vec<usize> = acute
                .iter()
                .copied()
                .filter(|i| i64::from(DIAGNOSES[*i].min_age) <= age)
                .collect();
            if !fitting.is_empty() {
                plan.diagnoses.push(*pick(rng, &fitting));
            }
        }
    }

    for plan in &plans {
        encounter(rng, &mut entries, &person, plan, roster);
    }
    allergies(rng, &mut entries, &person, &plans);

    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// A permutation of `0..modulus` (the multiplier is prime to 2 and 5), so that identifiers look random
/// but never collide within one data set.
fn scramble(index: u64, seed: u64, multiplier: u128, modulus: u128) -> u128 {
    (u128::from(index) * multiplier + u128::from(mix(seed, 17))) % modulus
}

fn patient(
    rng: &mut Rng,
    id: &str,
    urn: &str,
    index: u64,
    seed: u64,
    person: &Person,
    age: i64,
) -> Value {
    let city = *pick(rng, CITIES);
    let given_pool = if person.female {
        GIVEN_FEMALE
    } else {
        GIVEN_MALE
    };
    let given = *pick(rng, given_pool);
    let family = *pick(rng, FAMILY);
    let mut givens = vec![given];
    if rng.f64() < 0.6 {
        givens.push(*pick(rng, given_pool));
    }
    let mut name = json!({ "use": "official", "family": family, "given": givens });
    if age >= 18 {
        name["prefix"] = json!([if person.female { "Ms." } else { "Mr." }]);
    }
    let gender = match rng.u32(0..200) {
        0 => "other",
        1 => "unknown",
        _ if person.female => "female",
        _ => "male",
    };
    let mrn = format!(
        "{:010}",
        scramble(index, seed, 7_919_000_003, 10_000_000_000)
    );
    // Social Security never issues numbers starting with 9, so these can never be someone's.
    let ssn = format!("9{:08}", scramble(index, seed ^ 0x55, 48_271, 100_000_000));
    let email = format!(
        "{}.{}{}@{}",
        ascii_lower(given),
        ascii_lower(family),
        rng.u32(1..100),
        pick(rng, &["example.com", "example.org", "example.net"])
    );
    let mut resource = json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [
            {
                "use": "usual",
                "type": concept(V2_0203, "MR", "Medical record number"),
                "system": MRN,
                "value": mrn
            },
            {
                "type": concept(V2_0203, "SS", "Social Security number"),
                "system": SSN,
                "value": ssn
            }
        ],
        "active": true,
        "name": [name],
        "telecom": [
            { "system": "phone", "value": phone(rng, city.3), "use": if rng.bool() { "home" } else { "mobile" } },
            { "system": "email", "value": email, "use": "home" }
        ],
        "gender": gender,
        "birthDate": date(person.birth),
        "address": [address(rng, &city, "home")],
        "communication": [{
            "language": if rng.f64() < 0.85 { concept("urn:ietf:bcp:47", "en-US", "English (United States)") } else { concept("urn:ietf:bcp:47", "es", "Spanish") },
            "preferred": true
        }],
        "generalPractitioner": [{ "reference": format!("Practitioner/{}", directory::practitioner_id(person.pcp.number)) }],
        "managingOrganization": { "reference": format!("Organization/{}", directory::org_id(person.clinic)) }
    });
    if age >= 18 {
        let (code, display) = *pick(
            rng,
            &[
                ("M", "Married"),
                ("S", "Never Married"),
                ("D", "Divorced"),
                ("W", "Widowed"),
            ],
        );
        resource["maritalStatus"] = concept(MARITAL, code, display);
    }
    json!({ "fullUrl": urn, "resource": resource, "request": { "method": "PUT", "url": format!("Patient/{id}") } })
}

/// Lower-case ASCII letters of a name, for e-mail addresses.
fn ascii_lower(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'á' | 'Á' => Some('a'),
            'é' | 'É' => Some('e'),
            'í' | 'Í' => Some('i'),
            'ó' | 'Ó' => Some('o'),
            'ú' | 'Ú' => Some('u'),
            'ñ' | 'Ñ' => Some('n'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn post(urn: String, resource: Value) -> Value {
    let ty = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    json!({ "fullUrl": urn, "resource": resource, "request": { "method": "POST", "url": ty } })
}

fn reference(ty: &str, id: String) -> Value {
    json!({ "reference": format!("{ty}/{id}") })
}

fn encounter(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    person: &Person,
    plan: &Planned,
    roster: &Roster,
) {
    let age = (plan.at - person.birth) / YEAR;
    let (org, who) = match plan.visit {
        Visit::Wellness | Visit::Symptom => {
            let who = if rng.f64() < 0.7 {
                person.pcp
            } else {
                roster.member(rng, person.clinic, None)
            };
            (person.clinic, who)
        }
        Visit::Emergency | Visit::Inpatient => (
            person.hospital,
            roster.member(rng, person.hospital, Some(true)),
        ),
        Visit::BehavioralHealth => (
            roster.behavioral,
            roster.member(rng, roster.behavioral, None),
        ),
        Visit::SubstanceUse => (
            roster.substance_use,
            roster.member(rng, roster.substance_use, None),
        ),
    };
    let practitioner = directory::practitioner_id(who.number);
    let virtual_visit = plan.visit == Visit::BehavioralHealth && rng.f64() < 0.25;
    let (class_code, class_display) = match plan.visit {
        _ if virtual_visit => ("VR", "virtual"),
        Visit::Emergency => ("EMER", "emergency"),
        Visit::Inpatient => ("IMP", "inpatient encounter"),
        _ => ("AMB", "ambulatory"),
    };
    let (type_code, type_display) = match plan.visit {
        Visit::Wellness if age < 18 => ("410620009", "Well child visit (procedure)"),
        Visit::Wellness => ("185349003", "Encounter for check up (procedure)"),
        Visit::Symptom => ("185345009", "Encounter for symptom (procedure)"),
        Visit::Emergency => ("50849002", "Emergency room admission (procedure)"),
        Visit::Inpatient => ("32485007", "Hospital admission (procedure)"),
        Visit::BehavioralHealth if who.specialty.physician => {
            ("390906007", "Follow-up encounter (procedure)")
        }
        Visit::BehavioralHealth => ("75516001", "Psychotherapy (regime/therapy)"),
        Visit::SubstanceUse => ("390906007", "Follow-up encounter (procedure)"),
    };
    let length = match plan.visit {
        Visit::Inpatient => rng.i64(1..6) * DAY + rng.i64(0..12) * 3600,
        Visit::Emergency => rng.i64(2..8) * 3600,
        Visit::BehavioralHealth => 50 * 60,
        _ => rng.i64(2..7) * 300,
    };
    let encounter_urn = format!("urn:uuid:{}", uuid(rng));
    let condition_urns: Vec<String> = plan
        .diagnoses
        .iter()
        .map(|_| format!("urn:uuid:{}", uuid(rng)))
        .collect();
    let mut resource = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": { "system": ACT_CODE, "code": class_code, "display": class_display },
        "type": [concept(SNOMED, type_code, type_display)],
        "subject": { "reference": person.urn },
        "participant": [{ "individual": reference("Practitioner", practitioner.clone()) }],
        "period": { "start": date_time(plan.at), "end": date_time(plan.at + length) },
        "serviceProvider": reference("Organization", directory::org_id(org))
    });
    if !condition_urns.is_empty() {
        resource["diagnosis"] = Value::Array(
            condition_urns
                .iter()
                .enumerate()
                .map(|(rank, urn)| json!({ "condition": { "reference": urn }, "rank": rank + 1 }))
                .collect(),
        );
    }
    entries.push(post(encounter_urn.clone(), resource));

    let ctx = Context {
        person,
        encounter: &encounter_urn,
        practitioner: &practitioner,
        at: plan.at,
    };
    for (dx, urn) in plan.diagnoses.iter().zip(&condition_urns) {
        condition(rng, entries, &ctx, *dx, urn);
    }

    // Measurements: vital signs at most visits, labs at some check-ups and admissions, screening scores
    // at behavioural-health visits, drug screens at substance-use visits.
    let at = plan.at + 10 * 60;
    match plan.visit {
        Visit::Wellness => {
            vitals(rng, entries, &ctx, at, age, true);
            if age >= 18 && rng.f64() < 0.6 {
                labs(rng, entries, &ctx, at + 3600, roster, LABS);
            }
            if age >= 12 && rng.f64() < 0.5 {
                score(rng, entries, &ctx, at, PHQ9, person.depressed);
            }
        }
        Visit::Symptom | Visit::Emergency => vitals(rng, entries, &ctx, at, age, false),
        Visit::Inpatient => {
            vitals(rng, entries, &ctx, at, age, false);
            labs(rng, entries, &ctx, at + 2 * 3600, roster, &LABS[5..]);
        }
        Visit::BehavioralHealth => {
            score(rng, entries, &ctx, at, PHQ9, person.depressed);
            if person.anxious || rng.bool() {
                score(rng, entries, &ctx, at, GAD7, person.anxious);
            }
        }
        Visit::SubstanceUse => {
            let panel = if person.opioids {
                DRUG_SCREENS.len()
            } else {
                rng.usize(1..=DRUG_SCREENS.len())
            };
            for (i, (code, display)) in DRUG_SCREENS.iter().enumerate().take(panel) {
                let positive = (i == 0 && person.opioids && rng.f64() < 0.35) || rng.f64() < 0.08;
                let answer = if positive { POSITIVE } else { NEGATIVE };
                let mut o = observation(
                    &ctx,
                    "laboratory",
                    "Laboratory",
                    concept(LOINC, code, display),
                    at,
                );
                o["valueCodeableConcept"] = concept(SNOMED, answer.0, answer.1);
                entries.push(post(format!("urn:uuid:{}", uuid(rng)), o));
            }
            if person.alcohol {
                score(rng, entries, &ctx, at, AUDIT_C, true);
            }
            let mut bp = Vec::new();
            blood_pressure(rng, &mut bp, &ctx, at, person.hypertensive);
            entries.extend(bp);
        }
    }
}

/// What every resource of one visit shares.
struct Context<'a> {
    person: &'a Person,
    encounter: &'a str,
    practitioner: &'a str,
    at: i64,
}

fn condition(rng: &mut Rng, entries: &mut Vec<Value>, ctx: &Context, dx: usize, urn: &str) {
    let d = DIAGNOSES[dx];
    let mut coding = vec![json!({ "system": ICD10, "code": d.icd10, "display": d.icd10_display })];
    if let Some((code, display)) = d.snomed {
        coding.push(json!({ "system": SNOMED, "code": code, "display": display }));
    }
    let acute = d.area == Area::Acute;
    let (clinical, abated) = if acute {
        ("resolved", Some(ctx.at + rng.i64(5..30) * DAY))
    } else if d.area == Area::MentalHealth && rng.f64() < 0.2 {
        ("remission", Some(ctx.at + rng.i64(90..700) * DAY))
    } else {
        ("active", None)
    };
    let abated = abated.filter(|t| *t < TODAY);
    let clinical = if abated.is_none() { "active" } else { clinical };
    let (category, category_display) = if acute {
        ("encounter-diagnosis", "Encounter Diagnosis")
    } else {
        ("problem-list-item", "Problem List Item")
    };
    // Chronic problems often started before they were written down.
    let onset = if acute {
        ctx.at
    } else {
        (ctx.at - rng.i64(0..3) * YEAR).max(ctx.person.birth)
    };
    let mut resource = json!({
        "resourceType": "Condition",
        "clinicalStatus": coded(COND_CLINICAL, clinical),
        "verificationStatus": coded(COND_VERIFICATION, "confirmed"),
        "category": [concept(COND_CATEGORY, category, category_display)],
        "code": { "coding": coding, "text": d.icd10_display },
        "subject": { "reference": ctx.person.urn },
        "encounter": { "reference": ctx.encounter },
        "onsetDateTime": date(onset),
        "recordedDate": date_time(ctx.at),
        "recorder": reference("Practitioner", ctx.practitioner.to_owned())
    });
    if let Some(t) = abated {
        resource["abatementDateTime"] = json!(date(t));
    }
    entries.push(post(urn.to_owned(), resource));

    let treated = if acute { 0.5 } else { 0.75 };
    if !d.treatments.is_empty() && rng.f64() < treated {
        let med = MEDICATIONS[*pick(rng, d.treatments)];
        medication(rng, entries, ctx, med, urn, abated);
    }
}

fn medication(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    ctx: &Context,
    med: Medication,
    reason: &str,
    ended: Option<i64>,
) {
    let status = if !med.chronic {
        "completed"
    } else if ended.is_some() || rng.f64() < 0.1 {
        "stopped"
    } else {
        "active"
    };
    let times = match med.per_day {
        1 => "once daily".to_owned(),
        2 => "twice daily".to_owned(),
        n => format!("{n} times daily"),
    };
    let unit = med.dose_unit.trim_matches(['{', '}']);
    let mut timing =
        json!({ "repeat": { "frequency": med.per_day, "period": 1, "periodUnit": "d" } });
    if !med.chronic {
        timing["repeat"]["boundsDuration"] =
            json!({ "value": 10, "unit": "days", "system": UCUM, "code": "d" });
    }
    let resource = json!({
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "category": [concept(MEDREQ_CATEGORY, if med.otp { "outpatient" } else { "community" }, if med.otp { "Outpatient" } else { "Community" })],
        "medicationCodeableConcept": concept(RXNORM, med.rxnorm, med.display),
        "subject": { "reference": ctx.person.urn },
        "encounter": { "reference": ctx.encounter },
        "authoredOn": date_time(ctx.at + 20 * 60),
        "requester": reference("Practitioner", ctx.practitioner.to_owned()),
        "reasonReference": [{ "reference": reason }],
        "dosageInstruction": [{
            "sequence": 1,
            "text": format!("{} {unit}(s) {times}", med.dose),
            "timing": timing,
            "asNeededBoolean": false,
            "route": concept(SNOMED, med.route.0, med.route.1),
            "doseAndRate": [{ "doseQuantity": { "value": number(med.dose), "unit": unit, "system": UCUM, "code": med.dose_unit } }]
        }]
    });
    entries.push(post(format!("urn:uuid:{}", uuid(rng)), resource));
}

fn observation(
    ctx: &Context,
    category: &str,
    category_display: &str,
    code: Value,
    at: i64,
) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{ "system": OBS_CATEGORY, "code": category, "display": category_display }] }],
        "code": code,
        "subject": { "reference": ctx.person.urn },
        "encounter": { "reference": ctx.encounter },
        "effectiveDateTime": date_time(at),
        "issued": date_time(at + 15 * 60),
        "performer": [reference("Practitioner", ctx.practitioner.to_owned())]
    })
}

/// A UCUM quantity; whole numbers are written without a fraction, as a clinician would.
fn quantity(value: f64, unit: &str) -> Value {
    json!({ "value": number(value), "unit": unit, "system": UCUM, "code": unit })
}

fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn measured(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    ctx: &Context,
    category: (&str, &str),
    m: Measure,
    value: f64,
    at: i64,
) {
    let mut o = observation(
        ctx,
        category.0,
        category.1,
        concept(LOINC, m.loinc, m.display),
        at,
    );
    o["valueQuantity"] = quantity(round(value, m.decimals), m.unit);
    entries.push(post(format!("urn:uuid:{}", uuid(rng)), o));
}

const VITAL: (&str, &str) = ("vital-signs", "Vital Signs");

fn blood_pressure(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    ctx: &Context,
    at: i64,
    hypertensive: bool,
) {
    let shift = if hypertensive { 18.0 } else { 0.0 };
    let systolic = between(rng, SYSTOLIC.low, SYSTOLIC.high, 0) + shift;
    let diastolic = between(rng, DIASTOLIC.low, DIASTOLIC.high, 0) + shift / 2.0;
    let mut o = observation(
        ctx,
        VITAL.0,
        VITAL.1,
        concept(LOINC, BLOOD_PRESSURE_PANEL.0, BLOOD_PRESSURE_PANEL.1),
        at,
    );
    o["component"] = json!([
        { "code": concept(LOINC, SYSTOLIC.loinc, SYSTOLIC.display), "valueQuantity": quantity(systolic, SYSTOLIC.unit) },
        { "code": concept(LOINC, DIASTOLIC.loinc, DIASTOLIC.display), "valueQuantity": quantity(diastolic, DIASTOLIC.unit) }
    ]);
    entries.push(post(format!("urn:uuid:{}", uuid(rng)), o));
}

fn vitals(rng: &mut Rng, entries: &mut Vec<Value>, ctx: &Context, at: i64, age: i64, body: bool) {
    let person = ctx.person;
    if age >= 3 {
        blood_pressure(rng, entries, ctx, at, person.hypertensive);
    }
    for m in [
        HEART_RATE,
        RESPIRATORY_RATE,
        BODY_TEMPERATURE,
        OXYGEN_SATURATION,
    ] {
        let (low, high) = if m.loinc == HEART_RATE.loinc && age < 12 {
            (75.0, 120.0)
        } else {
            (m.low, m.high)
        };
        let value = between(rng, low, high, m.decimals);
        measured(rng, entries, ctx, VITAL, m, value, at);
    }
    if body {
        // Children grow towards the adult height; weight follows from the body mass index.
        let height = if age >= 18 {
            person.height_cm
        } else {
            (52.0 + 6.3 * age as f64).min(person.height_cm)
        };
        let bmi = if age >= 18 {
            person.bmi + (rng.f64() - 0.5)
        } else {
            15.5 + rng.f64() * 3.0
        };
        let weight = bmi * (height / 100.0) * (height / 100.0);
        measured(rng, entries, ctx, VITAL, BODY_HEIGHT, height, at);
        measured(rng, entries, ctx, VITAL, BODY_WEIGHT, weight, at);
        measured(rng, entries, ctx, VITAL, BMI, bmi, at);
    }
}

fn labs(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    ctx: &Context,
    at: i64,
    roster: &Roster,
    tests: &[Measure],
) {
    let lab = roster.member(rng, roster.laboratory, None);
    let pathologist = directory::practitioner_id(lab.number);
    let lab_ctx = Context {
        practitioner: &pathologist,
        ..*ctx
    };
    const LAB: (&str, &str) = ("laboratory", "Laboratory");
    for m in tests {
        let mut value = between(rng, m.low, m.high, m.decimals);
        if m.loinc == "2339-0" && ctx.person.diabetic {
            value += 60.0;
        }
        measured(rng, entries, &lab_ctx, LAB, *m, value, at);
    }
    if ctx.person.diabetic {
        let value = between(rng, HBA1C.low, HBA1C.high, 1);
        measured(rng, entries, &lab_ctx, LAB, HBA1C, value, at);
    }
}

/// A questionnaire total score; those with the condition score in the upper half.
fn score(
    rng: &mut Rng,
    entries: &mut Vec<Value>,
    ctx: &Context,
    at: i64,
    m: Measure,
    affected: bool,
) {
    let value = if affected {
        between(rng, m.high * 0.4, m.high, 0)
    } else {
        between(rng, m.low, m.high * 0.25, 0)
    };
    measured(rng, entries, ctx, ("survey", "Survey"), m, value, at);
}

fn allergies(rng: &mut Rng, entries: &mut Vec<Value>, person: &Person, plans: &[Planned]) {
    let count = match rng.u32(0..100) {
        0..=69 => 0,
        70..=89 => 1,
        90..=97 => 2,
        _ => 3,
    };
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < count {
        let i = rng.usize(..ALLERGIES.len());
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    for i in chosen {
        let a = ALLERGIES[i];
        let recorded = plans
            .get(rng.usize(..plans.len().max(1)))
            .map_or(TODAY - DAY, |p| p.at);
        let severe = a.reaction.0 == "39579001";
        let resource = json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": coded(ALLERGY_CLINICAL, "active"),
            "verificationStatus": coded(ALLERGY_VERIFICATION, "confirmed"),
            "type": "allergy",
            "category": [a.category],
            "criticality": if severe { "high" } else { "low" },
            "code": concept(SNOMED, a.snomed, a.display),
            "patient": { "reference": person.urn },
            "recordedDate": date_time(recorded),
            "reaction": [{
                "manifestation": [concept(SNOMED, a.reaction.0, a.reaction.1)],
                "severity": if severe { "severe" } else { *pick(rng, &["mild", "moderate"]) }
            }]
        });
        entries.push(post(format!("urn:uuid:{}", uuid(rng)), resource));
    }
}
