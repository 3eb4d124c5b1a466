//! The shapes of the tables generated from the FHIR R4 definitions (see `xtask codegen`), and lookups
//! over them. The tables themselves live in [`crate::generated`] and are never edited by hand.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crate::generated;

/// SearchParameter.type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

/// One component of a composite search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The code of the search parameter this component uses (e.g. `code` for `code-value-quantity`).
    pub param: &'static str,
    /// FHIRPath relative to each item the composite's own expression selects.
    pub expression: &'static str,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    /// The name used in URLs (`birthdate`, `_lastUpdated`).
    pub code: &'static str,
    /// The id of the official SearchParameter it comes from (`individual-birthdate`).
    pub id: &'static str,
    pub kind: ParamType,
    /// The FHIRPath expression, reduced to the `|` parts that apply to this resource type;
    /// empty when the parameter has none (for example `_text`).
    pub expression: &'static str,
    /// Resource types a reference parameter may point at.
    pub targets: &'static [&'static str],
    pub modifiers: &'static [&'static str],
    pub comparators: &'static [&'static str],
    pub components: &'static [Component],
}

/// All resource types, sorted.
pub fn resource_types() -> &'static [&'static str] {
    generated::RESOURCE_TYPES
}

pub fn is_resource_type(name: &str) -> bool {
    generated::RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// The parameters defined for `resource_type` itself (not those common to every resource), sorted by code.
pub fn search_params(resource_type: &str) -> &'static [SearchParam] {
    generated::SEARCH_PARAMS
        .binary_search_by(|(ty, _)| (*ty).cmp(resource_type))
        .map(|i| generated::SEARCH_PARAMS[i].1)
        .unwrap_or(&[])
}

/// The parameters every resource has (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`,
/// `_text`, `_content`...), sorted by code.
pub fn common_search_params() -> &'static [SearchParam] {
    generated::COMMON_SEARCH_PARAMS
}

/// Looks a parameter up for a resource type, its own first, then the common ones.
pub fn search_param(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    let own = search_params(resource_type);
    if let Ok(i) = own.binary_search_by(|p| p.code.cmp(code)) {
        return Some(&own[i]);
    }
    let common = common_search_params();
    common
        .binary_search_by(|p| p.code.cmp(code))
        .ok()
        .map(|i| &common[i])
}

/// The search parameters that put a resource of `resource_type` into a Patient's compartment
/// (`subject`, `patient`, `performer`...); empty if the type is not in the compartment. `Patient`
/// itself is in its own compartment by identity and lists `link`.
pub fn patient_compartment_params(resource_type: &str) -> &'static [&'static str] {
    generated::PATIENT_COMPARTMENT
        .binary_search_by(|(ty, _)| (*ty).cmp(resource_type))
        .map(|i| generated::PATIENT_COMPARTMENT[i].1)
        .unwrap_or(&[])
}

/// What kind of type a [`TypeDef`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// `string`, `date`, `code`...: a JSON primitive, with an optional `_name` companion object.
    Primitive,
    /// A data type (`HumanName`) or a backbone element (`Patient.contact`): a JSON object.
    Complex,
    /// A resource type, including the abstract `Resource` and `DomainResource`.
    Resource,
}

/// `max` of an element whose cardinality is unbounded (`*`).
pub const UNBOUNDED: u32 = u32::MAX;

/// A resource type, data type or backbone element, with every element it may hold (inherited ones too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeDef {
    /// `Patient`, `HumanName`, `date`; for a backbone element its path (`Patient.contact`).
    pub name: &'static str,
    pub kind: TypeKind,
    /// The type this one specializes (`DomainResource`, `Element`, `BackboneElement`, `string` for `code`);
    /// empty for `Element` and `Resource`.
    pub base: &'static str,
    pub is_abstract: bool,
    /// Sorted by name. Primitive types list only `id` and `extension` (what their `_name` object may hold).
    pub elements: &'static [ElementDef],
}

/// One element of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementDef {
    /// The JSON name; for a choice element (`value[x]`) the name without the suffix (`value`).
    pub name: &'static str,
    /// The allowed types: FHIR type names, or a backbone element's path (`Patient.contact`).
    /// A `contentReference` is resolved to the path it refers to.
    pub types: &'static [&'static str],
    pub min: u32,
    /// [`UNBOUNDED`] for `*`.
    pub max: u32,
    /// Whether this is a choice element (`value[x]`): the JSON name is `name` plus the capitalized type.
    pub choice: bool,
    /// The URL of the value set a required binding names, when its codes ship in the definitions
    /// (see [`value_set`]).
    pub binding: Option<&'static str>,
    /// The resource types a `Reference` of this element may point at, sorted; empty when it may point at
    /// any resource (or the element takes no Reference).
    pub targets: &'static [&'static str],
    /// Whether the element is part of the resource's summary (`isSummary`, for `_summary=true`).
    pub summary: bool,
}

