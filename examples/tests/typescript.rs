//! The TypeScript declarations of tasks (`runcast::typescript::Declarations`), checked by
//! `tsc` against the official SDK's types (`conformance/`, pinned in its lockfile; installed
//! with `npm ci` if they are not): a frontend that uses them as it should compiles, and each
//! misuse fails to compile with the error its developer would see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runcast::task;
use runcast::typescript::Declarations;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the image fits its new size.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Fit {
    Cover,
    Contain,
    Fill,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Size {
    width: u32,
    height: u32,
}

/// A region of the image.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Crop {
    x: u32,
    y: u32,
    size: Size,
}

/// An encoding of the resized image.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Format {
    Png,
    Jpeg { quality: u8 },
    Webp { lossless: bool },
}

/// An image to resize.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Resize {
    /// Where the image is.
    url: String,
    width: u32,
    height: Option<u32>,
    fit: Fit,
    crop: Option<Crop>,
    formats: Vec<Format>,
    headers: BTreeMap<String, String>,
    focal_point: (f64, f64),
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Resized {
    url: String,
    bytes: u64,
    format: Format,
}

#[derive(Serialize, Deserialize, JsonSchema)]
enum Stage {
    Download,
    Resize,
    Upload { attempt: u32 },
}

/// How far a resize is: the run's metadata.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Progress {
    percent: f32,
    stage: Stage,
}

#[task(id = "resize-image", payload = Resize, output = Resized, metadata = Progress)]
struct ResizeImage;

/// A section of a generated text: a recursive type.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Outline {
    title: String,
    sections: Vec<Outline>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

#[task(id = "generate-text", payload = String, output = Outline,
       streams(tokens = String, usage = Usage))]
struct GenerateText;

/// The module under test.
fn declarations() -> String {
    Declarations::new()
        .task::<ResizeImage>()
        .task::<GenerateText>()
        .stream(GenerateText::TOKENS)
        .stream(GenerateText::USAGE)
        .to_string()
}

/// What every TypeScript file here starts with.
const IMPORTS: &str = r#"import { runs, tasks } from "@trigger.dev/sdk";
import type {
  AnyTask,
  RealtimeRun,
  TaskIdentifier,
  TaskOutput,
  TaskPayload,
} from "@trigger.dev/sdk";
import type {
  Fit,
  Format,
  GenerateTextMetadata,
  GenerateTextStreams,
  Outline,
  Progress,
  Resize,
  ResizeImageMetadata,
  ResizeImagePayload,
  ResizeImageStreams,
  Resized,
  Stage,
  Usage,
  generateText,
  resizeImage,
} from "./tasks";
"#;

/// A frontend that uses the declarations as it should; the type assertions fail on a type
/// that differs from the one expected, `any` included.
const CORRECT_USE: &str = r#"
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

