//! TypeScript declarations of tasks, for a frontend that follows their runs with Trigger.dev's
//! SDK or React hooks: [`Declarations`].
//!
//! The declarations are a `.d.ts` module, written from the JSON Schemas of the tasks' Rust
//! types (their [`JsonSchema`] impls, as in [`Task::payload_schema`]). Each task is a
//! `const` of the SDK's `Task` type, which the SDK's and the hooks' type parameters take
//! (`runs.subscribeToRun<typeof resizeImage>(runId)`, `useRealtimeRun<typeof resizeImage>`),
//! so that `tsc` checks a frontend against the Rust declarations: the task identifier, the
//! payload it triggers with, the output and the metadata it reads, and the chunks of each
//! stream. It needs `@trigger.dev/sdk`'s types (`import type`: nothing at run time).
//!
//! The schemas are those runcast checks triggers against, which say what a task accepts: a
//! field that may be left out (an `Option`, a `#[serde(default)]`) is optional (`?`), in an
//! output too. A type is only as precise as TypeScript can be: integers are `number`, formats
//! and ranges are left out, and what a schema says that TypeScript cannot (or that this module
//! does not read) is `unknown`, never a narrower type than the schema's.

mod schema;

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;

use self::schema::{Converter, Doc, Type};
use super::chunk::{StreamKey, TaskChunk};
use super::task::Task;

/// The name the module gives the SDK's `Task` type.
const TRIGGER_TASK: &str = "TriggerTask";

/// TypeScript declarations of tasks: a `.d.ts` module with, for each task, a `const` that
/// stands for the task in the SDK's and the React hooks' type parameters, and the types of
/// its payload, output, metadata and stream chunks. Write it with [`Display`](fmt::Display)
/// (`to_string()`).
///
/// ```
/// use runcast::task;
/// use runcast::typescript::Declarations;
/// # use serde::{Deserialize, Serialize};
///
/// /// An image to resize.
/// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
/// struct Resize {
///     url: String,
///     width: u32,
/// }
///
/// #[task(id = "resize-image", payload = Resize, output = u64, streams(log = String))]
/// struct ResizeImage;
///
/// let declarations = Declarations::new()
///     .task::<ResizeImage>()
///     .stream(ResizeImage::LOG);
/// let ts = declarations.to_string();
/// assert!(ts.contains(
///     "export declare const resizeImage: TriggerTask<\"resize-image\", ResizeImagePayload, ResizeImageOutput>;"
/// ));
/// assert!(ts.contains("export type ResizeImagePayload = Resize;"));
/// assert!(ts.contains("export type Resize = {\n  url: string;\n  width: number;\n};"));
/// assert!(ts.contains("export type ResizeImageStreams = {\n  log: string;\n};"));
/// ```
///
/// A frontend then imports the types it uses:
///
/// ```ts
/// import { runs, tasks } from "@trigger.dev/sdk";
/// import type { resizeImage } from "./tasks";
///
/// const handle = await tasks.trigger<typeof resizeImage>("resize-image", { url, width: 640 });
/// for await (const run of runs.subscribeToRun<typeof resizeImage>(handle.id)) {
///   console.log(run.status, run.output); // `run.output` is a `number | undefined`
/// }
/// ```
///
/// Names: a task's `const` is its identifier in lowerCamelCase (`resize-image` →
/// `resizeImage`; one that starts with a digit gets a `_` before it, a reserved word `Task`
/// after it, and one taken by an earlier task a number after it), and its types are named after it in
/// UpperCamelCase: `ResizeImagePayload`, `ResizeImageOutput`, `ResizeImageMetadata` and
/// `ResizeImageStreams` (stream key → chunk type: the `TStreams` of `withStreams<TStreams>()`
/// and of `useRealtimeRunWithStreams<TTask, TStreams>`). The Rust types they refer to are
/// declared under their schema names (the Rust names), each once for all tasks.
///
/// The SDK types a run's metadata as any JSON object: read it as
/// `run.metadata as ResizeImageMetadata | undefined`.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    /// One generator for every type, so that a Rust type is declared once.
    generator: SchemaGenerator,
    tasks: Vec<TaskTypes>,
}

/// A task's identifier and the schemas of its types.
#[derive(Debug, Clone)]
struct TaskTypes {
    id: &'static str,
    payload: Value,
    output: Value,
    metadata: Value,
    /// Each stream's key and the schema of its chunks, if given.
    streams: Vec<(&'static str, Option<Value>)>,
}

impl Declarations {
    /// Declarations of no task yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the task `T`: its identifier and the types of its payload, output and
    /// metadata, and its streams. A task declared twice (by identifier) is declared once.
    ///
    /// A stream's chunk type is `unknown` unless it is given with [`stream`](Self::stream):
    /// `#[task]` does not require chunk types to implement `JsonSchema`.
    #[must_use]
    pub fn task<T: Task>(mut self) -> Self {
        self.entry::<T>();
        self
    }

