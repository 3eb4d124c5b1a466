//! Extraction of index rows from a resource, by evaluating the search parameters' FHIRPath expressions.
//!
//! This runs on every write, so the expressions are parsed once per resource type (on first use) and
//! shared; parameters of a type that share an expression (`patient` and `subject` often do) evaluate it
//! once. The items an expression selects become typed [`IndexValue`]s by their FHIR type, or by their
//! shape when the engine could not tell the type (inside composite components).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use fhirpath::{Expression, Item};
use serde_json::{Map, Value};

use super::datetime;
use super::model::{CompositePart, IndexEntry, IndexValue, TokenValue};
use super::normalize::normalize;
use crate::definitions::{self, ParamType, SearchParam};

/// Every index row of `resource` for every search parameter of its type (including the common ones:
/// `_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`, and the parts of composite
/// parameters). `meta.lastUpdated` must already be set.
pub fn index_entries(resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    let Some(obj) = resource.as_object() else {
        return out;
    };
    common_entries(obj, &mut out);
    let Some(table) = resource_type(obj).and_then(table) else {
        return out;
    };
    let mut evaluated: Vec<Option<Vec<Item<'_>>>> = vec![None; table.expressions.len()];
    let mut values = Vec::new();
    for compiled in &table.params {
        let items = evaluated[compiled.expression]
            .get_or_insert_with(|| evaluate(&table.expressions[compiled.expression], resource));
        let code = compiled.param.code;
        if compiled.param.kind == ParamType::Composite {
            composite_entries(compiled, items, &mut out);
            continue;
        }
        values.clear();
        for item in items.iter() {
            item_values(compiled.param.kind, item, &mut values);
        }
        push_unique(&mut out, code, &mut values, None);
    }
    out
}

/// The ids of the Patients in whose compartment `resource` is (by the Patient CompartmentDefinition);
/// a Patient is in its own.
pub fn patient_compartments(resource: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let Some(obj) = resource.as_object() else {
        return ids;
    };
    let Some(ty) = resource_type(obj) else {
        return ids;
    };
    if ty == "Patient" {
        if let Some(id) = obj.get("id").and_then(Value::as_str) {
            ids.push(id.to_string());
        }
    }
    let codes = definitions::patient_compartment_params(ty);
    if codes.is_empty() {
        return ids;
    }
    let Some(table) = table(ty) else {
        return ids;
    };
    let mut values = Vec::new();
    let mut done: Vec<usize> = Vec::new();
    for code in codes {
        let Some(compiled) = table.params.iter().find(|c| c.param.code == *code) else {
            continue;
        };
        if compiled.param.kind != ParamType::Reference || done.contains(&compiled.expression) {
            continue;
        }
        done.push(compiled.expression);
        values.clear();
        for item in &evaluate(&table.expressions[compiled.expression], resource) {
            item_values(ParamType::Reference, item, &mut values);
        }
        for value in values.drain(..) {
            if let IndexValue::Reference {
                target_type: Some(t),
                target_id: Some(id),
                ..
            } = value
            {
                if t == "Patient" && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

/// [`patient_compartments`] of a resource given as JSON text, parsing only the elements that the
/// compartment's parameters look at (`subject`, `performer`...) instead of the whole resource: the
/// access decision point asks this of every resource it discloses. `None` if the text is not a
/// resource.
pub fn patient_compartments_of_json(json: &str) -> Option<Vec<String>> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    /// Keeps `resourceType`, `id` and the elements some type's compartment reads; skips the rest
    /// without building anything.
    struct Wanted;
    impl<'de> Visitor<'de> for Wanted {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a FHIR resource")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "resourceType" || key == "id" || is_compartment_element(&key) {
                    let value = map.next_value::<Value>()?;
                    out.insert(key, value);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let obj = deserializer.deserialize_map(Wanted).ok()?;
    deserializer.end().ok()?;
    obj.get("resourceType").and_then(Value::as_str)?;
    Some(patient_compartments(&Value::Object(obj)))
}

/// Whether `key` is an element some type's Patient compartment parameters read (`subject`,
/// `performer`...), or a choice of one (`valueReference` for `value[x]`). When some type's
/// expressions cannot be reduced to top-level elements, every key counts.
fn is_compartment_element(key: &str) -> bool {
    static ELEMENTS: LazyLock<Option<Vec<&'static str>>> = LazyLock::new(|| {
        let mut all: Vec<&'static str> = Vec::new();
        for ty in definitions::resource_types() {
            for name in elements_of(ty)? {
                if !all.contains(&name) {
                    all.push(name);
                }
            }
        }
        Some(all)
    });
    match ELEMENTS.as_ref() {
        None => true,
        Some(names) => names.iter().any(|n| {
            key.strip_prefix(n)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_uppercase))
        }),
    }
}

