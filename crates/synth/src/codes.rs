//! The code tables the generator draws from: diagnoses (ICD-10-CM with SNOMED CT), LOINC vital signs and
//! laboratory tests with UCUM units, RxNorm medications, allergy codes, and the made-up people and places.
//! Kept as plain tables so that a reviewer can check every code against its terminology in one place.

pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const LOINC: &str = "http://loinc.org";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
pub const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";
pub const NUCC: &str = "http://nucc.org/provider-taxonomy";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const COND_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
pub const COND_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
pub const COND_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
pub const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
pub const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
pub const ORG_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
pub const MARITAL: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
pub const MEDREQ_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/medicationrequest-category";
/// The identifier system of the generator's medical record numbers (`.example` is reserved, RFC 2606).
pub const MRN: &str = "https://synth.nutmeg.example/fhir/sid/mrn";

/// Which clinical area a diagnosis belongs to; later issues treat behavioural health and substance use
/// as sensitive, so the generator keeps them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    General,
    /// Acute problems that resolve (infections, injuries).
    Acute,
    MentalHealth,
    SubstanceUse,
}

/// Which medicine treats a diagnosis (index into [`MEDICATIONS`]), if any.
#[derive(Clone, Copy, Debug)]
pub struct Diagnosis {
    pub icd10: &'static str,
    pub icd10_display: &'static str,
    /// SNOMED CT code and display, when the concept has an unambiguous one.
    pub snomed: Option<(&'static str, &'static str)>,
    pub area: Area,
    /// Probability that an adult patient has it (acute ones: per symptom visit).
    pub prevalence: f64,
    /// Youngest age at which it is diagnosed.
    pub min_age: u32,
    /// Medicines ([`MEDICATIONS`] indices) one of which is prescribed for it.
    pub treatments: &'static [usize],
}