impl ElementDef {
    pub fn is_array(&self) -> bool {
        self.max > 1
    }
}

/// The codes of an expanded value set, by code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSet {
    pub url: &'static str,
    /// Code systems sorted by URL, each with its codes sorted.
    pub systems: &'static [(&'static str, &'static [&'static str])],
}

impl ValueSet {
    /// Whether `code` is in the value set, from any code system (for elements of type `code`).
    pub fn contains_code(&self, code: &str) -> bool {
        self.systems
            .iter()
            .any(|(_, codes)| codes.binary_search(&code).is_ok())
    }

    /// Whether the value set includes codes from `system`.
    pub fn has_system(&self, system: &str) -> bool {
        self.systems
            .binary_search_by(|(s, _)| (*s).cmp(system))
            .is_ok()
    }

    /// Whether `system|code` is in the value set.
    pub fn contains(&self, system: &str, code: &str) -> bool {
        match self.systems.binary_search_by(|(s, _)| (*s).cmp(system)) {
            Ok(i) => self.systems[i].1.binary_search(&code).is_ok(),
            Err(_) => false,
        }
    }
}

/// Every type (resources, data types, primitives, backbone elements), sorted by name.
pub fn types() -> &'static [TypeDef] {
    generated::TYPES
}

/// A type by name (`Patient`, `HumanName`, `date`, `Patient.contact`).
///
/// The hottest lookup there is (every step of every FHIRPath expression and every element validated
/// asks it), so it goes through a hash index built on first use rather than a binary search over
/// the long, prefix-sharing names of the sorted table.
pub fn type_def(name: &str) -> Option<&'static TypeDef> {
    static INDEX: OnceLock<
        HashMap<&'static str, &'static TypeDef, BuildHasherDefault<NameHasher>>,
    > = OnceLock::new();
    INDEX
        .get_or_init(|| generated::TYPES.iter().map(|t| (t.name, t)).collect())
        .get(name)
        .copied()
}

/// An FNV-1a-style hash taking 8 bytes at a time: type names are short, trusted (they come from the
/// tables or are looked up, never used as keys an attacker can fill) and hashed very often.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            h = (h ^ word)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

impl TypeDef {
    /// The names of the elements in the summary (`_summary=true`), sorted; choice elements without
    /// their suffix (`deceased`).
    pub fn summary_elements(&self) -> impl Iterator<Item = &'static str> {
        self.elements.iter().filter(|e| e.summary).map(|e| e.name)
    }

    /// The element called `name` exactly (not a choice element's JSON name, see [`TypeDef::element_for_key`]).
    pub fn element(&self, name: &str) -> Option<&'static ElementDef> {
        let elements = self.elements;
        elements
            .binary_search_by(|e| e.name.cmp(name))
            .ok()
            .map(|i| &elements[i])
    }

    /// The element a JSON property names, and for a choice element the type its suffix picks
    /// (`valueQuantity` gives `value[x]` and `Quantity`). `None` if the type defines no such element.
    pub fn element_for_key(&self, key: &str) -> Option<(&'static ElementDef, &'static str)> {
        if let Some(e) = self.element(key) {
            if !e.choice {
                return Some((e, e.types.first().copied().unwrap_or("")));
            }
        }
        // A choice element's name is a prefix of the key, and so sorts before it.
        let elements = self.elements;
        let end = elements.partition_point(|e| e.name < key);
        elements[..end]
            .iter()
            .rev()
            .filter(|e| e.choice)
            .find_map(|e| {
                let suffix = key.strip_prefix(e.name)?;
                e.types
                    .iter()
                    .find(|t| capitalized_eq(t, suffix))
                    .map(|t| (e, *t))
            })
    }
}

/// Whether `suffix` is `ty` with its first letter in upper case (`dateTime` and `DateTime`).
fn capitalized_eq(ty: &str, suffix: &str) -> bool {
    let (t, s) = (ty.as_bytes(), suffix.as_bytes());
    t.len() == s.len() && !t.is_empty() && t[0].to_ascii_uppercase() == s[0] && t[1..] == s[1..]
}

/// Whether `ty` is `ancestor` or derives from it.
pub fn is_a(ty: &str, ancestor: &str) -> bool {
    let mut current = type_def(ty);
    while let Some(t) = current {
        if t.name == ancestor {
            return true;
        }
        current = if t.base.is_empty() {
            None
        } else {
            type_def(t.base)
        };
    }
    false
}

/// The value sets of required bindings whose codes ship in the definitions, sorted by URL.
pub fn value_sets() -> &'static [ValueSet] {
    generated::VALUE_SETS
}