/// The top-level elements the Patient compartment's parameters of `ty` read, or `None` when some
/// expression does not start from one.
fn elements_of(ty: &'static str) -> Option<Vec<&'static str>> {
    let mut names: Vec<&'static str> = Vec::new();
    for code in definitions::patient_compartment_params(ty) {
        let param = definitions::search_params(ty)
            .iter()
            .find(|p| p.code == *code)?;
        for part in param.expression.split('|') {
            let part = part.trim().trim_start_matches('(').trim();
            let rest = part.strip_prefix(ty)?.strip_prefix('.')?;
            let name = rest
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .filter(|n| !n.is_empty())?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// The compiled search parameters of one resource type.
struct TypeTable {
    /// Distinct expressions of the type's parameters, parsed.
    expressions: Vec<Expression>,
    params: Vec<CompiledParam>,
}

struct CompiledParam {
    param: &'static SearchParam,
    /// Index into [`TypeTable::expressions`].
    expression: usize,
    /// For a composite: each component's parameter type and expression (relative to the item).
    components: Vec<(ParamType, Expression)>,
}

/// One lazily compiled table per resource type: a type's expressions are parsed when the first resource
/// of that type is written.
static TABLES: LazyLock<HashMap<&'static str, OnceLock<Option<TypeTable>>>> = LazyLock::new(|| {
    definitions::resource_types()
        .iter()
        .map(|t| (*t, OnceLock::new()))
        .collect()
});

fn table(ty: &str) -> Option<&'static TypeTable> {
    TABLES.get(ty)?.get_or_init(|| Some(compile(ty))).as_ref()
}

fn resource_type(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("resourceType").and_then(Value::as_str)
}

fn compile(ty: &str) -> TypeTable {
    let mut sources: Vec<&'static str> = Vec::new();
    let mut expressions = Vec::new();
    let mut params = Vec::new();
    let common = definitions::common_search_params()
        .iter()
        .filter(|p| !is_direct_common(p.code));
    for param in definitions::search_params(ty).iter().chain(common) {
        if param.expression.is_empty() || param.kind == ParamType::Special {
            continue;
        }
        let expression = match sources.iter().position(|s| *s == param.expression) {
            Some(i) => i,
            None => match fhirpath::parse(param.expression) {
                Ok(parsed) => {
                    sources.push(param.expression);
                    expressions.push(parsed);
                    expressions.len() - 1
                }
                // An expression the engine cannot parse gives no rows; a test checks that every
                // expression of the tables parses.
                Err(_) => continue,
            },
        };
        let mut components = Vec::new();
        if param.kind == ParamType::Composite {
            for component in param.components {
                let kind = definitions::search_param(ty, component.param).map(|p| p.kind);
                match (kind, fhirpath::parse(component.expression)) {
                    (Some(kind), Ok(parsed)) => components.push((kind, parsed)),
                    _ => break,
                }
            }
            if components.len() != param.components.len() {
                continue;
            }
        }
        params.push(CompiledParam {
            param,
            expression,
            components,
        });
    }
    TypeTable {
        expressions,
        params,
    }
}

fn evaluate<'a>(expression: &Expression, resource: &'a Value) -> Vec<Item<'a>> {
    expression.evaluate(resource, model()).unwrap_or_default()
}