    /// Gives the chunk type of one of a task's streams, by its key (`Chat::TOKENS`), and
    /// declares the task if it is not yet.
    #[must_use]
    pub fn stream<T: Task, C: JsonSchema>(mut self, stream: StreamKey<T, C>) -> Self {
        let chunk = self.generator.subschema_for::<C>().to_value();
        let key = stream.key();
        let streams = &mut self.entry::<T>().streams;
        match streams.iter_mut().find(|(k, _)| *k == key) {
            Some((_, schema)) => *schema = Some(chunk),
            None => streams.push((key, Some(chunk))),
        }
        self
    }

    /// The task `T`'s entry, added if it is not there.
    fn entry<T: Task>(&mut self) -> &mut TaskTypes {
        let at = match self.tasks.iter().position(|task| task.id == T::ID) {
            Some(at) => at,
            None => {
                let generator = &mut self.generator;
                self.tasks.push(TaskTypes {
                    id: T::ID,
                    payload: generator.subschema_for::<T::Payload>().to_value(),
                    output: generator.subschema_for::<T::Output>().to_value(),
                    metadata: generator.subschema_for::<T::Metadata>().to_value(),
                    streams: T::Chunk::STREAMS.iter().map(|key| (*key, None)).collect(),
                });
                self.tasks.len() - 1
            }
        };
        &mut self.tasks[at]
    }

    /// The module's text.
    fn render(&self) -> String {
        let mut values = HashSet::new();
        let mut types = HashSet::from([TRIGGER_TASK.to_owned()]);
        let tasks: Vec<Named<'_>> = self
            .tasks
            .iter()
            .map(|task| {
                let value = unique(value_name(task.id), &mut values);
                let prefix = upper_first(&value);
                for suffix in ALIASES {
                    types.insert(format!("{prefix}{suffix}"));
                }
                Named {
                    task,
                    value,
                    prefix,
                }
            })
            .collect();

        // A definition takes the name of the alias that would only refer to it
        // (`ChatPayload` for `payload = ChatPayload`), and the alias is left out.
        let definitions = self.generator.definitions();
        let mut adopted: HashMap<&str, String> = HashMap::new();
        for task in &tasks {
            for (suffix, schema) in ALIASES.iter().zip(task.schemas()) {
                let alias = format!("{}{suffix}", task.prefix);
                if let Some(definition) = only_reference(schema)
                    && definitions.contains_key(definition)
                    && type_name(definition) == alias
                {
                    adopted.insert(definition, alias);
                }
            }
        }
        let names: HashMap<String, String> = definitions
            .keys()
            .map(|key| {
                let name = match adopted.get(key.as_str()) {
                    Some(alias) => alias.clone(),
                    None => unique(type_name(key), &mut types),
                };
                (key.clone(), name)
            })
            .collect();
        let converter = Converter::new(&names);

        let mut out = String::from(HEADER);
        let _ = writeln!(
            out,
            "import type {{ Task as {TRIGGER_TASK} }} from \"@trigger.dev/sdk\";"
        );
        for task in &tasks {
            task.write(&mut out, &converter, &adopted);
        }
        if !definitions.is_empty() {
            out.push_str("\n// The Rust types that the tasks' types refer to.\n");
        }
        for (key, schema) in definitions {
            let name = &names[key];
            out.push('\n');
            Doc::of(schema).write(&mut out, 0);
            let ty = converter.convert(schema).render(0);
            let _ = writeln!(out, "export type {name} = {ty};");
        }
        out
    }
}

impl fmt::Display for Declarations {
    /// Writes the `.d.ts` module.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The start of the module, before its import.
const HEADER: &str = "\
// TypeScript declarations of runcast tasks, generated from their Rust types: do not edit,
// generate them again.
//
// Each task is a `const` to use in types only (it has no value at run time):
//   import type { myTask } from \"./tasks\";
//   tasks.trigger<typeof myTask>(\"my-task\", payload);
//   runs.subscribeToRun<typeof myTask>(runId);
//   useRealtimeRunWithStreams<typeof myTask, MyTaskStreams>(runId, options);
";

/// The suffixes of a task's type names, in the order of [`Named::schemas`].
const ALIASES: [&str; 3] = ["Payload", "Output", "Metadata"];

/// A task with its names.
struct Named<'a> {
    task: &'a TaskTypes,
    /// The `const`'s name.
    value: String,
    /// What its type names start with.
    prefix: String,
}

impl Named<'_> {
    /// The schemas of the payload, output and metadata.
    fn schemas(&self) -> [&Value; 3] {
        [&self.task.payload, &self.task.output, &self.task.metadata]
    }

