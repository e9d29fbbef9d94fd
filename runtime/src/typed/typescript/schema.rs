//! JSON Schema, as schemars writes it (draft 2020-12), to TypeScript types.
//!
//! A converted type accepts every value its schema accepts: what TypeScript cannot say
//! (`minimum`, `pattern`, `format`, `uniqueItems`, `not`, `if`/`then`/`else`, ...) only
//! narrows a schema, so leaving it out keeps the type true; what this module does not know
//! (an unknown `type`, a `$ref` outside the definitions, an `enum` member that is an object)
//! becomes `unknown`, never a guess. Every keyword of a schema applies at once, so a schema
//! with several (a `$ref` beside a `oneOf`, an object `type` beside an `anyOf`) becomes their
//! intersection.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// How deep a schema may nest before the rest of it is `unknown`.
const MAX_DEPTH: usize = 64;

/// A TypeScript type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Type {
    /// `unknown`: any value.
    Unknown,
    /// `never`: no value.
    Never,
    /// `string`, `number`, `boolean` or `null`.
    Keyword(&'static str),
    /// A literal type, as its JSON text: `"cover"`, `42`, `true`.
    Literal(String),
    /// A declared type, by name.
    Named(String),
    /// `T[]`.
    Array(Box<Type>),
    /// `[A, B?, ...C[]]`.
    Tuple(Tuple),
    /// `{ a: A; b?: B; [key: string]: C }`.
    Object(Object),
    /// `A | B`, at least two members.
    Union(Vec<Type>),
    /// `A & B`, at least two members.
    Intersection(Vec<Type>),
}

/// The elements of a tuple type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tuple {
    /// The elements every value has.
    required: Vec<Type>,
    /// The elements after them, that a value may have.
    optional: Vec<Type>,
    /// The type of any elements after those, if there may be more.
    rest: Option<Box<Type>>,
}

/// The members of an object type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    properties: Vec<Property>,
    /// The type of the properties not listed, if there may be others.
    index: Option<Box<Type>>,
}

/// A property of an object type.
#[derive(Debug, Clone, PartialEq)]
struct Property {
    name: String,
    optional: bool,
    ty: Type,
    doc: Doc,
}

/// What a JSDoc comment says about a declaration or a property.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Doc {
    /// The schema's `description`.
    description: Option<String>,
    /// The schema's `deprecated`.
    deprecated: bool,
}

impl Doc {
    /// The doc of a schema: its `description` and `deprecated`.
    pub(crate) fn of(schema: &Value) -> Self {
        Self {
            description: schema
                .get("description")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(str::to_owned),
            deprecated: schema.get("deprecated") == Some(&Value::Bool(true)),
        }
    }

    /// A doc that says `text`.
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Self {
            description: Some(text.into()),
            deprecated: false,
        }
    }

    /// Writes the doc as a JSDoc comment on its own lines, indented by `indent`, or nothing
    /// if it says nothing.
    pub(crate) fn write(&self, out: &mut String, indent: usize) {
        let mut lines: Vec<String> = self
            .description
            .iter()
            .flat_map(|text| text.lines())
            .map(|line| line.trim_end().replace("*/", "*\\/"))
            .collect();
        if self.deprecated {
            lines.push("@deprecated".to_owned());
        }
        let pad = " ".repeat(indent);
        match lines.as_slice() {
            [] => {}
            [line] => {
                let _ = writeln!(out, "{pad}/** {line} */");
            }
            lines => {
                let _ = writeln!(out, "{pad}/**");
                for line in lines {
                    if line.is_empty() {
                        let _ = writeln!(out, "{pad} *");
                    } else {
                        let _ = writeln!(out, "{pad} * {line}");
                    }
                }
                let _ = writeln!(out, "{pad} */");
            }
        }
    }
}

/// Converts schemas whose `$ref`s point into one set of definitions.
#[derive(Debug)]
pub(crate) struct Converter<'a> {
    /// The TypeScript name of each definition, by its name in the definitions.
    names: &'a HashMap<String, String>,
}

impl<'a> Converter<'a> {
    /// A converter that writes a `$ref` to the definition `name` as `names[name]`.
    pub(crate) fn new(names: &'a HashMap<String, String>) -> Self {
        Self { names }
    }

    /// The TypeScript type of `schema`.
    pub(crate) fn convert(&self, schema: &Value) -> Type {
        self.schema(schema, 0)
    }