/// The type knowledge the FHIRPath engine works with: the R4 model of the generated tables.
fn model() -> &'static dyn fhirpath::Model {
    crate::model::model()
}

/// The common parameters read straight from `id` and `meta` (cheaper than evaluating `Resource.meta.tag`
/// for every write, and the same rows).
fn is_direct_common(code: &str) -> bool {
    matches!(
        code,
        "_id" | "_lastUpdated" | "_tag" | "_profile" | "_security" | "_source"
    )
}

fn common_entries(obj: &Map<String, Value>, out: &mut Vec<IndexEntry>) {
    if let Some(id) = obj.get("id").and_then(Value::as_str) {
        out.push(entry("_id", token(None, Some(id), None)));
    }
    let Some(meta) = obj.get("meta").and_then(Value::as_object) else {
        return;
    };
    if let Some((low, high)) = meta
        .get("lastUpdated")
        .and_then(Value::as_str)
        .and_then(datetime::parse_range)
    {
        out.push(entry("_lastUpdated", IndexValue::Date { low, high }));
    }
    let mut values = Vec::new();
    for (code, key) in [("_tag", "tag"), ("_security", "security")] {
        for coding in array(meta.get(key)) {
            if let Some(coding) = coding.as_object() {
                coding_value(coding, None, &mut values);
            }
        }
        push_unique(out, code, &mut values, None);
    }
    for profile in array(meta.get("profile")) {
        if let Some(profile) = profile.as_str() {
            values.push(IndexValue::Uri(profile.to_string()));
        }
    }
    push_unique(out, "_profile", &mut values, None);
    if let Some(source) = meta.get("source").and_then(Value::as_str) {
        out.push(entry("_source", IndexValue::Uri(source.to_string())));
    }
}

fn entry(param: &'static str, value: IndexValue) -> IndexEntry {
    IndexEntry {
        param,
        value,
        composite: None,
    }
}

/// Moves `values` into `out` as rows of `param`, leaving out repeats (a name's given and family can be
/// the same word; `patient` rows of a resource that names the patient twice).
fn push_unique(
    out: &mut Vec<IndexEntry>,
    param: &'static str,
    values: &mut Vec<IndexValue>,
    part: Option<CompositePart>,
) {
    let start = out.len();
    for value in values.drain(..) {
        if out[start..].iter().any(|e| e.value == value) {
            continue;
        }
        out.push(IndexEntry {
            param,
            value,
            composite: part,
        });
    }
}

fn composite_entries(compiled: &CompiledParam, items: &[Item<'_>], out: &mut Vec<IndexEntry>) {
    let mut values = Vec::new();
    let mut group: u32 = 0;
    for item in items {
        let Item::Node { value, .. } = item else {
            continue;
        };
        let before = out.len();
        for (component, (kind, expression)) in compiled.components.iter().enumerate() {
            for inner in &evaluate(expression, value) {
                item_values(*kind, inner, &mut values);
            }
            if values.is_empty() {
                // An item without every component cannot match a composite search.
                out.truncate(before);
                break;
            }
            let part = CompositePart {
                group,
                component: u8::try_from(component).unwrap_or(u8::MAX),
            };
            out.extend(values.drain(..).map(|value| IndexEntry {
                param: compiled.param.code,
                value,
                composite: Some(part),
            }));
        }
        if out.len() > before {
            group += 1;
        }
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    }
}

fn str_at<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token(TokenValue {
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        text: text.map(normalize).filter(|t| !t.is_empty()),
    })
}

fn string_value(s: &str, out: &mut Vec<IndexValue>) {
    if !s.is_empty() {
        out.push(IndexValue::String {
            normalized: normalize(s),
            exact: s.to_string(),
        });
    }
}