export type Checks = [
  // What the React hooks' type parameters require: `TTask extends AnyTask` (they give a
  // `RealtimeRun<TTask>`, as the SDK does) and `TStreams extends Record<string, any>`.
  Assert<typeof resizeImage extends AnyTask ? true : false>,
  Assert<typeof generateText extends AnyTask ? true : false>,
  Assert<GenerateTextStreams extends Record<string, any> ? true : false>,
  Assert<ResizeImageStreams extends Record<string, any> ? true : false>,
  Assert<Same<TaskIdentifier<typeof resizeImage>, "resize-image">>,
  Assert<Same<TaskPayload<typeof resizeImage>, Resize>>,
  Assert<Same<TaskOutput<typeof resizeImage>, Resized>>,
  Assert<Same<TaskIdentifier<typeof generateText>, "generate-text">>,
  Assert<Same<TaskPayload<typeof generateText>, string>>,
  Assert<Same<TaskOutput<typeof generateText>, Outline>>,
  Assert<Same<ResizeImagePayload, Resize>>,
  Assert<Same<ResizeImageMetadata, Progress>>,
  Assert<Same<RealtimeRun<typeof resizeImage>["payload"], Resize>>,
  Assert<Same<RealtimeRun<typeof resizeImage>["output"], Resized | undefined>>,
  Assert<Same<Resize["url"], string>>,
  Assert<Same<Resize["width"], number>>,
  Assert<Same<Resize["height"], number | null | undefined>>,
  Assert<Same<Resize["fit"], Fit>>,
  Assert<Same<Fit, "cover" | "contain" | "fill">>,
  Assert<Same<NonNullable<Resize["crop"]>["size"], { height: number; width: number }>>,
  Assert<Same<Resize["formats"], Format[]>>,
  Assert<Same<Resize["headers"], { [key: string]: string }>>,
  Assert<Same<Resize["focalPoint"], [number, number]>>,
  Assert<Same<Extract<Format, { type: "jpeg" }>, { quality: number; type: "jpeg" }>>,
  Assert<Same<Format["type"], "png" | "jpeg" | "webp">>,
  Assert<Same<Stage, "Download" | "Resize" | { Upload: { attempt: number } }>>,
  Assert<Same<Outline["sections"], Outline[]>>,
  Assert<Same<GenerateTextMetadata, { [key: string]: unknown }>>,
  Assert<Same<GenerateTextStreams, { tokens: string; usage: Usage }>>,
  Assert<Same<Usage, { completionTokens: number; promptTokens: number }>>,
];

export async function resize(): Promise<string> {
  const handle = await tasks.trigger<typeof resizeImage>("resize-image", {
    url: "https://example.com/cat.png",
    width: 640,
    height: null,
    fit: "cover",
    crop: { x: 0, y: 0, size: { width: 320, height: 200 } },
    formats: [{ type: "png" }, { type: "jpeg", quality: 80 }],
    headers: { accept: "image/png" },
    focalPoint: [0.5, 0.25],
  });
  return handle.id;
}

export async function follow(runId: string): Promise<string[]> {
  const seen: string[] = [];
  for await (const run of runs.subscribeToRun<typeof resizeImage>(runId)) {
    const width: number = run.payload.width;
    const progress = run.metadata as ResizeImageMetadata | undefined;
    const stage = progress?.stage;
    const attempt = typeof stage === "object" ? stage.Upload.attempt : 0;
    if (run.output) {
      const format = run.output.format;
      const quality = format.type === "jpeg" ? format.quality : 100;
      seen.push(`${run.status} ${width} ${run.output.bytes} ${quality} ${attempt}`);
    }
  }
  return seen;
}

export async function stream(runId: string): Promise<string> {
  let text = "";
  const parts = runs.subscribeToRun<typeof generateText>(runId).withStreams<GenerateTextStreams>();
  for await (const part of parts) {
    switch (part.type) {
      case "run": {
        const prompt: string = part.run.payload;
        const titles = part.run.output?.sections.map((section) => section.title) ?? [];
        text += `${prompt} ${titles.join(", ")}`;
        break;
      }
      case "tokens":
        text += part.chunk.toUpperCase();
        break;
      case "usage":
        text += part.chunk.promptTokens + part.chunk.completionTokens;
        break;
    }
  }
  return text;
}

export async function noStreams(runId: string): Promise<number> {
  let updates = 0;
  const parts = runs.subscribeToRun<typeof resizeImage>(runId).withStreams<ResizeImageStreams>();
  for await (const part of parts) {
    const type: "run" = part.type;
    updates += type === "run" && part.run.payload.width > 0 ? 1 : 0;
  }
  return updates;
}

export async function tagged(): Promise<number> {
  let total = 0;
  for await (const run of runs.subscribeToRunsWithTag<typeof resizeImage | typeof generateText>(
    "user:42",
  )) {
    if (run.taskIdentifier === "resize-image") {
      total += run.payload.width;
    } else {
      total += run.payload.length;
    }
  }
  return total;
}
"#;