    /// Writes the task's `const` and its types.
    fn write(&self, out: &mut String, converter: &Converter<'_>, adopted: &HashMap<&str, String>) {
        let Self {
            task,
            value,
            prefix,
        } = self;
        let id_literal = Value::String(task.id.to_owned());
        let id = task.id;
        out.push('\n');
        Doc::text(format!("The task `{id}`.")).write(out, 0);
        let _ = writeln!(
            out,
            "export declare const {value}: {TRIGGER_TASK}<{id_literal}, {prefix}Payload, {prefix}Output>;"
        );
        let docs = [
            format!("What a run of `{id}` is triggered with."),
            format!("What a run of `{id}` returns."),
            format!(
                "The metadata of a run of `{id}`. The SDK types `run.metadata` as any JSON \
                 object: read it as `run.metadata as {prefix}Metadata | undefined`."
            ),
        ];
        for ((suffix, schema), doc) in ALIASES.iter().zip(self.schemas()).zip(docs) {
            let alias = format!("{prefix}{suffix}");
            let is_adopted = only_reference(schema)
                .and_then(|definition| adopted.get(definition))
                .is_some_and(|name| *name == alias);
            if !is_adopted {
                Doc::text(doc).write(out, 0);
                let ty = converter.convert(schema).render(0);
                let _ = writeln!(out, "export type {alias} = {ty};");
            }
        }
        Doc::text(format!(
            "The chunks of each realtime stream of `{id}`, by stream key: \
             `withStreams<{prefix}Streams>()`, \
             `useRealtimeRunWithStreams<typeof {value}, {prefix}Streams>`."
        ))
        .write(out, 0);
        if task.streams.is_empty() {
            let _ = writeln!(out, "export type {prefix}Streams = {{}};");
            return;
        }
        let _ = writeln!(out, "export type {prefix}Streams = {{");
        for (key, chunk) in &task.streams {
            let ty = match chunk {
                Some(schema) => converter.convert(schema),
                None => {
                    Doc::text("Its chunk type was not given to runcast (`Declarations::stream`).")
                        .write(out, 2);
                    Type::Unknown
                }
            };
            let _ = writeln!(out, "  {}: {};", schema::property_name(key), ty.render(2));
        }
        out.push_str("};\n");
    }
}

/// The definition a schema is only a reference to, by name: `Chat` for
/// `{"$ref": "#/$defs/Chat"}`.
fn only_reference(schema: &Value) -> Option<&str> {
    let object = schema.as_object().filter(|object| object.len() == 1)?;
    object.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// `name`, or `name` followed by the first number from 2 that makes it one not in `taken`;
/// taken from then on.
fn unique(name: String, taken: &mut HashSet<String>) -> String {
    let name = if taken.contains(&name) {
        (2..)
            .map(|n| format!("{name}{n}"))
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or(name)
    } else {
        name
    };
    taken.insert(name.clone());
    name
}

/// A task identifier as a TypeScript `const` name: its words in lowerCamelCase.
fn value_name(id: &str) -> String {
    let mut name = String::new();
    for word in id.split(|c: char| !c.is_ascii_alphanumeric()) {
        // A word in capitals is a word, not initials: `SEND_EMAIL` → `sendEmail`.
        let word = if word.chars().any(|c| c.is_ascii_lowercase()) {
            word.to_owned()
        } else {
            word.to_ascii_lowercase()
        };
        if name.is_empty() {
            name = lower_first(&word);
        } else {
            name.push_str(&upper_first(&word));
        }
    }
    if name.is_empty() {
        return "task".to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if RESERVED.contains(&name.as_str()) {
        name.push_str("Task");
    }
    name
}

/// A definition's name as a TypeScript type name.
fn type_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$') {
        name.insert(0, '_');
    }
    if RESERVED.contains(&name.as_str()) || TYPE_KEYWORDS.contains(&name.as_str()) {
        name.push('_');
    }
    name
}

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

