//! Labelling on intake: the `meta.security` a resource is stored with.
//!
//! A resource's sensitivity codes come from three places, added together:
//!
//! 1. **Its codes.** Every Coding anywhere in the resource (not in `meta`) is looked up in the rule
//!    table `rules/labels.toml` (ICD-10-CM ranges, SNOMED CT, LOINC and RxNorm lists, each row with
//!    its source), embedded in the binary and parsed once ([`RuleTable::builtin`]).
//! 2. **Its source.** Everything a behavioral-health practitioner sends (LMFT, LCSW, LPC, LADC,
//!    psychologist, psychiatrist) is BH; what psychiatrists and psychiatric facilities send is also
//!    PSY ([`SourceFacts`]).
//! 3. **The source's own labels.** What the source sent in `meta.security` is kept as it came; its
//!    sensitivity codes count, and `42CFRPart2` counts as SUD.
//!
//! The confidentiality code follows ([`confidentiality_for`]): V for substance-use (42 CFR Part 2)
//! data and psychotherapy notes, R for any other sensitivity, N otherwise; never lower than what
//! the source sent.
//!
//! Derived resources (a Provenance, a DocumentReference, a Composition, a List, a
//! DiagnosticReport) also take the labels of what they point at: [`derived_from`] names those
//! resources, and [`derived`] adds their labels. Resources inside a resource (contained, Bundle
//! entries) count by themselves.
//!
//! The source is recorded too, as `meta.tag` codings ([`SourceFacts::tags`]), so that the decision
//! can later be made from the stored resource alone ([`ResourceLabels::from_resource`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::codes::{
    Coding, Confidentiality, Licence, Sensitivity, ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM,
    LICENCE_TYPE_SYSTEM, PSYCHIATRIC_FACILITY, SOURCE_FACILITY_SYSTEM, SOURCE_PARTICIPANT_SYSTEM,
};

/// The shipped rule table.
pub const BUILTIN_RULES: &str = include_str!("../rules/labels.toml");

/// Who sent a resource, as far as labelling and the policy care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// The licence type of the sending practitioner, when a practitioner sent it.
    pub licence: Option<Licence>,
    /// Whether the sending organization is a psychiatric facility.
    pub psychiatric_facility: bool,
}

impl SourceFacts {
    /// Whether what this source sends is psychiatric (PSY).
    pub fn is_psychiatric(&self) -> bool {
        self.psychiatric_facility || self.licence == Some(Licence::Psychiatrist)
    }

    /// The `meta.tag` codings that record the source with the resource.
    pub fn tags(&self) -> Vec<Coding> {
        let mut tags = Vec::new();
        if let Some(licence) = self.licence {
            tags.push(Coding::new(
                LICENCE_TYPE_SYSTEM,
                licence.code(),
                Some(licence.display()),
            ));
        }
        if self.psychiatric_facility {
            tags.push(Coding::new(
                SOURCE_FACILITY_SYSTEM,
                PSYCHIATRIC_FACILITY,
                Some("Psychiatric facility"),
            ));
        }
        tags
    }

    /// The source recorded in a resource's `meta.tag` (what [`Self::tags`] wrote).
    pub fn from_resource(resource: &Value) -> SourceFacts {
        SourceFacts::from_tags(&codings_at(resource, "tag"))
    }

    /// The source recorded in these `meta.tag` codings.
    pub fn from_tags(tags: &[Coding]) -> SourceFacts {
        let mut facts = SourceFacts::default();
        for coding in tags {
            if coding.system == LICENCE_TYPE_SYSTEM {
                facts.licence = Licence::parse_loose(&coding.code).or(facts.licence);
            } else if coding.is(SOURCE_FACILITY_SYSTEM, PSYCHIATRIC_FACILITY) {
                facts.psychiatric_facility = true;
            }
        }
        facts
    }
}

/// A resource's security labels: one confidentiality code, its sensitivity codes, and every other
/// label the source sent (kept as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub confidentiality: Confidentiality,
    pub sensitivity: BTreeSet<Sensitivity>,
    /// Labels from the source that are neither the confidentiality code nor a sensitivity code
    /// this crate reads (NORDSCLCD, 42CFRPart2, other systems), in the order first seen.
    pub kept: Vec<Coding>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            confidentiality: Confidentiality::N,
            sensitivity: BTreeSet::new(),
            kept: Vec::new(),
        }
    }
}