/// The values of one item for a parameter of type `kind`.
fn item_values(kind: ParamType, item: &Item<'_>, out: &mut Vec<IndexValue>) {
    match item {
        Item::Node { value, ty } => node_values(kind, value, *ty, out),
        Item::String(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => {
            primitive_string(kind, s, None, out)
        }
        Item::Boolean(b) => {
            if kind == ParamType::Token {
                out.push(token(None, Some(if *b { "true" } else { "false" }), None));
            }
        }
        Item::Integer(n) => number_values(kind, *n as f64, &n.to_string(), out),
        Item::Decimal(n) => number_values(kind, *n, &n.to_string(), out),
        Item::Quantity { value, unit } => {
            if kind == ParamType::Quantity {
                out.push(IndexValue::Quantity {
                    system: Some("http://unitsofmeasure.org".to_string()),
                    code: Some(unit.clone()),
                    unit: Some(unit.clone()),
                    low: *value,
                    high: *value,
                });
            } else {
                number_values(kind, *value, &value.to_string(), out);
            }
        }
    }
}

fn number_values(kind: ParamType, value: f64, written: &str, out: &mut Vec<IndexValue>) {
    match kind {
        ParamType::Number => out.push(IndexValue::Number {
            low: value,
            high: value,
        }),
        ParamType::Token => out.push(token(None, Some(written), None)),
        _ => {}
    }
}

fn node_values(kind: ParamType, value: &Value, ty: Option<&str>, out: &mut Vec<IndexValue>) {
    match value {
        Value::String(s) => primitive_string(kind, s, ty, out),
        Value::Bool(b) => {
            if kind == ParamType::Token {
                out.push(token(None, Some(if *b { "true" } else { "false" }), None));
            }
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                number_values(kind, f, &n.to_string(), out);
            }
        }
        Value::Object(obj) => object_values(kind, obj, ty, out),
        Value::Array(items) => items.iter().for_each(|v| node_values(kind, v, ty, out)),
        Value::Null => {}
    }
}

fn primitive_string(kind: ParamType, s: &str, ty: Option<&str>, out: &mut Vec<IndexValue>) {
    match kind {
        ParamType::String => string_value(s, out),
        ParamType::Token => {
            if !s.is_empty() {
                out.push(token(None, Some(s), None));
            }
        }
        ParamType::Date => {
            if ty != Some("time") {
                if let Some((low, high)) = datetime::parse_range(s) {
                    out.push(IndexValue::Date { low, high });
                }
            }
        }
        ParamType::Number => {
            if let Ok(f) = s.parse::<f64>() {
                out.push(IndexValue::Number { low: f, high: f });
            }
        }
        ParamType::Reference => out.extend(reference_value(s)),
        ParamType::Uri => {
            if !s.is_empty() {
                out.push(IndexValue::Uri(s.to_string()));
            }
        }
        ParamType::Quantity | ParamType::Composite | ParamType::Special => {}
    }
}

/// What a complex value is, from its declared type or, failing that, its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    HumanName,
    Address,
    CodeableConcept,
    Coding,
    Identifier,
    ContactPoint,
    Period,
    Timing,
    Quantity,
    Money,
    Range,
    Reference,
    Resource,
    Unknown,
}