/// Misuses, each in a file of its own, with the error `tsc` must give for it.
const MISUSES: &[(&str, &str, &str)] = &[
    (
        "payload-field-of-another-type",
        r#"await tasks.trigger<typeof resizeImage>("resize-image", {
  url: "https://example.com/cat.png", width: "640", height: null, fit: "cover", crop: null,
  formats: [], headers: {}, focalPoint: [0.5, 0.5],
});"#,
        "error TS2322: Type 'string' is not assignable to type 'number'.",
    ),
    (
        "payload-without-a-required-field",
        r#"await tasks.trigger<typeof resizeImage>("resize-image", {
  width: 640, fit: "cover", formats: [], headers: {}, focalPoint: [0.5, 0.5],
});"#,
        "error TS2741: Property 'url' is missing in type '{ width: number; fit: \"cover\"; \
         formats: never[]; headers: {}; focalPoint: [number, number]; }' but required in type \
         'Resize'.",
    ),
    (
        "payload-enum-value-not-declared",
        r#"await tasks.trigger<typeof resizeImage>("resize-image", {
  url: "https://example.com/cat.png", width: 640, fit: "stretch",
  formats: [], headers: {}, focalPoint: [0.5, 0.5],
});"#,
        "error TS2322: Type '\"stretch\"' is not assignable to type 'Fit'.",
    ),
    (
        "payload-of-another-task",
        r#"await tasks.trigger<typeof generateText>("generate-text", { prompt: "hello" });"#,
        "error TS2345: Argument of type '{ prompt: string; }' is not assignable to parameter of \
         type 'string'.",
    ),
    (
        "wrong-task-id",
        r#"await tasks.trigger<typeof generateText>("generate-texts", "hello");"#,
        "error TS2345: Argument of type '\"generate-texts\"' is not assignable to parameter of \
         type '\"generate-text\"'.",
    ),
    (
        "output-field-that-does-not-exist",
        r#"for await (const run of runs.subscribeToRun<typeof resizeImage>("run_1")) {
  console.log(run.output?.colour);
}"#,
        "error TS2339: Property 'colour' does not exist on type 'Resized'.",
    ),
    (
        "metadata-field-of-another-type",
        r#"for await (const run of runs.subscribeToRun<typeof resizeImage>("run_1")) {
  const progress = run.metadata as ResizeImageMetadata | undefined;
  console.log(progress?.percent.toUpperCase());
}"#,
        "error TS2339: Property 'toUpperCase' does not exist on type 'number'.",
    ),
    (
        "stream-chunk-of-another-type",
        r#"const parts = runs.subscribeToRun<typeof generateText>("run_1").withStreams<GenerateTextStreams>();
for await (const part of parts) {
  if (part.type === "tokens") console.log(part.chunk.promptTokens);
}"#,
        "error TS2339: Property 'promptTokens' does not exist on type 'string'.",
    ),
    (
        "stream-that-does-not-exist",
        r#"const parts = runs.subscribeToRun<typeof generateText>("run_1").withStreams<GenerateTextStreams>();
for await (const part of parts) {
  if (part.type === "logs") console.log(part);
}"#,
        "error TS2367: This comparison appears to be unintentional because the types '\"run\" | \
         \"tokens\" | \"usage\"' and '\"logs\"' have no overlap.",
    ),
];

