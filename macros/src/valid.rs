//! The rules `#[task]` and `realtime_union!` check before expanding.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, ItemStruct, LitStr, ReturnType, Type};

use crate::ast::{TaskItem, UnionInput};
use crate::attr::TaskArgs;

/// The longest task identifier accepted, as Trigger.dev's.
const MAX_ID_LEN: usize = 128;

/// Errors gathered so that one compile reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_result(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A `#[task]` whose rules hold: what expansion needs.
pub(crate) struct TaskSpec {
    pub(crate) id: LitStr,
    pub(crate) kind: TaskKind,
}

pub(crate) enum TaskKind {
    Fn {
        item: ItemFn,
        struct_ident: Ident,
        payload: Type,
        ret: Type,
        context: Option<Type>,
    },
    Struct {
        item: ItemStruct,
        payload: Type,
        output: Type,
    },
}

pub(crate) fn task(args: TaskArgs, item: TaskItem) -> Result<TaskSpec, (syn::Error, TaskItem)> {
    let mut errors = Errors::default();
    let ident = match &item {
        TaskItem::Fn(f) => &f.sig.ident,
        TaskItem::Struct(s) => &s.ident,
    };
    let id = match args.id {
        Some(id) => {
            check_id(&id, &mut errors);
            Some(id)
        }
        None => {
            errors.at(
                ident.span(),
                format_args!("`#[task]` on `{ident}` needs an identifier: `#[task(id = \"...\")]`"),
            );
            None
        }
    };
    let kind = match &item {
        TaskItem::Fn(f) => {
            for (key, _) in [&args.payload, &args.output].into_iter().flatten() {
                errors.at(
                    key.span(),
                    format_args!(
                        "`{key}` is only for `#[task]` on a struct; on an async fn the payload type is its first parameter's and the output type is the `Ok` type of its `Result`"
                    ),
                );
            }
            task_fn(f, &mut errors)
        }
        TaskItem::Struct(s) => task_struct(s, args.payload, args.output, &mut errors),
    };
    match (errors.into_result(), id, kind) {
        (Ok(()), Some(id), Some(kind)) => Ok(TaskSpec { id, kind }),
        (result, ..) => Err((
            result
                .err()
                .unwrap_or_else(|| syn::Error::new(ident.span(), "invalid `#[task]`")),
            item,
        )),
    }
}

fn check_id(id: &LitStr, errors: &mut Errors) {
    let value = id.value();
    if value.is_empty() {
        errors.at(id.span(), "task `id` must not be empty");
    } else if value.len() > MAX_ID_LEN {
        errors.at(
            id.span(),
            format_args!(
                "task `id` is {} characters long; the limit is {MAX_ID_LEN}",
                value.len()
            ),
        );
    } else if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        errors.at(
            id.span(),
            format_args!(
                "task `id` contains {bad:?}; use only ASCII letters, digits, `-`, `_`, `.` and `/`, so the id is safe in URLs, tags and file names"
            ),
        );
    }
}

const FN_SHAPE: &str = "expected `async fn name(payload: Payload, ctx: TaskContext) -> Result<Output, Error>` (the `ctx` parameter is optional)";

fn task_fn(f: &ItemFn, errors: &mut Errors) -> Option<TaskKind> {
    let sig = &f.sig;
    let before = errors.0.is_some();
    match &sig.asyncness {
        None => errors.at(
            sig.fn_token.span,
            format_args!("a task function must be `async`: the engine awaits it on its worker pool; {FN_SHAPE}"),
        ),
        Some(_) => {}
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness.span, "a task function cannot be `const`");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi.span(), "a task function cannot have an `extern` ABI");
    }
    if let syn::Safety::Unsafe(_) = sig.safety {
        errors.at(
            sig.safety.span(),
            "a task function cannot be `unsafe`: the engine calls it with any payload",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.at(
            sig.generics.span(),
            "a task function cannot be generic: a task has exactly one payload type and one output type",
        );
    }
    let mut params = sig.inputs.iter();
    let payload = match params.next() {
        None => {
            errors.at(
                sig.paren_token.span.join(),
                format_args!(
                    "a task function takes its payload as its first parameter; {FN_SHAPE}"
                ),
            );
            None
        }
        Some(FnArg::Receiver(receiver)) => {
            errors.at(
                receiver.span(),
                format_args!("a task function cannot take `self`; {FN_SHAPE}"),
            );
            None
        }
        Some(FnArg::Typed(arg)) => param_type(&arg.ty, "payload", errors),
    };
    let context = match params.next() {
        None => None,
        Some(FnArg::Receiver(receiver)) => {
            errors.at(
                receiver.span(),
                format_args!("a task function cannot take `self`; {FN_SHAPE}"),
            );
            None
        }
        Some(FnArg::Typed(arg)) => param_type(&arg.ty, "context", errors),
    };
    if let Some(extra) = params.next() {
        errors.at(
            extra.span(),
            format_args!("a task function takes at most two parameters, the payload and the context; {FN_SHAPE}"),
        );
    }
    let ret = match &sig.output {
        ReturnType::Default => {
            errors.at(
                sig.paren_token.span.close(),
                format_args!("a task function must return `Result<Output, Error>`: the output is what subscribers receive; {FN_SHAPE}"),
            );
            None
        }
        ReturnType::Type(_, ty) => param_type(ty, "return", errors),
    };
    if errors.0.is_some() && !before {
        return None;
    }
    Some(TaskKind::Fn {
        item: f.clone(),
        struct_ident: struct_name(&sig.ident),
        payload: payload?,
        ret: ret?,
        context,
    })
}