fn shape(kind: ParamType, obj: &Map<String, Value>, ty: Option<&str>) -> Shape {
    let declared = match ty {
        Some("HumanName") => Shape::HumanName,
        Some("Address") => Shape::Address,
        Some("CodeableConcept") => Shape::CodeableConcept,
        Some("Coding") => Shape::Coding,
        Some("Identifier") => Shape::Identifier,
        Some("ContactPoint") => Shape::ContactPoint,
        Some("Period") => Shape::Period,
        Some("Timing") => Shape::Timing,
        Some(
            "Quantity" | "Age" | "Duration" | "SimpleQuantity" | "Distance" | "Count"
            | "MoneyQuantity",
        ) => Shape::Quantity,
        Some("Money") => Shape::Money,
        Some("Range") => Shape::Range,
        Some("Reference") => Shape::Reference,
        _ => Shape::Unknown,
    };
    if declared != Shape::Unknown {
        return declared;
    }
    if obj.contains_key("resourceType") {
        return Shape::Resource;
    }
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    match kind {
        ParamType::String if has(&["family", "given", "prefix", "suffix"]) => Shape::HumanName,
        ParamType::String
            if has(&["line", "city", "district", "state", "postalCode", "country"]) =>
        {
            Shape::Address
        }
        ParamType::Token if has(&["coding"]) => Shape::CodeableConcept,
        ParamType::Token if has(&["code"]) => Shape::Coding,
        ParamType::Token if has(&["value"]) => {
            let contact = matches!(
                str_at(obj, "system"),
                Some("phone" | "fax" | "email" | "pager" | "url" | "sms" | "other")
            );
            if contact {
                Shape::ContactPoint
            } else {
                Shape::Identifier
            }
        }
        ParamType::Token if has(&["text"]) => Shape::CodeableConcept,
        ParamType::Date if has(&["event", "repeat"]) => Shape::Timing,
        ParamType::Date if has(&["start", "end"]) => Shape::Period,
        ParamType::Quantity | ParamType::Number if has(&["low", "high"]) => Shape::Range,
        ParamType::Quantity if has(&["currency"]) => Shape::Money,
        ParamType::Quantity | ParamType::Number if has(&["value"]) => Shape::Quantity,
        ParamType::Reference if has(&["reference", "identifier"]) => Shape::Reference,
        _ => Shape::Unknown,
    }
}