impl Labels {
    /// Labels with these sensitivity codes and the confidentiality they call for.
    pub fn of(sensitivity: impl IntoIterator<Item = Sensitivity>) -> Labels {
        let sensitivity: BTreeSet<Sensitivity> = sensitivity.into_iter().collect();
        Labels {
            confidentiality: confidentiality_for(&sensitivity),
            sensitivity,
            kept: Vec::new(),
        }
    }

    /// The labels a resource's `meta.security` holds, as stored (or as a source sent them).
    /// The confidentiality is the highest one present (N when there is none).
    pub fn from_security(resource: &Value) -> Labels {
        Labels::from_codings(codings_at(resource, "security"))
    }

    /// The labels these `meta.security` codings hold.
    pub fn from_codings(security: impl IntoIterator<Item = Coding>) -> Labels {
        let mut labels = Labels::default();
        let mut confidentiality = None;
        for coding in security {
            if coding.system == CONFIDENTIALITY_SYSTEM {
                if let Some(c) = Confidentiality::parse(&coding.code) {
                    confidentiality = confidentiality.max(Some(c));
                    continue;
                }
            } else if coding.system == ACT_CODE_SYSTEM {
                if let Some(s) = Sensitivity::parse(&coding.code) {
                    labels.sensitivity.insert(s);
                    continue;
                }
                if coding.code == "42CFRPart2" {
                    labels.sensitivity.insert(Sensitivity::Sud);
                }
            }
            if !labels.kept.contains(&coding) {
                labels.kept.push(coding);
            }
        }
        labels.confidentiality = confidentiality.unwrap_or(Confidentiality::N);
        labels
    }

    /// Adds another resource's labels to these (the union; the higher confidentiality).
    pub fn add(&mut self, other: &Labels) {
        self.confidentiality = self.confidentiality.max(other.confidentiality);
        self.sensitivity.extend(other.sensitivity.iter().copied());
        for coding in &other.kept {
            if !self.kept.contains(coding) {
                self.kept.push(coding.clone());
            }
        }
    }

    /// Whether any of `codes` is among the sensitivity codes.
    pub fn has_any(&self, codes: &[Sensitivity]) -> bool {
        codes.iter().any(|c| self.sensitivity.contains(c))
    }

    /// The `meta.security` codings to store: the confidentiality code, the sensitivity codes in
    /// code order, then the kept labels.
    pub fn security(&self) -> Vec<Coding> {
        let mut out = vec![self.confidentiality.coding()];
        out.extend(self.sensitivity.iter().map(|s| s.coding()));
        out.extend(self.kept.iter().cloned());
        out
    }

    /// Whether the labels carry the coding `system|code` (a sensitivity code, the confidentiality
    /// code or a kept label): what a Consent's `securityLabel` is compared with.
    pub fn carries(&self, coding: &Coding) -> bool {
        if coding.system == CONFIDENTIALITY_SYSTEM {
            return Confidentiality::parse(&coding.code) == Some(self.confidentiality);
        }
        if coding.system == ACT_CODE_SYSTEM {
            if let Some(s) = Sensitivity::parse(&coding.code) {
                return self.sensitivity.contains(&s);
            }
        }
        self.kept
            .iter()
            .any(|k| k.system == coding.system && k.code == coding.code)
    }
}

/// The confidentiality that sensitivity codes call for: V for substance-use data (SUD, ETH: 42 CFR
/// Part 2) and psychotherapy notes (PSYTHPN, which HIPAA protects beyond other records); R for any
/// other sensitivity; N for none.
pub fn confidentiality_for(sensitivity: &BTreeSet<Sensitivity>) -> Confidentiality {
    let very = [Sensitivity::Sud, Sensitivity::Eth, Sensitivity::Psythpn];
    if very.iter().any(|s| sensitivity.contains(s)) {
        Confidentiality::V
    } else if sensitivity.is_empty() {
        Confidentiality::N
    } else {
        Confidentiality::R
    }
}

/// The labels of a resource that arrives from `source`, with the built-in rule table.
pub fn label(resource: &Value, source: &SourceFacts) -> Labels {
    RuleTable::builtin().label(resource, source)
}

/// The labels of a resource derived from others (a DocumentReference whose document holds
/// labelled sections, a Provenance of labelled targets, a Bundle of labelled entries): its own
/// labels (as [`label`] gives them) with the union of the labels of what it contains or points at,
/// which the caller looked up.
pub fn derived(own: &Labels, parts: &[Labels]) -> Labels {
    let mut out = own.clone();
    for part in parts {
        out.add(part);
    }
    out.confidentiality = out
        .confidentiality
        .max(confidentiality_for(&out.sensitivity));
    out
}