/// Rejects `impl Trait` types, which the generated `Task` impl could not name.
fn param_type(ty: &Type, what: &str, errors: &mut Errors) -> Option<Type> {
    if let Type::ImplTrait(_) = ty {
        errors.at(
            ty.span(),
            format_args!(
                "the {what} type of a task function must be a named type, not `impl Trait`"
            ),
        );
        return None;
    }
    Some(ty.clone())
}

fn task_struct(
    s: &ItemStruct,
    payload: Option<(Ident, Type)>,
    output: Option<(Ident, Type)>,
    errors: &mut Errors,
) -> Option<TaskKind> {
    let before = errors.0.is_some();
    if !s.generics.params.is_empty() || s.generics.where_clause.is_some() {
        errors.at(
            s.generics.span(),
            "a task struct cannot be generic: a task has exactly one identifier, payload type and output type",
        );
    }
    if !matches!(s.fields, syn::Fields::Unit) {
        errors.at(
            s.fields.span(),
            "a task struct must be a unit struct (`struct Name;`): it only names the task; its payload and output are the `payload = ...` and `output = ...` types",
        );
    }
    for (key, value) in [("payload", &payload), ("output", &output)] {
        if value.is_none() {
            errors.at(
                s.ident.span(),
                format_args!(
                    "`#[task]` on struct `{}` needs `{key} = Type`: a task run elsewhere has no function to take its types from",
                    s.ident
                ),
            );
        }
    }
    if errors.0.is_some() && !before {
        return None;
    }
    Some(TaskKind::Struct {
        item: s.clone(),
        payload: payload?.1,
        output: output?.1,
    })
}

/// `resize_image` → `ResizeImage`, spanned at the function's name.
pub(crate) fn struct_name(fn_ident: &Ident) -> Ident {
    let name = fn_ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("Task");
    }
    Ident::new(&out, fn_ident.span())
}

/// Checks a union, reporting every bad member; returns the indices of the members to expand
/// (each task type and variant name once).
pub(crate) fn union(input: &UnionInput) -> (Vec<usize>, Option<syn::Error>) {
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.at(
            input.generics.span(),
            "a realtime_union! enum cannot be generic: its variants are fixed tasks",
        );
    }
    if input.members.is_empty() {
        errors.at(
            input.ident.span(),
            format_args!(
                "realtime_union! `{}` lists no task; list at least one, as in `enum {} {{ MyTask }}`",
                input.ident, input.ident
            ),
        );
    }
    let mut types: HashMap<String, &Type> = HashMap::new();
    let mut variants: HashMap<String, &Ident> = HashMap::new();
    let mut keep = Vec::new();
    for (i, member) in input.members.iter().enumerate() {
        let ty = member.ty.to_token_stream().to_string();
        if types.contains_key(&ty) {
            errors.at(
                member.ty.span(),
                format_args!(
                    "task `{}` is listed twice in realtime_union! `{}`; each task gets one variant",
                    ty.replace(' ', ""),
                    input.ident
                ),
            );
            continue;
        }
        let variant = member.variant.to_string();
        if variants.contains_key(&variant) {
            errors.at(
                member.variant.span(),
                format_args!(
                    "two variants of `{}` are named `{variant}`; name this one explicitly, as in `Other{variant}({})`",
                    input.ident,
                    ty.replace(' ', "")
                ),
            );
            continue;
        }
        types.insert(ty, &member.ty);
        variants.insert(variant, &member.variant);
        keep.push(i);
    }
    if let Some(other) = &input.catch_all {
        if variants.contains_key(&other.variant.to_string()) {
            errors.at(
                other.variant.span(),
                format_args!(
                    "the catch-all variant `{}` has the name of a task variant",
                    other.variant
                ),
            );
        }
    }
    (keep, errors.0)
}