fn object_values(
    kind: ParamType,
    obj: &Map<String, Value>,
    ty: Option<&str>,
    out: &mut Vec<IndexValue>,
) {
    match (kind, shape(kind, obj, ty)) {
        (ParamType::String, Shape::HumanName) => {
            strings_at(obj, &["family", "given", "prefix", "suffix", "text"], out);
        }
        (ParamType::String, Shape::Address) => {
            strings_at(
                obj,
                &[
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                    "text",
                ],
                out,
            );
        }
        (ParamType::Token, Shape::Coding) => coding_value(obj, None, out),
        (ParamType::Token, Shape::CodeableConcept) => {
            let text = str_at(obj, "text");
            let before = out.len();
            for coding in array(obj.get("coding")) {
                if let Some(coding) = coding.as_object() {
                    coding_value(coding, text, out);
                }
            }
            // The concept's text is searchable by `:text` even when no coding carries it.
            let text_covered = out[before..].iter().any(|v| matches!(v, IndexValue::Token(t) if t.text.as_deref() == text.map(normalize).as_deref()));
            if let (Some(text), false) = (text, text_covered) {
                out.push(token(None, None, Some(text)));
            }
        }
        (ParamType::Token, Shape::Identifier) => identifier_values(obj, out),
        (ParamType::Token, Shape::ContactPoint) => {
            if let Some(value) = str_at(obj, "value") {
                out.push(token(str_at(obj, "system"), Some(value), None));
            }
        }
        (ParamType::Token, Shape::Quantity) => {
            // A token over a Quantity (rare) searches its coded unit.
            if let Some(code) = str_at(obj, "code") {
                out.push(token(str_at(obj, "system"), Some(code), None));
            }
        }
        (ParamType::Date, Shape::Period) => {
            let start = str_at(obj, "start").map(datetime::parse_range);
            let end = str_at(obj, "end").map(datetime::parse_range);
            match (start, end) {
                (None, None) | (Some(None), _) | (_, Some(None)) => {}
                (start, end) => out.push(IndexValue::Date {
                    low: start.flatten().map_or(i64::MIN, |r| r.0),
                    high: end.flatten().map_or(i64::MAX, |r| r.1),
                }),
            }
        }
        (ParamType::Date, Shape::Timing) => {
            // Only the outer limits of a schedule count for search: its first event to its last, and the
            // bounds of its repeat.
            let mut bounds: Option<(i64, i64)> = None;
            let mut widen = |(low, high): (i64, i64)| {
                bounds = Some(bounds.map_or((low, high), |(l, h)| (l.min(low), h.max(high))));
            };
            for event in array(obj.get("event")) {
                if let Some(range) = event.as_str().and_then(datetime::parse_range) {
                    widen(range);
                }
            }
            if let Some(period) = obj
                .get("repeat")
                .and_then(|r| r.get("boundsPeriod"))
                .and_then(Value::as_object)
            {
                let mut rows = Vec::new();
                object_values(ParamType::Date, period, Some("Period"), &mut rows);
                for row in rows {
                    if let IndexValue::Date { low, high } = row {
                        widen((low, high));
                    }
                }
            }
            if let Some((low, high)) = bounds {
                out.push(IndexValue::Date { low, high });
            }
        }
        (ParamType::Quantity, Shape::Quantity) => out.extend(quantity_value(obj)),
        (ParamType::Quantity, Shape::Money) => {
            if let Some(value) = obj.get("value").and_then(Value::as_f64) {
                out.push(IndexValue::Quantity {
                    system: Some("urn:iso:std:iso:4217".to_string()),
                    code: str_at(obj, "currency").map(str::to_string),
                    unit: None,
                    low: value,
                    high: value,
                });
            }
        }
        (ParamType::Quantity, Shape::Range) => {
            let low = obj.get("low").and_then(Value::as_object);
            let high = obj.get("high").and_then(Value::as_object);
            let low_value = low.and_then(|q| q.get("value")).and_then(Value::as_f64);
            let high_value = high.and_then(|q| q.get("value")).and_then(Value::as_f64);
            if low_value.is_none() && high_value.is_none() {
                return;
            }
            let unit_from = if low_value.is_some() { low } else { high };
            let unit_of = |key| unit_from.and_then(|q| str_at(q, key)).map(str::to_string);
            out.push(IndexValue::Quantity {
                system: unit_of("system"),
                code: unit_of("code"),
                unit: unit_of("unit"),
                low: low_value.unwrap_or(f64::MIN),
                high: high_value.unwrap_or(f64::MAX),
            });
        }
        (ParamType::Number, Shape::Quantity) => {
            if let Some(IndexValue::Quantity { low, high, .. }) = quantity_value(obj) {
                out.push(IndexValue::Number { low, high });
            }
        }
        (ParamType::Number, Shape::Range) => {
            let bound = |key: &str| {
                obj.get(key)
                    .and_then(|q| q.get("value"))
                    .and_then(Value::as_f64)
            };
            match (bound("low"), bound("high")) {
                (None, None) => {}
                (low, high) => out.push(IndexValue::Number {
                    low: low.unwrap_or(f64::MIN),
                    high: high.unwrap_or(f64::MAX),
                }),
            }
        }
        (ParamType::Reference, Shape::Reference) => {
            if let Some(reference) = str_at(obj, "reference") {
                out.extend(reference_value(reference));
            }
            // `:identifier` searches the logical reference's identifier.
            if let Some(identifier) = obj.get("identifier").and_then(Value::as_object) {
                identifier_values(identifier, out);
            }
        }
        (ParamType::Reference, Shape::Resource) => {
            // An expression that selects a resource (`Bundle.entry[0].resource`) refers to it.
            if let (Some(ty), Some(id)) = (str_at(obj, "resourceType"), str_at(obj, "id")) {
                out.push(IndexValue::Reference {
                    target_type: Some(ty.to_string()),
                    target_id: Some(id.to_string()),
                    url: None,
                    version: None,
                });
            }
        }
        _ => {}
    }
}

fn strings_at(obj: &Map<String, Value>, keys: &[&str], out: &mut Vec<IndexValue>) {
    for key in keys {
        for value in array(obj.get(*key)) {
            if let Some(s) = value.as_str() {
                string_value(s, out);
            }
        }
    }
}

/// A Coding as a token; `concept_text` is its CodeableConcept's text, used when the coding has no display.
fn coding_value(
    coding: &Map<String, Value>,
    concept_text: Option<&str>,
    out: &mut Vec<IndexValue>,
) {
    let system = str_at(coding, "system");
    let code = str_at(coding, "code");
    let text = str_at(coding, "display").or(concept_text);
    if system.is_some() || code.is_some() {
        out.push(token(system, code, text));
    }
}