/// The resources a derived resource takes its labels from, as relative references (`Type/id`),
/// in order, without repeats: what a Provenance is about (`target`, `entity.what`), what a
/// DocumentReference relates to (`context.related`, `relatesTo.target`), what a Composition's
/// sections hold (`section.entry`, nested sections too), a List's items and a DiagnosticReport's
/// results. The caller looks up their labels and calls [`derived`]. (A Bundle's entries and
/// contained resources are inside the resource, and [`label`] already counts them; a document in
/// an attachment is the caller's to label, by section.)
pub fn derived_from(resource: &Value) -> Vec<String> {
    let paths: &[&[&str]] = match resource.get("resourceType").and_then(Value::as_str) {
        Some("Provenance") => &[&["target"], &["entity", "what"]],
        Some("DocumentReference") => &[&["context", "related"], &["relatesTo", "target"]],
        Some("List") => &[&["entry", "item"]],
        Some("DiagnosticReport") => &[&["result"]],
        Some("Composition") => &[&["section"]],
        _ => &[],
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |reference: &Value| {
        let found = reference
            .get("reference")
            .and_then(Value::as_str)
            .and_then(crate::consent::relative_reference);
        if let Some(found) = found {
            if !out.contains(&found) {
                out.push(found);
            }
        }
    };
    for path in paths {
        let mut level: Vec<&Value> = vec![resource];
        for key in *path {
            level = level
                .into_iter()
                .filter_map(|v| v.get(*key))
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    other => vec![other],
                })
                .collect();
        }
        if *path == ["section"] {
            // Composition sections nest; every section's entries count.
            let mut sections = level;
            sections.reverse();
            while let Some(section) = sections.pop() {
                for entry in section
                    .get("entry")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    push(entry);
                }
                if let Some(nested) = section.get("section").and_then(Value::as_array) {
                    sections.extend(nested.iter().rev());
                }
            }
        } else {
            for reference in level {
                push(reference);
            }
        }
    }
    out
}

/// Writes `labels` into the resource's `meta.security` (replacing it) and the source's tags into
/// `meta.tag` (replacing earlier source tags, keeping other tags). Does nothing to a non-object.
pub fn apply(resource: &mut Value, labels: &Labels, source: &SourceFacts) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    meta.insert(
        "security".into(),
        Value::Array(labels.security().iter().map(Coding::to_json).collect()),
    );
    let mut tags: Vec<Value> = meta
        .get("tag")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter(|t| {
                    let system = t.get("system").and_then(Value::as_str);
                    system != Some(LICENCE_TYPE_SYSTEM) && system != Some(SOURCE_FACILITY_SYSTEM)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    tags.extend(source.tags().iter().map(Coding::to_json));
    if tags.is_empty() {
        meta.remove("tag");
    } else {
        meta.insert("tag".into(), Value::Array(tags));
    }
}

/// The participant that sent a resource, as intake recorded it: the code of its
/// [`SOURCE_PARTICIPANT_SYSTEM`] `meta.tag` (an Organization id).
pub fn source_participant(resource: &Value) -> Option<String> {
    source_participant_in(&codings_at(resource, "tag"))
}

/// The sender these `meta.tag` codings record, if any.
pub fn source_participant_in(tags: &[Coding]) -> Option<String> {
    tags.iter()
        .find(|c| c.system == SOURCE_PARTICIPANT_SYSTEM && !c.code.is_empty())
        .map(|c| c.code.clone())
}

/// Records `participant` (an Organization id) as the sender of `resource` in its `meta.tag`,
/// replacing any other source-participant tag and keeping every other tag. Does nothing to a
/// non-object.
pub fn set_source_participant(resource: &mut Value, participant: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let mut tags: Vec<Value> = meta
        .get("tag")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter(|t| {
                    t.get("system").and_then(Value::as_str) != Some(SOURCE_PARTICIPANT_SYSTEM)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    tags.push(Coding::new(SOURCE_PARTICIPANT_SYSTEM, participant, None).to_json());
    meta.insert("tag".into(), Value::Array(tags));
}

/// A stored resource's labels and source: what the decision needs to know about the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceLabels {
    pub labels: Labels,
    pub source: SourceFacts,
}

impl ResourceLabels {
    /// Reads what [`apply`] wrote.
    pub fn from_resource(resource: &Value) -> ResourceLabels {
        ResourceLabels {
            labels: Labels::from_security(resource),
            source: SourceFacts::from_resource(resource),
        }
    }
}

fn codings_at(resource: &Value, element: &str) -> Vec<Coding> {
    codings_in(resource.get("meta").and_then(|m| m.get(element)))
}

/// The codings of a `meta.security` or `meta.tag` array (those without a string system and code
/// are passed over).
pub fn codings_in(array: Option<&Value>) -> Vec<Coding> {
    array
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Coding::from_json).collect())
        .unwrap_or_default()
}