#[rustfmt::skip]
pub const DIAGNOSES: &[Diagnosis] = &[
    // General chronic conditions.
    Diagnosis { icd10: "I10", icd10_display: "Essential (primary) hypertension", snomed: Some(("59621000", "Essential hypertension (disorder)")), area: Area::General, prevalence: 0.28, min_age: 25, treatments: &[0, 2] },
    Diagnosis { icd10: "E11.9", icd10_display: "Type 2 diabetes mellitus without complications", snomed: Some(("44054006", "Diabetes mellitus type 2 (disorder)")), area: Area::General, prevalence: 0.11, min_age: 30, treatments: &[1] },
    Diagnosis { icd10: "E78.5", icd10_display: "Hyperlipidemia, unspecified", snomed: Some(("55822004", "Hyperlipidemia (disorder)")), area: Area::General, prevalence: 0.2, min_age: 30, treatments: &[3] },
    Diagnosis { icd10: "J45.909", icd10_display: "Unspecified asthma, uncomplicated", snomed: Some(("195967001", "Asthma (disorder)")), area: Area::General, prevalence: 0.08, min_age: 3, treatments: &[4] },
    Diagnosis { icd10: "E66.9", icd10_display: "Obesity, unspecified", snomed: Some(("414916001", "Obesity (disorder)")), area: Area::General, prevalence: 0.15, min_age: 10, treatments: &[] },
    Diagnosis { icd10: "K21.9", icd10_display: "Gastro-esophageal reflux disease without esophagitis", snomed: Some(("235595009", "Gastroesophageal reflux disease (disorder)")), area: Area::General, prevalence: 0.1, min_age: 18, treatments: &[] },
    Diagnosis { icd10: "J30.9", icd10_display: "Allergic rhinitis, unspecified", snomed: Some(("61582004", "Allergic rhinitis (disorder)")), area: Area::General, prevalence: 0.12, min_age: 4, treatments: &[] },
    // Acute problems, diagnosed at symptom visits.
    Diagnosis { icd10: "J06.9", icd10_display: "Acute upper respiratory infection, unspecified", snomed: Some(("54150009", "Upper respiratory infection (disorder)")), area: Area::Acute, prevalence: 0.35, min_age: 0, treatments: &[7] },
    Diagnosis { icd10: "J02.9", icd10_display: "Acute pharyngitis, unspecified", snomed: Some(("363746003", "Acute pharyngitis (disorder)")), area: Area::Acute, prevalence: 0.2, min_age: 0, treatments: &[5, 6] },
    Diagnosis { icd10: "N39.0", icd10_display: "Urinary tract infection, site not specified", snomed: Some(("68566005", "Urinary tract infectious disease (disorder)")), area: Area::Acute, prevalence: 0.15, min_age: 2, treatments: &[5] },
    Diagnosis { icd10: "M54.50", icd10_display: "Low back pain, unspecified", snomed: Some(("279039007", "Low back pain (finding)")), area: Area::Acute, prevalence: 0.2, min_age: 16, treatments: &[7] },
    Diagnosis { icd10: "S93.401A", icd10_display: "Sprain of unspecified ligament of right ankle, initial encounter", snomed: Some(("44465007", "Sprain of ankle (disorder)")), area: Area::Acute, prevalence: 0.1, min_age: 5, treatments: &[7] },
    // Mental health.
    Diagnosis { icd10: "F32.9", icd10_display: "Major depressive disorder, single episode, unspecified", snomed: Some(("35489007", "Depressive disorder (disorder)")), area: Area::MentalHealth, prevalence: 0.09, min_age: 12, treatments: &[8, 9] },
    Diagnosis { icd10: "F32.1", icd10_display: "Major depressive disorder, single episode, moderate", snomed: Some(("832007", "Moderate major depression (disorder)")), area: Area::MentalHealth, prevalence: 0.04, min_age: 12, treatments: &[8, 9] },
    Diagnosis { icd10: "F33.1", icd10_display: "Major depressive disorder, recurrent, moderate", snomed: Some(("18818009", "Moderate recurrent major depression (disorder)")), area: Area::MentalHealth, prevalence: 0.03, min_age: 16, treatments: &[8, 9] },
    Diagnosis { icd10: "F41.1", icd10_display: "Generalized anxiety disorder", snomed: Some(("21897009", "Generalized anxiety disorder (disorder)")), area: Area::MentalHealth, prevalence: 0.1, min_age: 10, treatments: &[8] },
    Diagnosis { icd10: "F43.10", icd10_display: "Post-traumatic stress disorder, unspecified", snomed: Some(("47505003", "Posttraumatic stress disorder (disorder)")), area: Area::MentalHealth, prevalence: 0.05, min_age: 8, treatments: &[8] },
    Diagnosis { icd10: "F31.9", icd10_display: "Bipolar disorder, unspecified", snomed: Some(("13746004", "Bipolar disorder (disorder)")), area: Area::MentalHealth, prevalence: 0.02, min_age: 16, treatments: &[] },
    Diagnosis { icd10: "F90.9", icd10_display: "Attention-deficit hyperactivity disorder, unspecified type", snomed: Some(("406506008", "Attention deficit hyperactivity disorder (disorder)")), area: Area::MentalHealth, prevalence: 0.05, min_age: 5, treatments: &[] },
    Diagnosis { icd10: "F20.9", icd10_display: "Schizophrenia, unspecified", snomed: Some(("58214004", "Schizophrenia (disorder)")), area: Area::MentalHealth, prevalence: 0.005, min_age: 18, treatments: &[] },
    // Substance use.
    Diagnosis { icd10: "F10.10", icd10_display: "Alcohol abuse, uncomplicated", snomed: Some(("15167005", "Alcohol abuse (disorder)")), area: Area::SubstanceUse, prevalence: 0.04, min_age: 16, treatments: &[] },
    Diagnosis { icd10: "F10.20", icd10_display: "Alcohol dependence, uncomplicated", snomed: Some(("66590003", "Alcohol dependence (disorder)")), area: Area::SubstanceUse, prevalence: 0.04, min_age: 18, treatments: &[12, 13] },
    Diagnosis { icd10: "F11.20", icd10_display: "Opioid dependence, uncomplicated", snomed: Some(("75544000", "Opioid dependence (disorder)")), area: Area::SubstanceUse, prevalence: 0.03, min_age: 18, treatments: &[10, 10, 11] },
    Diagnosis { icd10: "F12.10", icd10_display: "Cannabis abuse, uncomplicated", snomed: Some(("37344009", "Cannabis abuse (disorder)")), area: Area::SubstanceUse, prevalence: 0.03, min_age: 14, treatments: &[] },
    Diagnosis { icd10: "F14.20", icd10_display: "Cocaine dependence, uncomplicated", snomed: None, area: Area::SubstanceUse, prevalence: 0.01, min_age: 18, treatments: &[] },
    Diagnosis { icd10: "F15.20", icd10_display: "Other stimulant dependence, uncomplicated", snomed: None, area: Area::SubstanceUse, prevalence: 0.008, min_age: 18, treatments: &[] },
    Diagnosis { icd10: "F17.210", icd10_display: "Nicotine dependence, cigarettes, uncomplicated", snomed: Some(("89765005", "Tobacco dependence syndrome (disorder)")), area: Area::SubstanceUse, prevalence: 0.11, min_age: 16, treatments: &[] },
    Diagnosis { icd10: "F19.20", icd10_display: "Other psychoactive substance dependence, uncomplicated", snomed: None, area: Area::SubstanceUse, prevalence: 0.005, min_age: 18, treatments: &[] },
];