fn identifier_values(identifier: &Map<String, Value>, out: &mut Vec<IndexValue>) {
    let system = str_at(identifier, "system");
    let value = str_at(identifier, "value");
    let ty = identifier.get("type").and_then(Value::as_object);
    let type_text = ty.and_then(|t| str_at(t, "text"));
    if system.is_some() || value.is_some() {
        out.push(token(system, value, type_text));
    }
    let (Some(value), Some(ty)) = (value, ty) else {
        return;
    };
    for coding in array(ty.get("coding")) {
        let Some(coding) = coding.as_object() else {
            continue;
        };
        if let Some(code) = str_at(coding, "code") {
            out.push(IndexValue::IdentifierOfType {
                type_system: str_at(coding, "system").map(str::to_string),
                type_code: code.to_string(),
                value: value.to_string(),
            });
        }
    }
}

fn quantity_value(obj: &Map<String, Value>) -> Option<IndexValue> {
    let value = obj.get("value").and_then(Value::as_f64)?;
    // A comparator makes the quantity an open range: `<5` is everything below 5.
    let (low, high) = match str_at(obj, "comparator") {
        Some("<" | "<=") => (f64::MIN, value),
        Some(">" | ">=") => (value, f64::MAX),
        _ => (value, value),
    };
    Some(IndexValue::Quantity {
        system: str_at(obj, "system").map(str::to_string),
        code: str_at(obj, "code").map(str::to_string),
        unit: str_at(obj, "unit").map(str::to_string),
        low,
        high,
    })
}

/// A reference as written: relative (`Patient/123`, `Patient/123/_history/2`), absolute (kept as its url,
/// and as type and id too when it ends in `Type/id`, so that a search by `Patient/123` finds a
/// reference written against this server's own base), or canonical (`url|version`). Local references
/// to contained resources (`#x`) point inside the resource and give no row.
pub fn reference_value(reference: &str) -> Option<IndexValue> {
    if reference.is_empty() || reference.starts_with('#') {
        return None;
    }
    if is_absolute(reference) {
        let (url, version) = match reference.split_once('|') {
            Some((url, version)) => (url, Some(version.to_string())),
            None => (reference, None),
        };
        let (target_type, target_id) = match type_and_id_tail(url) {
            Some((t, id)) => (Some(t.to_string()), Some(id.to_string())),
            None => (None, None),
        };
        return Some(IndexValue::Reference {
            target_type,
            target_id,
            url: Some(url.to_string()),
            version,
        });
    }
    match type_and_id(reference) {
        Some((t, id)) => Some(IndexValue::Reference {
            target_type: Some(t.to_string()),
            target_id: Some(id.to_string()),
            url: None,
            version: None,
        }),
        None => Some(IndexValue::Reference {
            target_type: None,
            target_id: None,
            url: Some(reference.to_string()),
            version: None,
        }),
    }
}

/// `Type/id` or `Type/id/_history/n`, for a known resource type.
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let mut parts = reference.split('/');
    let (ty, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) | (Some("_history"), Some(_), None) => {}
        _ => return None,
    }
    (definitions::is_resource_type(ty) && is_id(id)).then_some((ty, id))
}

/// The `Type/id` at the end of an absolute URL (`http://x/fhir/Patient/123[/_history/2]`).
fn type_and_id_tail(url: &str) -> Option<(&str, &str)> {
    let url = url.trim_end_matches('/');
    let mut parts = url.rsplit('/');
    let last = parts.next()?;
    let before = parts.next()?;
    if before == "_history" {
        let id = parts.next()?;
        let ty = parts.next()?;
        return (definitions::is_resource_type(ty) && is_id(id)).then_some((ty, id));
    }
    (definitions::is_resource_type(before) && is_id(last)).then_some((before, last))
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub(crate) fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A URI with a scheme (`http://...`, `urn:uuid:...`), as opposed to a relative reference.
pub(crate) fn is_absolute(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}