    fn schema(&self, schema: &Value, depth: usize) -> Type {
        let object = match schema {
            Value::Bool(true) => return Type::Unknown,
            Value::Bool(false) => return Type::Never,
            Value::Object(object) if depth < MAX_DEPTH => object,
            _ => return Type::Unknown,
        };
        let depth = depth + 1;
        // Every keyword applies: the type is the intersection of what each says.
        let mut all = Vec::new();
        if let Some(reference) = object.get("$ref") {
            all.push(
                reference
                    .as_str()
                    .map_or(Type::Unknown, |r| self.reference(r)),
            );
        }
        if object.contains_key("$dynamicRef") || object.contains_key("$recursiveRef") {
            all.push(Type::Unknown);
        }
        all.push(self.own(object, depth));
        if let Some(Value::Array(parts)) = object.get("allOf") {
            all.extend(parts.iter().map(|part| self.schema(part, depth)));
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = object.get(keyword) {
                let branches = branches.iter().map(|b| self.schema(b, depth)).collect();
                all.push(union(branches));
            }
        }
        let ty = intersection(all);
        // OpenAPI's `nullable` widens the schema it is in.
        if object.get("nullable") == Some(&Value::Bool(true)) {
            union(vec![ty, Type::Keyword("null")])
        } else {
            ty
        }
    }

    /// What a schema's own keywords say: `enum`, `const`, or `type` with the keywords of each
    /// type (`properties`, `items`, ...).
    fn own(&self, schema: &Map<String, Value>, depth: usize) -> Type {
        let types: Option<Vec<&str>> = match schema.get("type") {
            None => None,
            Some(Value::String(name)) => Some(vec![name]),
            Some(Value::Array(names)) => {
                let names: Option<Vec<&str>> = names.iter().map(Value::as_str).collect();
                match names {
                    Some(names) => Some(names),
                    None => return Type::Unknown,
                }
            }
            Some(_) => return Type::Unknown,
        };
        let allowed = |value: &Value| {
            types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| is(value, t)))
        };
        if let Some(value) = schema.get("const") {
            return if allowed(value) {
                literal(value)
            } else {
                Type::Never
            };
        }
        if let Some(values) = schema.get("enum") {
            return match values {
                Value::Array(values) => {
                    union(values.iter().filter(|v| allowed(v)).map(literal).collect())
                }
                _ => Type::Unknown,
            };
        }
        let Some(types) = types else {
            // Without `type`, `properties` and `items` only constrain objects and arrays:
            // any value may still be something else.
            return Type::Unknown;
        };
        union(
            types
                .into_iter()
                .map(|name| match name {
                    "string" => Type::Keyword("string"),
                    "number" | "integer" => Type::Keyword("number"),
                    "boolean" => Type::Keyword("boolean"),
                    "null" => Type::Keyword("null"),
                    "array" => self.array(schema, depth),
                    "object" => self.object(schema, depth),
                    _ => Type::Unknown,
                })
                .collect(),
        )
    }

    /// An array's type: a tuple with `prefixItems`, else an array of its `items`.
    fn array(&self, schema: &Map<String, Value>, depth: usize) -> Type {
        let items = schema.get("items");
        let Some(Value::Array(prefix)) = schema.get("prefixItems") else {
            return match items {
                Some(Value::Bool(false)) => Type::Tuple(Tuple {
                    required: Vec::new(),
                    optional: Vec::new(),
                    rest: None,
                }),
                // An array of `items` is draft 7's tuple: not read here, any array.
                None | Some(Value::Array(_)) => Type::Array(Box::new(Type::Unknown)),
                Some(items) => Type::Array(Box::new(self.schema(items, depth))),
            };
        };
        let count = |keyword| {
            schema
                .get(keyword)
                .and_then(Value::as_u64)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let min = count("minItems").unwrap_or(0);
        let max = count("maxItems").unwrap_or(usize::MAX);
        let mut elements: Vec<Type> = prefix
            .iter()
            .take(max)
            .map(|s| self.schema(s, depth))
            .collect();
        let optional = elements.split_off(min.min(elements.len()));
        let rest = match items {
            _ if max <= prefix.len() => None,
            Some(Value::Bool(false)) => None,
            None => Some(Box::new(Type::Unknown)),
            Some(items) => Some(Box::new(self.schema(items, depth))),
        };
        Type::Tuple(Tuple {
            required: elements,
            optional,
            rest,
        })
    }

    /// An object's type: its `properties` (optional unless `required`), and an index
    /// signature for the others it may have.
    fn object(&self, schema: &Map<String, Value>, depth: usize) -> Type {
        let required: Vec<&str> = match schema.get("required") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut properties: Vec<Property> = match schema.get("properties") {
            Some(Value::Object(properties)) => properties
                .iter()
                .map(|(name, property)| Property {
                    name: name.clone(),
                    optional: !required.contains(&name.as_str()),
                    ty: self.schema(property, depth),
                    doc: Doc::of(property),
                })
                .collect(),
            _ => Vec::new(),
        };
        let described = !properties.is_empty();
        // A required property that is not described may hold anything.
        for name in required {
            if !properties.iter().any(|p| p.name == name) {
                properties.push(Property {
                    name: name.to_owned(),
                    optional: false,
                    ty: Type::Unknown,
                    doc: Doc::default(),
                });
            }
        }
        let index = if schema.contains_key("patternProperties") {
            // Other properties may match a pattern, whatever `additionalProperties` says.
            Some(Type::Unknown)
        } else {
            match schema.get("additionalProperties") {
                // Unsaid: a struct (its fields are all it writes), or any object.
                None if !described => Some(Type::Unknown),
                None | Some(Value::Bool(false)) => None,
                Some(additional) => {
                    // Each listed property must also fit the index signature.
                    let mut types = vec![self.schema(additional, depth)];
                    types.extend(properties.iter().map(|p| p.ty.clone()));
                    Some(union(types))
                }
            }
        };
        let index = match index {
            // No property at all: an empty object.
            None if properties.is_empty() => Some(Type::Never),
            index => index,
        };
        Type::Object(Object {
            properties,
            index: index.map(Box::new),
        })
    }

    /// The type a `$ref` names: a definition's name, or `unknown` for any other reference.
    fn reference(&self, reference: &str) -> Type {
        let name = ["#/$defs/", "#/definitions/"]
            .iter()
            .find_map(|prefix| reference.strip_prefix(prefix))
            .filter(|name| !name.contains('/'))
            .and_then(pointer_token);
        name.and_then(|name| self.names.get(&name))
            .map_or(Type::Unknown, |ts| Type::Named(ts.clone()))
    }
}