/// A medicine: RxNorm code and display, the route (SNOMED), the dose text and how many times a day.
#[derive(Clone, Copy, Debug)]
pub struct Medication {
    pub rxnorm: &'static str,
    pub display: &'static str,
    pub route: (&'static str, &'static str),
    pub dose: f64,
    pub dose_unit: &'static str,
    pub per_day: u32,
    /// Taken for a long time (active until stopped) rather than a short course.
    pub chronic: bool,
    /// Dispensed by an opioid treatment program rather than a clinic.
    pub otp: bool,
}

const ORAL: (&str, &str) = ("26643006", "Oral route");
const SUBLINGUAL: (&str, &str) = ("37839007", "Sublingual route");
const INHALED: (&str, &str) = ("447694001", "Respiratory tract route");

#[rustfmt::skip]
pub const MEDICATIONS: &[Medication] = &[
    Medication { rxnorm: "314076", display: "lisinopril 10 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "860975", display: "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 2, chronic: true, otp: false },
    Medication { rxnorm: "197361", display: "amlodipine 5 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "259255", display: "atorvastatin 80 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "895994", display: "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", route: INHALED, dose: 2.0, dose_unit: "{actuation}", per_day: 2, chronic: true, otp: false },
    Medication { rxnorm: "308182", display: "amoxicillin 250 MG Oral Capsule", route: ORAL, dose: 2.0, dose_unit: "{capsule}", per_day: 3, chronic: false, otp: false },
    Medication { rxnorm: "834061", display: "penicillin V potassium 250 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 4, chronic: false, otp: false },
    Medication { rxnorm: "313782", display: "acetaminophen 325 MG Oral Tablet", route: ORAL, dose: 2.0, dose_unit: "{tablet}", per_day: 3, chronic: false, otp: false },
    Medication { rxnorm: "312938", display: "sertraline 100 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "310385", display: "fluoxetine 20 MG Oral Capsule", route: ORAL, dose: 1.0, dose_unit: "{capsule}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "1010600", display: "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film", route: SUBLINGUAL, dose: 4.0, dose_unit: "{film}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "864706", display: "methadone hydrochloride 10 MG Oral Tablet", route: ORAL, dose: 6.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: true },
    Medication { rxnorm: "1483744", display: "naltrexone hydrochloride 50 MG Oral Tablet", route: ORAL, dose: 1.0, dose_unit: "{tablet}", per_day: 1, chronic: true, otp: false },
    Medication { rxnorm: "835726", display: "acamprosate calcium 333 MG Delayed Release Oral Tablet", route: ORAL, dose: 2.0, dose_unit: "{tablet}", per_day: 3, chronic: true, otp: false },
];

/// A quantitative observation: LOINC code and display, UCUM unit, and a normal range to draw from.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub loinc: &'static str,
    pub display: &'static str,
    pub unit: &'static str,
    pub low: f64,
    pub high: f64,
    /// Decimal places kept.
    pub decimals: u32,
}

#[rustfmt::skip]
pub const HEART_RATE: Measure = Measure { loinc: "8867-4", display: "Heart rate", unit: "/min", low: 58.0, high: 98.0, decimals: 0 };
#[rustfmt::skip]
pub const RESPIRATORY_RATE: Measure = Measure { loinc: "9279-1", display: "Respiratory rate", unit: "/min", low: 12.0, high: 20.0, decimals: 0 };
#[rustfmt::skip]
pub const BODY_TEMPERATURE: Measure = Measure { loinc: "8310-5", display: "Body temperature", unit: "Cel", low: 36.3, high: 37.4, decimals: 1 };
#[rustfmt::skip]
pub const OXYGEN_SATURATION: Measure = Measure { loinc: "59408-5", display: "Oxygen saturation in Arterial blood by Pulse oximetry", unit: "%", low: 94.0, high: 100.0, decimals: 0 };
#[rustfmt::skip]
pub const BODY_HEIGHT: Measure = Measure { loinc: "8302-2", display: "Body height", unit: "cm", low: 0.0, high: 0.0, decimals: 1 };
#[rustfmt::skip]
pub const BODY_WEIGHT: Measure = Measure { loinc: "29463-7", display: "Body weight", unit: "kg", low: 0.0, high: 0.0, decimals: 1 };
#[rustfmt::skip]
pub const BMI: Measure = Measure { loinc: "39156-5", display: "Body mass index (BMI) [Ratio]", unit: "kg/m2", low: 0.0, high: 0.0, decimals: 1 };
#[rustfmt::skip]
pub const SYSTOLIC: Measure = Measure { loinc: "8480-6", display: "Systolic blood pressure", unit: "mm[Hg]", low: 105.0, high: 138.0, decimals: 0 };
#[rustfmt::skip]
pub const DIASTOLIC: Measure = Measure { loinc: "8462-4", display: "Diastolic blood pressure", unit: "mm[Hg]", low: 62.0, high: 88.0, decimals: 0 };
pub const BLOOD_PRESSURE_PANEL: (&str, &str) =
    ("85354-9", "Blood pressure panel with all children optional");

/// The laboratory tests of a yearly check-up.
#[rustfmt::skip]
pub const LABS: &[Measure] = &[
    Measure { loinc: "2339-0", display: "Glucose [Mass/volume] in Blood", unit: "mg/dL", low: 70.0, high: 110.0, decimals: 0 },
    Measure { loinc: "2093-3", display: "Cholesterol [Mass/volume] in Serum or Plasma", unit: "mg/dL", low: 150.0, high: 240.0, decimals: 0 },
    Measure { loinc: "2571-8", display: "Triglyceride [Mass/volume] in Serum or Plasma", unit: "mg/dL", low: 60.0, high: 180.0, decimals: 0 },
    Measure { loinc: "2085-9", display: "Cholesterol in HDL [Mass/volume] in Serum or Plasma", unit: "mg/dL", low: 35.0, high: 80.0, decimals: 0 },
    Measure { loinc: "18262-6", display: "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", unit: "mg/dL", low: 70.0, high: 170.0, decimals: 0 },
    Measure { loinc: "2160-0", display: "Creatinine [Mass/volume] in Serum or Plasma", unit: "mg/dL", low: 0.6, high: 1.3, decimals: 2 },
    Measure { loinc: "2951-2", display: "Sodium [Moles/volume] in Serum or Plasma", unit: "mmol/L", low: 135.0, high: 145.0, decimals: 0 },
    Measure { loinc: "2823-3", display: "Potassium [Moles/volume] in Serum or Plasma", unit: "mmol/L", low: 3.5, high: 5.1, decimals: 1 },
    Measure { loinc: "718-7", display: "Hemoglobin [Mass/volume] in Blood", unit: "g/dL", low: 12.0, high: 17.0, decimals: 1 },
    Measure { loinc: "6690-2", display: "Leukocytes [#/volume] in Blood by Automated count", unit: "10*3/uL", low: 4.0, high: 10.5, decimals: 1 },
];

#[rustfmt::skip]
pub const HBA1C: Measure = Measure { loinc: "4548-4", display: "Hemoglobin A1c/Hemoglobin.total in Blood", unit: "%", low: 6.2, high: 9.5, decimals: 1 };

/// Screening scores for behavioural-health visits (unit `{score}`).
#[rustfmt::skip]
pub const PHQ9: Measure = Measure { loinc: "44261-6", display: "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]", unit: "{score}", low: 0.0, high: 27.0, decimals: 0 };
#[rustfmt::skip]
pub const GAD7: Measure = Measure { loinc: "70274-6", display: "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]", unit: "{score}", low: 0.0, high: 21.0, decimals: 0 };
#[rustfmt::skip]
pub const AUDIT_C: Measure = Measure { loinc: "75626-2", display: "Total score [AUDIT-C]", unit: "{score}", low: 0.0, high: 12.0, decimals: 0 };
/// Urine drug screens for substance-use visits: LOINC code and display; the answer is SNOMED positive/negative.
pub const DRUG_SCREENS: &[(&str, &str)] = &[
    ("19295-5", "Opiates [Presence] in Urine by Screen method"),
    ("19659-2", "Cocaine [Presence] in Urine by Screen method"),
    (
        "18282-4",
        "Cannabinoids [Presence] in Urine by Screen method",
    ),
];
pub const POSITIVE: (&str, &str) = ("10828004", "Positive (qualifier value)");
pub const NEGATIVE: (&str, &str) = ("260385009", "Negative (qualifier value)");

/// An allergy: SNOMED code and display, category, and the usual reaction (SNOMED).
#[derive(Clone, Copy, Debug)]
pub struct Allergy {
    pub snomed: &'static str,
    pub display: &'static str,
    pub category: &'static str,
    pub reaction: (&'static str, &'static str),
}

#[rustfmt::skip]
pub const ALLERGIES: &[Allergy] = &[
    Allergy { snomed: "91936005", display: "Allergy to penicillin (finding)", category: "medication", reaction: ("271807003", "Eruption of skin (disorder)") },
    Allergy { snomed: "294505008", display: "Allergy to sulfonamide (finding)", category: "medication", reaction: ("271807003", "Eruption of skin (disorder)") },
    Allergy { snomed: "91935009", display: "Allergy to peanuts (finding)", category: "food", reaction: ("39579001", "Anaphylaxis (disorder)") },
    Allergy { snomed: "300913006", display: "Shellfish allergy (finding)", category: "food", reaction: ("247472004", "Wheal (finding)") },
    Allergy { snomed: "232350006", display: "House dust mite allergy (finding)", category: "environment", reaction: ("49727002", "Cough (finding)") },
    Allergy { snomed: "232347008", display: "Dander (animal) allergy (finding)", category: "environment", reaction: ("76067001", "Sneezing (finding)") },
    Allergy { snomed: "418689008", display: "Allergy to grass pollen (finding)", category: "environment", reaction: ("76067001", "Sneezing (finding)") },
    Allergy { snomed: "300916003", display: "Latex allergy (finding)", category: "environment", reaction: ("247472004", "Wheal (finding)") },
    Allergy { snomed: "424213003", display: "Allergy to bee venom (finding)", category: "environment", reaction: ("39579001", "Anaphylaxis (disorder)") },
];

#[rustfmt::skip]
pub const GIVEN_FEMALE: &[&str] = &[
    "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn", "Abigail", "Emily",
    "Ella", "Madison", "Scarlett", "Grace", "Chloe", "Camila", "Penelope", "Riley", "Layla", "Lillian",
    "Nora", "Zoey", "Mila", "Aubrey", "Hannah", "Lily", "Addison", "Eleanor", "Natalie", "Luna", "Savannah",
    "Brooklyn", "Leah", "Zoe", "Stella", "Hazel", "Ellie", "Paisley", "Audrey", "Maria", "Ana", "Lucia",
    "Valentina", "Ximena", "Mei", "Aiko", "Priya", "Aaliyah", "Fatima", "Keisha", "Dorothy", "Margaret",
    "Ruth", "Joan", "Beverly", "Shirley", "Linda", "Patricia", "Barbara",
];

#[rustfmt::skip]
pub const GIVEN_MALE: &[&str] = &[
    "Liam", "Noah", "William", "James", "Oliver", "Benjamin", "Elijah", "Lucas", "Mason", "Logan",
    "Alexander", "Ethan", "Jacob", "Michael", "Daniel", "Henry", "Jackson", "Sebastian", "Aiden", "Matthew",
    "Samuel", "David", "Joseph", "Carter", "Owen", "Wyatt", "John", "Jack", "Luke", "Jayden", "Dylan",
    "Grayson", "Levi", "Isaac", "Gabriel", "Julian", "Mateo", "Anthony", "Jaxon", "Lincoln", "José", "Luis",
    "Carlos", "Diego", "Wei", "Hiroshi", "Arjun", "Omar", "DeShawn", "Malik", "Robert", "Richard", "Thomas",
    "Charles", "George", "Donald", "Kenneth", "Raymond", "Harold", "Walter",
];

#[rustfmt::skip]
pub const FAMILY: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
    "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart",
    "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks",
    "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jiménez", "Nakamura", "Chen", "Wang", "O'Brien",
    "Kowalski", "Okafor", "Haddad", "Schmidt", "Novak", "Yazzie", "Begay",
];