fn lower_first(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

/// Words that cannot name a `const` or a type.
const RESERVED: &[&str] = &[
    "arguments",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "eval",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

/// TypeScript's own type names, which cannot name a type either.
const TYPE_KEYWORDS: &[&str] = &[
    "any",
    "bigint",
    "boolean",
    "never",
    "number",
    "object",
    "string",
    "symbol",
    "undefined",
    "unknown",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::task;
    use serde::{Deserialize, Serialize};

    #[test]
    fn const_names_are_lower_camel_case() {
        assert_eq!(value_name("resize-image"), "resizeImage");
        assert_eq!(value_name("emails/send.v2"), "emailsSendV2");
        assert_eq!(value_name("SEND_EMAIL"), "sendEmail");
        assert_eq!(value_name("sendEmail"), "sendEmail");
        assert_eq!(value_name("HTTPGet"), "hTTPGet");
        assert_eq!(value_name("3d-render"), "_3dRender");
        assert_eq!(value_name("delete"), "deleteTask");
        assert_eq!(value_name("--"), "task");
    }

    #[test]
    fn type_names_are_identifiers() {
        assert_eq!(type_name("Resize"), "Resize");
        assert_eq!(type_name("Page_for_Item"), "Page_for_Item");
        assert_eq!(type_name("a/b c"), "a_b_c");
        assert_eq!(type_name("2d"), "_2d");
        assert_eq!(type_name("string"), "string_");
        assert_eq!(type_name("class"), "class_");
    }

    #[test]
    fn names_taken_get_a_number() {
        let mut taken = HashSet::new();
        assert_eq!(unique("a".to_owned(), &mut taken), "a");
        assert_eq!(unique("a".to_owned(), &mut taken), "a2");
        assert_eq!(unique("a".to_owned(), &mut taken), "a3");
        assert_eq!(unique("a2".to_owned(), &mut taken), "a22");
    }

    /// How an image fits its new size.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Fit {
        Cover,
        Contain,
    }

    // Fields in alphabetical order: the order of the schema's properties, whether
    // `serde_json` keeps the order of insertion or sorts.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    struct Resize {
        fit: Option<Fit>,
        /// Where the image is.
        url: String,
    }

    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    struct ChatPayload {
        prompt: String,
    }

    #[derive(Default, Serialize, Deserialize, schemars::JsonSchema)]
    struct Progress {
        done: u32,
    }

    #[task(id = "resize-image", payload = Resize, output = Vec<Fit>)]
    struct ResizeImage;

    #[task(id = "chat", payload = ChatPayload, output = String, metadata = Progress,
           streams(tokens = String, usage = (u32, u32)))]
    struct Chat;

    #[task(id = "resize_image", payload = (), output = ())]
    struct ResizeImageToo;

    #[test]
    fn a_module_of_tasks() {
        let ts = Declarations::new()
            .task::<ResizeImage>()
            .task::<Chat>()
            .stream(Chat::TOKENS)
            .task::<ResizeImage>()
            .to_string();
        let expected = format!(
            "{HEADER}{}",
            r#"import type { Task as TriggerTask } from "@trigger.dev/sdk";

/** The task `resize-image`. */
export declare const resizeImage: TriggerTask<"resize-image", ResizeImagePayload, ResizeImageOutput>;
/** What a run of `resize-image` is triggered with. */
export type ResizeImagePayload = Resize;
/** What a run of `resize-image` returns. */
export type ResizeImageOutput = Fit[];
/** The metadata of a run of `resize-image`. The SDK types `run.metadata` as any JSON object: read it as `run.metadata as ResizeImageMetadata | undefined`. */
export type ResizeImageMetadata = { [key: string]: unknown };
/** The chunks of each realtime stream of `resize-image`, by stream key: `withStreams<ResizeImageStreams>()`, `useRealtimeRunWithStreams<typeof resizeImage, ResizeImageStreams>`. */
export type ResizeImageStreams = {};

/** The task `chat`. */
export declare const chat: TriggerTask<"chat", ChatPayload, ChatOutput>;
/** What a run of `chat` returns. */
export type ChatOutput = string;
/** The metadata of a run of `chat`. The SDK types `run.metadata` as any JSON object: read it as `run.metadata as ChatMetadata | undefined`. */
export type ChatMetadata = Progress;
/** The chunks of each realtime stream of `chat`, by stream key: `withStreams<ChatStreams>()`, `useRealtimeRunWithStreams<typeof chat, ChatStreams>`. */
export type ChatStreams = {
  tokens: string;
  /** Its chunk type was not given to runcast (`Declarations::stream`). */
  usage: unknown;
};

// The Rust types that the tasks' types refer to.

export type ChatPayload = {
  prompt: string;
};

/** How an image fits its new size. */
export type Fit = "cover" | "contain";

export type Progress = {
  done: number;
};

export type Resize = {
  fit?: Fit | null;
  /** Where the image is. */
  url: string;
};
"#
        );
        assert_eq!(ts, expected, "{ts}");
    }

    #[test]
    fn names_do_not_collide() {
        let ts = Declarations::new()
            .task::<ResizeImage>()
            .task::<ResizeImageToo>()
            .to_string();
        assert!(ts.contains(
            "export declare const resizeImage2: TriggerTask<\"resize_image\", ResizeImage2Payload, ResizeImage2Output>;\n"
        ));
        assert!(ts.contains("export type ResizeImage2Payload = null;\n"));
        assert!(ts.contains("export declare const resizeImage: TriggerTask<\"resize-image\""));
    }

    #[test]
    fn no_tasks() {
        assert_eq!(
            Declarations::new().to_string(),
            format!("{HEADER}import type {{ Task as TriggerTask }} from \"@trigger.dev/sdk\";\n")
        );
    }
}
