//! The FHIR R4 type model for the FHIRPath engine ([`fhirpath::Model`]), read from the generated tables.
//!
//! Lookups go through [`definitions::type_def`] (a hash index built once) and binary searches over the
//! sorted static tables.

use crate::definitions::{self, TypeKind};

/// The R4 model. Use [`MODEL`] (or [`model`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FhirModel;

/// The one instance there is any need for.
pub static MODEL: FhirModel = FhirModel;

/// The R4 model, as a trait object the FHIRPath engine takes.
pub fn model() -> &'static FhirModel {
    &MODEL
}

impl fhirpath::Model for FhirModel {
    fn child_type(&self, parent: &str, element: &str) -> Option<&'static str> {
        let ty = definitions::type_def(parent)?;
        let (def, ty) = ty.element_for_key(element)?;
        // A choice element asked for by its bare name has no single type.
        if def.choice && def.name == element {
            return None;
        }
        Some(ty)
    }

    fn is_a(&self, ty: &str, ancestor: &str) -> bool {
        definitions::is_a(ty, ancestor)
    }

    fn is_resource_type(&self, name: &str) -> bool {
        definitions::type_def(name).is_some_and(|t| t.kind == TypeKind::Resource)
    }

    fn type_name(&self, name: &str) -> Option<&'static str> {
        definitions::type_def(name).map(|t| t.name)
    }
}

#[cfg(test)]
mod tests {
    use fhirpath::Model;

    use super::*;

    fn check_child(parent: &str, element: &str, expected: Option<&str>) {
        assert_eq!(
            MODEL.child_type(parent, element),
            expected,
            "{parent}.{element}"
        );
    }

    #[test]
    fn child_types() {
        check_child("Patient", "name", Some("HumanName"));
        check_child("Patient", "id", Some("id"));
        check_child("Patient", "birthDate", Some("date"));
        check_child("Patient", "contact", Some("Patient.contact"));
        check_child("Patient.contact", "name", Some("HumanName"));
        check_child("Patient", "deceasedDateTime", Some("dateTime"));
        check_child("Patient", "deceasedBoolean", Some("boolean"));
        check_child("Patient", "deceased", None);
        check_child("Patient", "deceasedString", None);
        check_child("Patient", "nonsense", None);
        check_child("Observation", "valueQuantity", Some("Quantity"));
        check_child("Observation", "component", Some("Observation.component"));
        check_child(
            "Observation.component",
            "valueCodeableConcept",
            Some("CodeableConcept"),
        );
        check_child("Questionnaire.item", "item", Some("Questionnaire.item"));
        check_child("HumanName", "given", Some("string"));
        check_child("Extension", "url", Some("uri"));
        check_child("Bundle.entry", "resource", Some("Resource"));
        check_child("string", "extension", Some("Extension"));
    }

    #[test]
    fn type_hierarchy() {
        for (ty, ancestor, expected) in [
            ("Patient", "Patient", true),
            ("Patient", "DomainResource", true),
            ("Patient", "Resource", true),
            ("Bundle", "DomainResource", false),
            ("Bundle", "Resource", true),
            ("Age", "Quantity", true),
            ("Quantity", "Age", false),
            ("code", "string", true),
            ("positiveInt", "integer", true),
            ("Patient.contact", "BackboneElement", true),
            ("Patient.contact", "Element", true),
            ("HumanName", "Resource", false),
            ("Nonsense", "Resource", false),
        ] {
            assert_eq!(MODEL.is_a(ty, ancestor), expected, "{ty} is a {ancestor}");
        }
    }

    #[test]
    fn names() {
        assert!(MODEL.is_resource_type("Patient"));
        assert!(MODEL.is_resource_type("Resource"));
        assert!(!MODEL.is_resource_type("HumanName"));
        assert!(!MODEL.is_resource_type("patient"));
        assert_eq!(MODEL.type_name("Quantity"), Some("Quantity"));
        assert_eq!(MODEL.type_name("dateTime"), Some("dateTime"));
        assert_eq!(MODEL.type_name("DateTime"), None);
    }
}