/// The resources inside a resource (contained resources, Bundle entries, Parameters parts, at any
/// depth), not the resource itself: their own `meta.security` counts as labels their source sent.
fn nested_resources(resource: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, bool)> = vec![(resource, true)];
    while let Some((value, root)) = stack.pop() {
        match value {
            Value::Object(object) => {
                if !root && object.get("resourceType").is_some_and(Value::is_string) {
                    out.push(value);
                }
                for (key, child) in object {
                    if key != "meta" && key != "text" {
                        stack.push((child, false));
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, false))),
            _ => {}
        }
    }
    out
}

/// Every Coding (an object with a string `system` and `code`) in a resource, outside any `meta`.
pub fn codings(resource: &Value) -> Vec<Coding> {
    let mut out = Vec::new();
    let mut stack = vec![resource];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                if let Some(coding) = Coding::from_json(value) {
                    out.push(coding);
                }
                for (key, child) in object {
                    if key != "meta" && key != "text" {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    out
}

/// A problem in a rule table, naming the row (1-based) and the field.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RuleError {
    #[error("rule table is not valid TOML: {0}")]
    Toml(String),
    #[error("rule {row}: {field}: {message}")]
    Row {
        row: usize,
        field: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    systems: HashMap<String, Vec<String>>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    system: String,
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    ranges: Vec<String>,
    #[serde(default)]
    display: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    labels: Vec<String>,
    source: String,
}

/// One row of the rule table.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The code system URIs the row applies to.
    pub systems: Vec<String>,
    /// Exact codes, normalised (upper case, no dots).
    pub codes: Vec<String>,
    /// Prefix ranges, normalised, low and high.
    pub ranges: Vec<(String, String)>,
    /// Words looked for in the display, lower case.
    pub display: Vec<String>,
    /// Codes and prefix ranges the row does not cover, normalised.
    pub except: Vec<(String, String)>,
    pub labels: Vec<Sensitivity>,
    pub source: String,
}

impl Rule {
    fn matches(&self, coding: &Coding) -> bool {
        if !self.systems.contains(&coding.system) {
            return false;
        }
        let code = normalise(&coding.code);
        let in_range = |(low, high): &(String, String)| {
            code.get(..low.len()).is_some_and(|p| p >= low.as_str())
                && code.get(..high.len()).is_some_and(|p| p <= high.as_str())
        };
        if self.except.iter().any(in_range) {
            return false;
        }
        if self.codes.contains(&code) || self.ranges.iter().any(in_range) {
            return true;
        }
        match &coding.display {
            Some(display) if !self.display.is_empty() => {
                let display = display.to_lowercase();
                self.display.iter().any(|w| display.contains(w.as_str()))
            }
            _ => false,
        }
    }
}

/// Upper case, without dots or surrounding space: ICD-10-CM is written both `F32.9` and `F329`.
fn normalise(code: &str) -> String {
    code.trim()
        .chars()
        .filter(|c| *c != '.')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The parsed rule table.
#[derive(Debug, Clone)]
pub struct RuleTable {
    pub rules: Vec<Rule>,
}

impl RuleTable {
    /// The shipped table (`rules/labels.toml`), parsed on first use. A broken shipped table is a
    /// build defect that the crate's tests catch; should one ship anyway, labelling falls back to
    /// an empty table rather than failing every intake, and labels from the source still apply.
    pub fn builtin() -> &'static RuleTable {
        static TABLE: OnceLock<RuleTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            RuleTable::parse(BUILTIN_RULES).unwrap_or(RuleTable { rules: Vec::new() })
        })
    }

    /// Parses a rule table, checking every row (systems known, labels known, ranges sane, a
    /// source given).
    pub fn parse(text: &str) -> Result<RuleTable, Vec<RuleError>> {
        let raw: RawTable =
            toml::from_str(text).map_err(|e| vec![RuleError::Toml(e.to_string())])?;
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        for (i, row) in raw.rule.into_iter().enumerate() {
            let n = i + 1;
            let mut fail = |field: &'static str, message: String| {
                errors.push(RuleError::Row {
                    row: n,
                    field,
                    message,
                })
            };
            let Some(systems) = raw.systems.get(&row.system) else {
                fail("system", format!("unknown system name {:?}", row.system));
                continue;
            };
            if row.codes.is_empty() && row.ranges.is_empty() && row.display.is_empty() {
                fail("codes", "a row needs codes, ranges or display".into());
            }
            if row.source.trim().is_empty() {
                fail("source", "every row says where it comes from".into());
            }
            let mut labels = Vec::new();
            for label in &row.labels {
                match Sensitivity::parse(label) {
                    Some(s) => labels.push(s),
                    None => fail("labels", format!("unknown sensitivity code {label:?}")),
                }
            }
            if row.labels.is_empty() {
                fail("labels", "a row adds at least one label".into());
            }
            let mut ranges = Vec::new();
            for range in &row.ranges {
                match parse_range(range) {
                    Ok(r) => ranges.push(r),
                    Err(message) => fail("ranges", message),
                }
            }
            let mut except = Vec::new();
            for range in &row.except {
                match parse_range(range) {
                    Ok(r) => except.push(r),
                    Err(message) => fail("except", message),
                }
            }
            let codes: Vec<String> = row.codes.iter().map(|c| normalise(c)).collect();
            if codes.iter().any(String::is_empty) {
                fail("codes", "empty code".into());
            }
            let display: Vec<String> = row.display.iter().map(|d| d.to_lowercase()).collect();
            if display.iter().any(|d| d.trim().len() < 3) {
                fail("display", "display words have at least 3 letters".into());
            }
            rules.push(Rule {
                systems: systems.clone(),
                codes,
                ranges,
                display,
                except,
                labels,
                source: row.source,
            });
        }
        if errors.is_empty() {
            Ok(RuleTable { rules })
        } else {
            Err(errors)
        }
    }

    /// The sensitivity codes that the table gives one coding.
    pub fn sensitivity_of(&self, coding: &Coding) -> BTreeSet<Sensitivity> {
        self.rules
            .iter()
            .filter(|r| r.matches(coding))
            .flat_map(|r| r.labels.iter().copied())
            .collect()
    }

    /// The labels of a resource that arrives from `source` (see the module documentation).
    pub fn label(&self, resource: &Value, source: &SourceFacts) -> Labels {
        let mut sent = Labels::from_security(resource);
        for inner in nested_resources(resource) {
            sent.add(&Labels::from_security(inner));
        }
        let mut labels = Labels {
            confidentiality: Confidentiality::N,
            sensitivity: sent.sensitivity.clone(),
            kept: sent.kept.clone(),
        };
        for coding in codings(resource) {
            labels.sensitivity.extend(self.sensitivity_of(&coding));
        }
        if source.licence.is_some_and(Licence::is_behavioral_health) {
            labels.sensitivity.insert(Sensitivity::Bh);
        }
        if source.is_psychiatric() {
            labels.sensitivity.insert(Sensitivity::Psy);
            labels.sensitivity.insert(Sensitivity::Bh);
        }
        labels.confidentiality = confidentiality_for(&labels.sensitivity).max(sent.confidentiality);
        labels
    }
}