#[test]
fn a_frontend_that_uses_the_declarations_right_compiles() {
    let dir = Project::new("correct");
    let tasks = declarations();
    dir.write("tasks.d.ts", &tasks);
    // `skipLibCheck` (which the SDK's own declarations need) skips every `.d.ts`: the same
    // text as a source file is checked in full, so a name it refers to but does not declare
    // fails here instead of being `any`.
    dir.write("tasks-checked.ts", &tasks);
    dir.write("use.ts", &format!("{IMPORTS}{CORRECT_USE}"));
    let output = dir.tsc(&["use.ts", "tasks-checked.ts"]);
    assert!(
        output.status.success(),
        "tsc failed on the correct use, in {}:\n{}{}\n{tasks}",
        dir.path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    dir.remove();
}

#[test]
fn each_misuse_fails_to_compile_with_its_error() {
    let dir = Project::new("misuse");
    dir.write("tasks.d.ts", &declarations());
    let files: Vec<String> = MISUSES
        .iter()
        .map(|(name, body, _)| {
            let file = format!("{name}.ts");
            let body = body.replace('\n', "\n  ");
            let source = format!(
                "{IMPORTS}\nexport async function misuse(): Promise<void> {{\n  {body}\n}}\n"
            );
            dir.write(&file, &source);
            file
        })
        .collect();
    let output = dir.tsc(&files.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "tsc accepted every misuse:\n{stdout}"
    );
    // Each diagnostic starts a line with its file; its next lines (indented) go with it.
    let mut diagnostics: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut last: Option<&str> = None;
    for line in stdout.lines() {
        if let Some(file) = files.iter().find(|f| line.starts_with(&format!("{f}("))) {
            diagnostics.entry(file).or_default().push(line.to_owned());
            last = Some(file);
        } else if let (Some(file), true) = (last, line.starts_with(' ')) {
            let lines = diagnostics.get_mut(file).unwrap();
            let message = lines.last_mut().unwrap();
            message.push('\n');
            message.push_str(line);
        } else {
            panic!("a diagnostic outside the misuse files: {line}\n{stdout}");
        }
    }
    for ((_, _, expected), file) in MISUSES.iter().zip(&files) {
        let found = diagnostics.get(file.as_str()).cloned().unwrap_or_default();
        assert!(
            found.len() == 1 && found[0].contains(expected),
            "{file}: expected one error, `{expected}`; tsc said:\n{}",
            found.join("\n")
        );
    }
    dir.remove();
}

/// A folder with a TypeScript project in it: its `node_modules` is `conformance/`'s.
struct Project {
    path: PathBuf,
}

impl Project {
    fn new(name: &str) -> Self {
        install();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("typescript-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        link_dir(
            &conformance().join("node_modules"),
            &path.join("node_modules"),
        );
        Self { path }
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path.join(file), text).unwrap();
    }

    /// Runs `tsc` on `files`, strict, as a frontend built by a bundler would.
    fn tsc(&self, files: &[&str]) -> Output {
        let config = serde_json::json!({
            "compilerOptions": {
                "strict": true,
                "noEmit": true,
                "target": "es2022",
                "module": "esnext",
                "moduleResolution": "bundler",
                "lib": ["es2022", "dom"],
                "types": [],
                "skipLibCheck": true,
            },
            "files": files,
        });
        self.write("tsconfig.json", &config.to_string());
        let tsc = conformance().join("node_modules/typescript/bin/tsc");
        Command::new("node")
            .arg(tsc)
            .args(["--project", "tsconfig.json", "--pretty", "false"])
            .current_dir(&self.path)
            .output()
            .unwrap_or_else(|e| panic!("node could not start ({e}): install Node.js 20+"))
    }

    /// Removes the folder (left behind by a failed test, to look into).
    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance")
}

/// Installs `conformance/`'s pinned packages unless TypeScript is there (one test at a time).
fn install() {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = conformance();
    if dir.join("node_modules/typescript/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|e| panic!("`npm ci` could not start ({e}): install Node.js 20+ and npm"));
    assert!(status.success(), "`npm ci` in {} failed", dir.display());
}

#[cfg(unix)]
fn link_dir(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target.canonicalize().unwrap(), link).unwrap();
}

#[cfg(windows)]
fn link_dir(target: &Path, link: &Path) {
    std::os::windows::fs::symlink_dir(target.canonicalize().unwrap(), link).unwrap();
}