/// An expanded value set by URL (without a `|version` suffix).
pub fn value_set(url: &str) -> Option<&'static ValueSet> {
    let sets = generated::VALUE_SETS;
    sets.binary_search_by(|v| v.url.cmp(url))
        .ok()
        .map(|i| &sets[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_r4_search_parameter_is_there_once() {
        let mut ids: Vec<&str> = generated::SEARCH_PARAMS
            .iter()
            .flat_map(|(_, params)| params.iter())
            .chain(common_search_params())
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1378);
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(resource_types().windows(2).all(|w| w[0] < w[1]));
        assert!(generated::SEARCH_PARAMS.windows(2).all(|w| w[0].0 < w[1].0));
        for (ty, params) in generated::SEARCH_PARAMS {
            assert!(params.windows(2).all(|w| w[0].code < w[1].code), "{ty}");
        }
        assert!(common_search_params()
            .windows(2)
            .all(|w| w[0].code < w[1].code));
        assert!(generated::PATIENT_COMPARTMENT
            .windows(2)
            .all(|w| w[0].0 < w[1].0));
    }

    fn check(resource_type: &str, code: &str, kind: ParamType, expression: &str) {
        let p = search_param(resource_type, code)
            .unwrap_or_else(|| panic!("{resource_type}.{code} missing"));
        assert_eq!(
            (p.kind, p.expression),
            (kind, expression),
            "{resource_type}.{code}"
        );
    }

    #[test]
    fn spot_checks() {
        check("Patient", "birthdate", ParamType::Date, "Patient.birthDate");
        check("Patient", "_id", ParamType::Token, "Resource.id");
        check(
            "Observation",
            "value-quantity",
            ParamType::Quantity,
            "(Observation.value.ofType(Quantity)) | (Observation.value.ofType(SampledData))",
        );
        check(
            "Observation",
            "code-value-quantity",
            ParamType::Composite,
            "Observation",
        );
        check(
            "MedicationRequest",
            "code",
            ParamType::Token,
            "(MedicationRequest.medication.ofType(CodeableConcept))",
        );
        check("InsurancePlan", "name", ParamType::String, "name | alias");
        assert!(is_resource_type("Patient"));
        assert!(!is_resource_type("DomainResource"));
        assert!(search_param("Patient", "no-such-param").is_none());

        let composite = search_param("Observation", "code-value-quantity").unwrap();
        let components: Vec<(&str, &str)> = composite
            .components
            .iter()
            .map(|c| (c.param, c.expression))
            .collect();
        assert_eq!(
            components,
            [
                ("code", "code"),
                ("value-quantity", "value.ofType(Quantity)")
            ]
        );
        let subject = search_param("Observation", "subject").unwrap();
        assert!(subject.targets.contains(&"Patient") && subject.targets.contains(&"Group"));
        assert!(search_param("Observation", "date")
            .unwrap()
            .comparators
            .contains(&"ge"));
        assert!(search_param("Patient", "name")
            .unwrap()
            .modifiers
            .contains(&"exact"));

        let observation = patient_compartment_params("Observation");
        assert!(observation.contains(&"subject") && observation.contains(&"performer"));
        assert_eq!(patient_compartment_params("Patient"), ["link"]);
        assert!(patient_compartment_params("Organization").is_empty());
    }

    #[test]
    fn elements_and_bindings() {
        let patient = type_def("Patient").unwrap();
        assert_eq!(
            (patient.kind, patient.base),
            (TypeKind::Resource, "DomainResource")
        );
        let gender = patient.element("gender").unwrap();
        assert_eq!(
            (gender.types, gender.min, gender.max),
            (&["code"][..], 0, 1)
        );
        let gender_codes = value_set(gender.binding.unwrap()).unwrap();
        assert!(gender_codes.contains_code("female") && !gender_codes.contains_code("f"));
        assert!(gender_codes.contains("http://hl7.org/fhir/administrative-gender", "other"));
        let name = patient.element("name").unwrap();
        assert!(name.is_array() && name.max == UNBOUNDED);
        let summary: Vec<&str> = patient.summary_elements().collect();
        for in_summary in [
            "id",
            "meta",
            "identifier",
            "name",
            "birthDate",
            "deceased",
            "link",
        ] {
            assert!(summary.contains(&in_summary), "{in_summary}: {summary:?}");
        }
        for not_in_summary in ["text", "contained", "photo", "contact", "extension"] {
            assert!(!summary.contains(&not_in_summary), "{not_in_summary}");
        }
        let (deceased, ty) = patient.element_for_key("deceasedDateTime").unwrap();
        assert!(deceased.choice && ty == "dateTime");
        assert!(patient.element_for_key("deceaseddateTime").is_none());
        let link = type_def("Patient.link").unwrap().element("other").unwrap();
        assert_eq!((link.min, link.max), (1, 1));
        assert_eq!(type_def("date").map(|t| t.kind), Some(TypeKind::Primitive));
        assert_eq!(
            type_def("Quantity").map(|t| t.kind),
            Some(TypeKind::Complex)
        );
        assert!(type_def("SimpleQuantity").is_none());
        // Every type an element names is in the table.
        for t in types() {
            for e in t.elements {
                for ty in e.types {
                    assert!(type_def(ty).is_some(), "{}.{}: {ty}", t.name, e.name);
                }
            }
        }
    }
}