/// `"F10-F19"` or `"T74"` (low = high), normalised; both ends the same length, alphanumeric, and
/// low at most high.
fn parse_range(text: &str) -> Result<(String, String), String> {
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (normalise(low), normalise(high)),
        None => (normalise(text), normalise(text)),
    };
    let alnum = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    if !alnum(&low) || !alnum(&high) {
        return Err(format!("range {text:?}: ends are letters and digits"));
    }
    if low.len() != high.len() {
        return Err(format!("range {text:?}: both ends have the same length"));
    }
    if low > high {
        return Err(format!("range {text:?}: low end above high end"));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";

    fn condition(system: &str, code: &str) -> Value {
        json!({"resourceType": "Condition", "id": "c1",
               "code": {"coding": [{"system": system, "code": code}]},
               "subject": {"reference": "Patient/p1"}})
    }

    fn sens(resource: &Value, source: SourceFacts) -> Vec<&'static str> {
        label(resource, &source)
            .sensitivity
            .iter()
            .map(|s| s.code())
            .collect()
    }

    #[test]
    fn builtin_table_parses_and_its_rows_are_sane() {
        let table = RuleTable::parse(BUILTIN_RULES).expect("the shipped table parses");
        assert!(table.rules.len() >= 20);
        for rule in &table.rules {
            assert!(!rule.source.is_empty());
            assert!(!rule.labels.is_empty());
            for (low, high) in &rule.ranges {
                assert!(low <= high, "{low}-{high}");
                assert_eq!(low.len(), high.len());
            }
        }
    }

    #[test]
    fn bad_rows_are_named() {
        let text = r#"
            [systems]
            icd = ["http://hl7.org/fhir/sid/icd-10-cm"]
            [[rule]]
            system = "icd"
            ranges = ["F99-F01"]
            labels = ["MH"]
            source = "x"
            [[rule]]
            system = "nope"
            codes = ["1"]
            labels = ["MH"]
            source = "x"
            [[rule]]
            system = "icd"
            codes = ["1"]
            labels = ["XYZ"]
            source = ""
        "#;
        let errors = RuleTable::parse(text).expect_err("bad table");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:?}");
        assert!(text[0].starts_with("rule 1: ranges"));
        assert!(text[1].starts_with("rule 2: system"));
        assert!(text.iter().any(|t| t.starts_with("rule 3: labels")));
        assert!(text.iter().any(|t| t.starts_with("rule 3: source")));
        assert!(matches!(
            RuleTable::parse("not toml ["),
            Err(e) if matches!(e[0], RuleError::Toml(_))
        ));
    }

    #[test]
    fn icd_ranges() {
        let none = SourceFacts::default();
        assert_eq!(sens(&condition(ICD, "F32.9"), none), ["MH", "BH"]);
        assert_eq!(sens(&condition(ICD, "F329"), none), ["MH", "BH"]);
        assert_eq!(
            sens(&condition(ICD, "F10.20"), none),
            ["MH", "BH", "ETH", "SUD"]
        );
        assert_eq!(
            sens(&condition(ICD, "F19"), none),
            ["MH", "BH", "ETH", "SUD"]
        );
        // Nicotine dependence is not a Part 2 substance use disorder.
        assert_eq!(sens(&condition(ICD, "F17.210"), none), ["MH", "BH"]);
        assert_eq!(
            sens(&condition(ICD, "F16.20"), none),
            ["MH", "BH", "ETH", "SUD"]
        );
        assert_eq!(
            sens(&condition(ICD, "F18.10"), none),
            ["MH", "BH", "ETH", "SUD"]
        );
        assert_eq!(sens(&condition(ICD, "O99.320"), none), ["ETH", "SUD"]);
        assert!(sens(&condition(ICD, "O99.330"), none).is_empty());
        assert_eq!(sens(&condition(ICD, "R45.851"), none), ["MH", "BH"]);
        assert_eq!(sens(&condition(ICD, "F20.0"), none), ["PSY", "MH", "BH"]);
        assert_eq!(sens(&condition(ICD, "F31.81"), none), ["PSY", "MH", "BH"]);
        assert_eq!(sens(&condition(ICD, "F32.0"), none), ["MH", "BH"]);
        assert_eq!(sens(&condition(ICD, "B20"), none), ["HIV"]);
        assert_eq!(sens(&condition(ICD, "Z21"), none), ["HIV"]);
        assert_eq!(sens(&condition(ICD, "O98.711"), none), ["HIV"]);
        assert_eq!(sens(&condition(ICD, "T74.11XA"), none), ["SDV"]);
        assert_eq!(sens(&condition(ICD, "Z15.01"), none), ["GDIS"]);
        assert!(sens(&condition(ICD, "E11.9"), none).is_empty());
        assert!(sens(&condition(ICD, "G47.00"), none).is_empty());
        assert!(sens(&condition(ICD, "F"), none).is_empty());
        // The same code in another system is not the ICD code.
        assert!(sens(&condition("http://example.org/local", "F32.9"), none).is_empty());
        // The OID form of the system.
        assert_eq!(
            sens(&condition("urn:oid:2.16.840.1.113883.6.90", "F41.1"), none),
            ["MH", "BH"]
        );
    }

    #[test]
    fn codings_are_found_anywhere() {
        let none = SourceFacts::default();
        let request = json!({"resourceType": "MedicationRequest", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "1010600", "display": "Buprenorphine 2 MG / Naloxone 0.5 MG Sublingual Film"}]},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "5602001"}]}]});
        assert_eq!(sens(&request, none), ["BH", "ETH", "SUD"]);
        let observation = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "55277-8"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "165816005"}]}});
        assert_eq!(sens(&observation, none), ["HIV"]);
        let contained =
            json!({"resourceType": "Encounter", "contained": [condition(ICD, "F20.9")]});
        assert_eq!(sens(&contained, none), ["PSY", "MH", "BH"]);
        // meta is not content: a source's tag is not a diagnosis.
        let meta =
            json!({"resourceType": "Basic", "meta": {"tag": [{"system": ICD, "code": "F20.9"}]}});
        assert!(sens(&meta, none).is_empty());
    }

    #[test]
    fn source_rules() {
        let plain = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
        let by = |licence, facility| SourceFacts {
            licence,
            psychiatric_facility: facility,
        };
        for licence in [
            Licence::Lmft,
            Licence::Lcsw,
            Licence::Lpc,
            Licence::Ladc,
            Licence::Psychologist,
        ] {
            assert_eq!(sens(&plain, by(Some(licence), false)), ["BH"], "{licence}");
        }
        assert_eq!(
            sens(&plain, by(Some(Licence::Psychiatrist), false)),
            ["PSY", "BH"]
        );
        assert_eq!(sens(&plain, by(None, true)), ["PSY", "BH"]);
        assert_eq!(
            sens(&plain, by(Some(Licence::Physician), true)),
            ["PSY", "BH"]
        );
        assert!(sens(&plain, by(Some(Licence::Physician), false)).is_empty());
        assert!(sens(&plain, by(Some(Licence::NursePractitioner), false)).is_empty());
    }

    #[test]
    fn confidentiality() {
        let none = SourceFacts::default();
        let c = |r: &Value| label(r, &none).confidentiality;
        assert_eq!(c(&condition(ICD, "E11.9")), Confidentiality::N);
        assert_eq!(c(&condition(ICD, "F32.9")), Confidentiality::R);
        assert_eq!(c(&condition(ICD, "B20")), Confidentiality::R);
        assert_eq!(c(&condition(ICD, "F11.20")), Confidentiality::V);
        let note = json!({"resourceType": "DocumentReference", "meta": {"security": [
            {"system": ACT_CODE_SYSTEM, "code": "PSYTHPN"}]}});
        assert_eq!(c(&note), Confidentiality::V);
        // Never lower than the source sent.
        let sent_v = json!({"resourceType": "Observation", "meta": {"security": [
            {"system": CONFIDENTIALITY_SYSTEM, "code": "V"}]}});
        assert_eq!(c(&sent_v), Confidentiality::V);
        let sent_r_for_sud = json!({"resourceType": "Condition", "meta": {"security": [
            {"system": CONFIDENTIALITY_SYSTEM, "code": "R"}]},
            "code": {"coding": [{"system": ICD, "code": "F10.10"}]}});
        assert_eq!(c(&sent_r_for_sud), Confidentiality::V);
    }

    #[test]
    fn source_labels_are_kept() {
        let sent = json!({"resourceType": "Observation", "meta": {"security": [
            {"system": ACT_CODE_SYSTEM, "code": "HIV"},
            {"system": ACT_CODE_SYSTEM, "code": "42CFRPart2"},
            {"system": "http://example.org/local-labels", "code": "VIP", "display": "Very important"},
            {"system": "http://example.org/local-labels", "code": "VIP", "display": "Very important"}]}});
        let labels = label(&sent, &SourceFacts::default());
        assert_eq!(
            labels
                .sensitivity
                .iter()
                .map(|s| s.code())
                .collect::<Vec<_>>(),
            ["SUD", "HIV"]
        );
        assert_eq!(labels.kept.len(), 2);
        let security: Vec<String> = labels.security().iter().map(|c| c.code.clone()).collect();
        assert_eq!(security, ["V", "SUD", "HIV", "42CFRPart2", "VIP"]);
    }

    #[test]
    fn labels_of_nested_resources_count() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Observation", "meta": {"security": [
                {"system": ACT_CODE_SYSTEM, "code": "HIV"}]}}},
            {"resource": {"resourceType": "Condition", "contained": [
                {"resourceType": "Basic", "meta": {"security": [
                    {"system": CONFIDENTIALITY_SYSTEM, "code": "V"},
                    {"system": "http://example.org/l", "code": "X"}]}}]}}]});
        let labels = label(&bundle, &SourceFacts::default());
        assert_eq!(labels.confidentiality, Confidentiality::V);
        assert_eq!(
            labels
                .sensitivity
                .iter()
                .map(|s| s.code())
                .collect::<Vec<_>>(),
            ["HIV"]
        );
        assert_eq!(
            labels.kept,
            [Coding::new("http://example.org/l", "X", None)]
        );
    }

    #[test]
    fn apply_and_read_back() {
        let mut resource = condition(ICD, "F20.9");
        resource["meta"] = json!({"tag": [{"system": "http://example.org/t", "code": "keep"}]});
        let source = SourceFacts {
            licence: Some(Licence::Psychiatrist),
            psychiatric_facility: false,
        };
        let labels = label(&resource, &source);
        apply(&mut resource, &labels, &source);
        apply(&mut resource, &labels, &source);
        let back = ResourceLabels::from_resource(&resource);
        assert_eq!(back.labels, labels);
        assert_eq!(back.source, source);
        assert_eq!(resource["meta"]["tag"].as_array().map(Vec::len), Some(2));
        assert_eq!(resource["meta"]["security"][0]["code"], "R");
        let mut not_object = json!([1]);
        apply(&mut not_object, &labels, &source);
        assert_eq!(not_object, json!([1]));
    }

    #[test]
    fn what_derived_resources_point_at() {
        let provenance = json!({"resourceType": "Provenance",
            "target": [{"reference": "Condition/c1"}, {"reference": "https://x.example/fhir/Observation/o1/_history/3"}],
            "entity": [{"role": "source", "what": {"reference": "DocumentReference/d1"}},
                       {"role": "source", "what": {"identifier": {"value": "x"}}}]});
        assert_eq!(
            derived_from(&provenance),
            ["Condition/c1", "Observation/o1", "DocumentReference/d1"]
        );
        let document = json!({"resourceType": "DocumentReference",
            "relatesTo": [{"code": "transforms", "target": {"reference": "DocumentReference/d0"}}],
            "context": {"related": [{"reference": "Encounter/e1"}, {"reference": "#contained"}]}});
        assert_eq!(
            derived_from(&document),
            ["Encounter/e1", "DocumentReference/d0"]
        );
        let composition = json!({"resourceType": "Composition", "section": [
            {"entry": [{"reference": "Condition/c1"}]},
            {"section": [{"entry": [{"reference": "MedicationStatement/m1"}, {"reference": "Condition/c1"}]}]}]});
        assert_eq!(
            derived_from(&composition),
            ["Condition/c1", "MedicationStatement/m1"]
        );
        let list =
            json!({"resourceType": "List", "entry": [{"item": {"reference": "Condition/c2"}}]});
        assert_eq!(derived_from(&list), ["Condition/c2"]);
        let report = json!({"resourceType": "DiagnosticReport", "result": [{"reference": "Observation/o9"}]});
        assert_eq!(derived_from(&report), ["Observation/o9"]);
        assert!(derived_from(&json!({"resourceType": "Observation"})).is_empty());
        assert!(derived_from(&json!({"resourceType": "Provenance", "target": "oops"})).is_empty());
    }

    #[test]
    fn derived_takes_the_union() {
        let doc = json!({"resourceType": "DocumentReference", "status": "current"});
        let own = label(&doc, &SourceFacts::default());
        let parts = [
            Labels::of([Sensitivity::Hiv]),
            Labels::of([Sensitivity::Sud]),
        ];
        let labels = derived(&own, &parts);
        assert_eq!(labels.confidentiality, Confidentiality::V);
        assert!(labels.has_any(&[Sensitivity::Hiv]) && labels.has_any(&[Sensitivity::Sud]));
        assert_eq!(derived(&own, &[]).confidentiality, Confidentiality::N);
    }

    #[test]
    fn the_source_participant_is_one_tag_beside_the_others() {
        let mut resource = json!({"resourceType": "Observation", "meta": {"tag": [
            {"system": SOURCE_PARTICIPANT_SYSTEM, "code": "forged"},
            {"system": "http://example.org/other", "code": "kept"},
        ]}});
        set_source_participant(&mut resource, "org-a");
        assert_eq!(source_participant(&resource).as_deref(), Some("org-a"));
        let tags = resource["meta"]["tag"].as_array().unwrap();
        assert_eq!(tags.len(), 2, "{tags:?}");
        assert!(tags.iter().any(|t| t["code"] == "kept"));
        // Labelling leaves it alone.
        apply(&mut resource, &Labels::default(), &SourceFacts::default());
        assert_eq!(source_participant(&resource).as_deref(), Some("org-a"));
        let data = crate::policy::Data::from_json_text(
            &resource.to_string(),
            "p1",
            &crate::policy::Policy::connecticut(),
        )
        .unwrap();
        assert_eq!(data.source_participant.as_deref(), Some("org-a"));
        assert_eq!(
            source_participant(&json!({"resourceType": "Observation"})),
            None
        );
    }
}