pub const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Walnut",
    "Sunset",
    "Lincoln",
    "Jackson",
    "Church",
    "River",
    "Highland",
    "Spring",
    "Meadow",
    "Forest",
    "Willow",
    "Chestnut",
    "Franklin",
    "Jefferson",
    "Madison",
    "Ridge",
    "Valley",
    "Mill",
    "Bridge",
    "Orchard",
];

pub const STREET_KINDS: &[&str] = &[
    "St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way", "Pl", "Ter",
];

/// City, state, ZIP code prefix (the generator adds two digits) and telephone area code.
#[rustfmt::skip]
pub const CITIES: &[(&str, &str, &str, &str)] = &[
    ("Boston", "MA", "021", "617"),
    ("Worcester", "MA", "016", "508"),
    ("Springfield", "MA", "011", "413"),
    ("Providence", "RI", "029", "401"),
    ("Hartford", "CT", "061", "860"),
    ("Burlington", "VT", "054", "802"),
    ("Portland", "ME", "041", "207"),
    ("Manchester", "NH", "031", "603"),
    ("Albany", "NY", "122", "518"),
    ("Buffalo", "NY", "142", "716"),
    ("Newark", "NJ", "071", "973"),
    ("Philadelphia", "PA", "191", "215"),
    ("Pittsburgh", "PA", "152", "412"),
    ("Baltimore", "MD", "212", "410"),
    ("Richmond", "VA", "232", "804"),
    ("Raleigh", "NC", "276", "919"),
    ("Atlanta", "GA", "303", "404"),
    ("Columbus", "OH", "432", "614"),
    ("Detroit", "MI", "482", "313"),
    ("Chicago", "IL", "606", "312"),
    ("Milwaukee", "WI", "532", "414"),
    ("Minneapolis", "MN", "554", "612"),
    ("St. Louis", "MO", "631", "314"),
    ("Nashville", "TN", "372", "615"),
    ("New Orleans", "LA", "701", "504"),
    ("Houston", "TX", "770", "713"),
    ("Austin", "TX", "787", "512"),
    ("Denver", "CO", "802", "303"),
    ("Albuquerque", "NM", "871", "505"),
    ("Phoenix", "AZ", "850", "602"),
    ("Salt Lake City", "UT", "841", "801"),
    ("Seattle", "WA", "981", "206"),
    ("Portland", "OR", "972", "503"),
    ("Sacramento", "CA", "958", "916"),
    ("Los Angeles", "CA", "900", "213"),
    ("Anchorage", "AK", "995", "907"),
    ("Honolulu", "HI", "968", "808"),
];