/// Decodes a JSON Pointer token in a URI fragment: percent-decoding, then `~1` and `~0`.
fn pointer_token(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    Some(text.replace("~1", "/").replace("~0", "~"))
}

/// Whether `value` is of the JSON Schema type `name`.
fn is(value: &Value, name: &str) -> bool {
    match (name, value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// The literal type of a value of an `enum` or a `const`: `unknown` for an array or an object.
fn literal(value: &Value) -> Type {
    match value {
        Value::Null => Type::Keyword("null"),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Type::Literal(value.to_string()),
        Value::Array(_) | Value::Object(_) => Type::Unknown,
    }
}

/// `A | B | ...`: flattened, without repeats or `never`; `unknown` if a member is.
fn union(types: Vec<Type>) -> Type {
    let mut members: Vec<Type> = Vec::new();
    for ty in types {
        let flat = match ty {
            Type::Union(inner) => inner,
            Type::Never => Vec::new(),
            Type::Unknown => return Type::Unknown,
            ty => vec![ty],
        };
        for ty in flat {
            if !members.contains(&ty) {
                members.push(ty);
            }
        }
    }
    match members.len() {
        0 => Type::Never,
        1 => members.remove(0),
        _ => Type::Union(members),
    }
}

/// `A & B & ...`: flattened, without repeats or `unknown`; `never` if a member is.
fn intersection(types: Vec<Type>) -> Type {
    let mut members: Vec<Type> = Vec::new();
    for ty in types {
        let flat = match ty {
            Type::Intersection(inner) => inner,
            Type::Unknown => Vec::new(),
            Type::Never => return Type::Never,
            ty => vec![ty],
        };
        for ty in flat {
            if !members.contains(&ty) {
                members.push(ty);
            }
        }
    }
    match members.len() {
        0 => Type::Unknown,
        1 => members.remove(0),
        _ => Type::Intersection(members),
    }
}

/// Where a type is written, for the parentheses it needs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// A declaration's right side, a property, a union member.
    Top,
    /// A member of an intersection: a union needs parentheses.
    Intersection,
    /// Before `[]` or `?`: a union or an intersection needs parentheses.
    Postfix,
}

impl Type {
    /// The type as TypeScript, its object types laid out over lines indented from `indent`.
    pub(crate) fn render(&self, indent: usize) -> String {
        let mut out = String::new();
        self.write(&mut out, indent, Place::Top);
        out
    }

    fn write(&self, out: &mut String, indent: usize, place: Place) {
        match self {
            Self::Unknown => out.push_str("unknown"),
            Self::Never => out.push_str("never"),
            Self::Keyword(keyword) => out.push_str(keyword),
            Self::Literal(json) | Self::Named(json) => out.push_str(json),
            Self::Array(element) => {
                element.write(out, indent, Place::Postfix);
                out.push_str("[]");
            }
            Self::Tuple(tuple) => tuple.write(out, indent),
            Self::Object(object) => object.write(out, indent),
            Self::Union(members) => {
                let parens = place > Place::Top;
                join(out, members, " | ", parens, |ty, out| {
                    ty.write(out, indent, Place::Top);
                });
            }
            Self::Intersection(members) => {
                let parens = place > Place::Intersection;
                join(out, members, " & ", parens, |ty, out| {
                    ty.write(out, indent, Place::Intersection);
                });
            }
        }
    }
}

/// Writes `items` separated by `separator`, in parentheses if `parens`.
fn join<T>(
    out: &mut String,
    items: &[T],
    separator: &str,
    parens: bool,
    mut write: impl FnMut(&T, &mut String),
) {
    if parens {
        out.push('(');
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        write(item, out);
    }
    if parens {
        out.push(')');
    }
}

impl Tuple {
    fn write(&self, out: &mut String, indent: usize) {
        let mut elements = Vec::new();
        for ty in &self.required {
            elements.push(ty.render(indent));
        }
        for ty in &self.optional {
            let mut element = String::new();
            ty.write(&mut element, indent, Place::Postfix);
            element.push('?');
            elements.push(element);
        }
        if let Some(rest) = &self.rest {
            let mut element = String::from("...");
            Type::Array(rest.clone()).write(&mut element, indent, Place::Top);
            elements.push(element);
        }
        let _ = write!(out, "[{}]", elements.join(", "));
    }
}

impl Object {
    fn write(&self, out: &mut String, indent: usize) {
        if self.properties.is_empty()
            && let Some(index) = &self.index
        {
            let _ = write!(out, "{{ [key: string]: {} }}", index.render(indent));
            return;
        }
        out.push_str("{\n");
        let inner = indent + 2;
        let pad = " ".repeat(inner);
        for property in &self.properties {
            property.doc.write(out, inner);
            let optional = if property.optional { "?" } else { "" };
            let _ = writeln!(
                out,
                "{pad}{}{optional}: {};",
                property_name(&property.name),
                property.ty.render(inner)
            );
        }
        if let Some(index) = &self.index {
            let _ = writeln!(out, "{pad}[key: string]: {};", index.render(inner));
        }
        let _ = write!(out, "{}}}", " ".repeat(indent));
    }
}

/// A property's name as TypeScript writes it: bare if it is an identifier, quoted if not.
pub(crate) fn property_name(name: &str) -> String {
    if is_identifier(name) {
        name.to_owned()
    } else {
        Value::String(name.to_owned()).to_string()
    }
}

/// Whether `name` is an (ASCII) identifier.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn ts(schema: Value) -> String {
        let names = HashMap::from([
            ("Fit".to_owned(), "Fit".to_owned()),
            ("a/b~c d".to_owned(), "A_b_c_d".to_owned()),
        ]);
        Converter::new(&names).convert(&schema).render(0)
    }

    #[test]
    fn scalars() {
        assert_eq!(ts(json!({"type": "string"})), "string");
        assert_eq!(
            ts(json!({"type": "integer", "format": "uint64", "minimum": 0})),
            "number"
        );
        assert_eq!(ts(json!({"type": "number", "format": "double"})), "number");
        assert_eq!(ts(json!({"type": "boolean"})), "boolean");
        assert_eq!(ts(json!({"type": "null"})), "null");
        assert_eq!(
            ts(json!({"type": "string", "format": "date-time"})),
            "string"
        );
    }

    #[test]
    fn boolean_and_empty_schemas() {
        assert_eq!(ts(json!(true)), "unknown");
        assert_eq!(ts(json!({})), "unknown");
        assert_eq!(ts(json!({"description": "anything"})), "unknown");
        assert_eq!(ts(json!(false)), "never");
    }

    #[test]
    fn nullable_types_are_unions() {
        assert_eq!(ts(json!({"type": ["integer", "null"]})), "number | null");
        assert_eq!(
            ts(json!({"anyOf": [{"$ref": "#/$defs/Fit"}, {"type": "null"}]})),
            "Fit | null"
        );
        assert_eq!(
            ts(json!({"type": ["string", "number", "integer"]})),
            "string | number"
        );
        assert_eq!(
            ts(json!({"type": "string", "nullable": true})),
            "string | null"
        );
    }

    #[test]
    fn enums_and_consts_are_literals() {
        assert_eq!(
            ts(json!({"type": "string", "enum": ["cover", "contain"]})),
            r#""cover" | "contain""#
        );
        assert_eq!(ts(json!({"type": "string", "const": "A"})), r#""A""#);
        assert_eq!(
            ts(json!({"enum": [1, -2.5, true, null]})),
            "1 | -2.5 | true | null"
        );
        // Only the members of the declared type can be values.
        assert_eq!(ts(json!({"type": "string", "enum": ["a", 1]})), r#""a""#);
        assert_eq!(ts(json!({"type": "integer", "enum": [1, 1.5]})), "1");
        assert_eq!(ts(json!({"type": "integer", "const": "1"})), "never");
        assert_eq!(ts(json!({"enum": []})), "never");
        // An object or array member is not written as a literal.
        assert_eq!(ts(json!({"enum": ["a", {"b": 1}]})), "unknown");
        // Quotes and backslashes stay escaped.
        assert_eq!(ts(json!({"const": "say \"hi\"\\"})), r#""say \"hi\"\\""#);
    }

    #[test]
    fn one_of_and_any_of_are_unions() {
        assert_eq!(
            ts(json!({"oneOf": [
                {"type": "string", "enum": ["Empty"]},
                {"description": "A circle", "type": "object",
                 "properties": {"Circle": {"type": "number"}},
                 "additionalProperties": false, "required": ["Circle"]},
            ]})),
            "\"Empty\" | {\n  Circle: number;\n}"
        );
        assert_eq!(
            ts(json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})),
            "number | string"
        );
        assert_eq!(
            ts(json!({"anyOf": [{"type": "integer"}, true]})),
            "unknown",
            "a branch that accepts anything accepts anything"
        );
    }

    #[test]
    fn keywords_side_by_side_intersect() {
        assert_eq!(
            ts(json!({"$ref": "#/$defs/Fit", "description": "How it fits."})),
            "Fit"
        );
        assert_eq!(
            ts(json!({"allOf": [{"$ref": "#/$defs/Fit"}, {"type": "string"}]})),
            "Fit & string"
        );
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
                "oneOf": [{"$ref": "#/$defs/Fit"}, {"type": "null"}],
            })),
            "{\n  id: string;\n} & (Fit | null)"
        );
        assert_eq!(ts(json!({"allOf": [{"type": "string"}, false]})), "never");
    }

    #[test]
    fn references() {
        assert_eq!(ts(json!({"$ref": "#/$defs/Fit"})), "Fit");
        assert_eq!(ts(json!({"$ref": "#/definitions/Fit"})), "Fit");
        // Escaped as a JSON Pointer in a URI fragment.
        assert_eq!(ts(json!({"$ref": "#/$defs/a~1b~0c%20d"})), "A_b_c_d");
        // Anything but a known definition is `unknown`, never a guess.
        assert_eq!(ts(json!({"$ref": "#/$defs/Missing"})), "unknown");
        assert_eq!(ts(json!({"$ref": "#/$defs/Fit/properties/a"})), "unknown");
        assert_eq!(
            ts(json!({"$ref": "https://example.com/fit.json"})),
            "unknown"
        );
        assert_eq!(ts(json!({"$ref": "#"})), "unknown");
        assert_eq!(ts(json!({"$ref": 3})), "unknown");
        assert_eq!(ts(json!({"$dynamicRef": "#node"})), "unknown");
    }

    #[test]
    fn arrays() {
        assert_eq!(
            ts(json!({"type": "array", "items": {"type": "string"}})),
            "string[]"
        );
        assert_eq!(
            ts(json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true})),
            "number[]"
        );
        assert_eq!(
            ts(json!({"type": "array", "items": {"type": ["string", "null"]}})),
            "(string | null)[]"
        );
        assert_eq!(ts(json!({"type": "array"})), "unknown[]");
        assert_eq!(ts(json!({"type": "array", "items": false})), "[]");
        assert_eq!(
            ts(json!({"type": "array", "items": [{"type": "string"}]})),
            "unknown[]",
            "draft 7's tuples are not read: any array"
        );
        assert_eq!(
            ts(json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}})),
            "number[][]"
        );
    }

    #[test]
    fn tuples() {
        // As schemars writes `(u8, String)`.
        assert_eq!(
            ts(json!({
                "type": "array", "minItems": 2, "maxItems": 2,
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
            })),
            "[number, string]"
        );
        assert_eq!(
            ts(json!({
                "type": "array", "minItems": 1, "items": false,
                "prefixItems": [{"type": "integer"}, {"type": ["string", "null"]}],
            })),
            "[number, (string | null)?]"
        );
        assert_eq!(
            ts(json!({
                "type": "array", "minItems": 1,
                "prefixItems": [{"type": "integer"}], "items": {"type": "boolean"},
            })),
            "[number, ...boolean[]]"
        );
        assert_eq!(
            ts(json!({"type": "array", "prefixItems": [{"type": "integer"}]})),
            "[number?, ...unknown[]]",
            "without minItems or items, any prefix and anything after it"
        );
        assert_eq!(
            ts(json!({
                "type": "array", "maxItems": 1,
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
            })),
            "[number?]",
            "no more than maxItems"
        );
    }

    #[test]
    fn objects() {
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {
                    "content-type": {"type": "string"},
                    "height": {"type": ["integer", "null"]},
                    "url": {"type": "string", "description": "Where the image is."},
                },
                "required": ["url", "content-type"],
            })),
            "{\n  \"content-type\": string;\n  height?: number | null;\n  /** Where the image is. */\n  url: string;\n}"
        );
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "{ [key: string]: number }",
            "a map"
        );
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": true})),
            "{ [key: string]: unknown }"
        );
        assert_eq!(ts(json!({"type": "object"})), "{ [key: string]: unknown }");
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": false})),
            "{ [key: string]: never }",
            "only the empty object"
        );
        assert_eq!(
            ts(json!({"type": "object", "required": ["a"]})),
            "{\n  a: unknown;\n  [key: string]: unknown;\n}"
        );
    }

    #[test]
    fn objects_with_other_properties() {
        // A struct with a flattened map.
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
                "additionalProperties": true,
            })),
            "{\n  id: string;\n  [key: string]: unknown;\n}"
        );
        // Every listed property fits the index signature too.
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "additionalProperties": {"type": "number"},
            })),
            "{\n  id?: string;\n  [key: string]: number | string;\n}"
        );
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "additionalProperties": false,
                "patternProperties": {"^x-": {"type": "number"}},
            })),
            "{\n  id?: string;\n  [key: string]: unknown;\n}"
        );
    }

    #[test]
    fn nested_objects_are_indented() {
        assert_eq!(
            ts(json!({
                "type": "object",
                "properties": {
                    "size": {
                        "type": "object",
                        "properties": {"w": {"type": "integer"}},
                        "required": ["w"],
                    },
                    "sizes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"h": {"type": "integer"}},
                            "required": ["h"],
                        },
                    },
                },
                "required": ["size"],
            })),
            "{\n  size: {\n    w: number;\n  };\n  sizes?: {\n    h: number;\n  }[];\n}"
        );
    }

    #[test]
    fn docs() {
        let mut out = String::new();
        Doc::text("One line.").write(&mut out, 2);
        assert_eq!(out, "  /** One line. */\n");
        let mut out = String::new();
        Doc::text("Title.\n\nEnds a comment: */ here.").write(&mut out, 0);
        assert_eq!(
            out,
            "/**\n * Title.\n *\n * Ends a comment: *\\/ here.\n */\n"
        );
        let mut out = String::new();
        Doc::of(&json!({"deprecated": true})).write(&mut out, 0);
        assert_eq!(out, "/** @deprecated */\n");
        let mut out = String::new();
        Doc::of(&json!({"description": "  "})).write(&mut out, 0);
        assert_eq!(out, "");
    }

    #[test]
    fn what_typescript_cannot_say_becomes_unknown() {
        assert_eq!(ts(json!({"type": "color"})), "unknown");
        assert_eq!(ts(json!({"type": 7})), "unknown");
        assert_eq!(ts(json!({"type": ["string", 7]})), "unknown");
        assert_eq!(ts(json!("not a schema")), "unknown");
        assert_eq!(
            ts(json!({"properties": {"a": {"type": "string"}}})),
            "unknown"
        );
        // Keywords that only narrow are left out.
        assert_eq!(
            ts(json!({"type": "string", "not": {"const": "a"}, "pattern": "^b"})),
            "string"
        );
        // Too deep: the rest is unknown.
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert_eq!(ts(deep), format!("unknown{}", "[]".repeat(MAX_DEPTH)));
    }
}
