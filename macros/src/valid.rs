//! The rules `#[task]` and `realtime_union!` check before expanding.
//!
//! Each check reports its errors and keeps what is still usable, so that expansion can declare
//! the task (or the union) anyway and the program's uses of it add no errors of their own.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemEnum, ItemFn, ItemStruct, Lifetime, LitStr, PathArguments,
    ReturnType, Type, TypeParamBound,
};

use crate::ast::UnionInput;
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

    /// An error underlining all of `tokens`, not only their first token.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn into_inner(self) -> Option<syn::Error> {
        self.0
    }
}

/// A `#[task]` function, as far as its rules hold: a type that is unknown or breaks a rule is
/// `None` (the errors say why).
pub(crate) struct FnSpec {
    pub(crate) id: Option<LitStr>,
    /// `resize_image` → `ResizeImage`.
    pub(crate) struct_ident: Ident,
    pub(crate) payload: Option<Type>,
    /// The return type, `Result<Output, Error>` if the rules hold.
    pub(crate) ret: Option<Type>,
    /// The type of the second parameter, if any: `TaskContext<Self>` unless the program is
    /// wrong, which the trait check in the expansion reports.
    pub(crate) context: Option<Type>,
    pub(crate) extras: Extras,
    /// Whether `struct_ident` names the payload or output type already (reported): the task's
    /// impls then go on that type, and no struct is declared.
    pub(crate) struct_exists: bool,
}

/// A `#[task]` struct, as far as its rules hold.
pub(crate) struct StructSpec {
    pub(crate) id: Option<LitStr>,
    pub(crate) payload: Option<Type>,
    pub(crate) output: Option<Type>,
    pub(crate) extras: Extras,
}

/// What a task declares besides its payload and output.
pub(crate) struct Extras {
    /// `metadata = M`, if given and usable.
    pub(crate) metadata: Option<Type>,
    /// `streams(...)`, in declaration order.
    pub(crate) streams: Vec<StreamSpec>,
}

/// One declared stream.
pub(crate) struct StreamSpec {
    /// The key as written: `tokens`.
    pub(crate) key: String,
    /// Its constant on the task type: `TOKENS`.
    pub(crate) konst: Ident,
    /// Its variant in the task's chunk enum: `Tokens`.
    pub(crate) variant: Ident,
    /// The chunk type, if usable.
    pub(crate) ty: Option<Type>,
}

/// The metadata type and the streams, checked: each stream's constant and variant must be
/// distinct, no constant may be `ID`, and the types must be owned.
fn extras(
    metadata: Option<(Ident, Type)>,
    streams: Option<Vec<(Ident, Option<Type>)>>,
    errors: &mut Errors,
) -> Extras {
    let mut specs: Vec<StreamSpec> = Vec::new();
    for (name, ty) in streams.unwrap_or_default() {
        let key = name.unraw().to_string();
        let konst = Ident::new(&key.to_uppercase(), name.span());
        let variant = struct_name(&name);
        if key.trim_matches('_').is_empty() || variant == "Self" {
            errors.at(
                name.span(),
                format!(
                    "stream `{key}` cannot name a variant of the chunk enum; give it a name with a letter, other than `self`"
                ),
            );
            continue;
        }
        if konst == "ID" {
            errors.at(
                name.span(),
                "a stream cannot be named `id`: its constant would be the task's `ID`",
            );
            continue;
        }
        if let Some(other) = specs
            .iter()
            .find(|other| other.konst == konst || other.variant == variant)
        {
            errors.at(
                name.span(),
                format!(
                    "streams `{}` and `{key}` would have the same constant or variant name (`{konst}`, `{variant}`); rename one",
                    other.key
                ),
            );
            continue;
        }
        let ty = ty.and_then(|ty| owned(ty, Role::Chunk, errors));
        specs.push(StreamSpec {
            key,
            konst,
            variant,
            ty,
        });
    }
    Extras {
        metadata: metadata.and_then(|(_, ty)| owned(ty, Role::Metadata, errors)),
        streams: specs,
    }
}

pub(crate) fn task_fn(args: TaskArgs, f: &ItemFn, errors: &mut Errors) -> FnSpec {
    let ident = &f.sig.ident;
    let id = match args.id {
        Some(id) => check_id(id, errors),
        None if args.id_key.is_none() && args.complete => {
            errors.at(
                ident.span(),
                format_args!(
                    "`#[task]` on `{ident}` needs an identifier, the name its runs are matched by: `#[task(id = \"{}\")]`",
                    kebab_case(ident)
                ),
            );
            None
        }
        None => None,
    };
    if let Some((key, _)) = &args.payload {
        errors.at(
            key.span(),
            "`payload` is only for `#[task]` on a struct; a task function's payload type is the type of its first parameter",
        );
    }
    if let Some((key, _)) = &args.output {
        errors.at(
            key.span(),
            "`output` is only for `#[task]` on a struct; a task function's output type is the `Ok` type of the `Result` it returns",
        );
    }
    let (payload, ret, context) = fn_types(f, errors);
    let struct_ident = struct_name(ident);
    // `send_email(email: SendEmail)` would declare `SendEmail` a second time.
    let clash = [
        (payload.as_ref(), "payload"),
        (ret.as_ref().and_then(ok_type), "output"),
    ]
    .into_iter()
    .find_map(|(ty, what)| {
        ty.filter(|ty| is_named(ty, &struct_ident))
            .map(|ty| (ty, what))
    });
    let struct_exists = clash.is_some();
    if let Some((ty, what)) = clash {
        errors.spanned(
            ty,
            format_args!(
                "`#[task]` on `{ident}` declares the struct `{struct_ident}` for the task, and its {what} type has that name already: rename the {what} type, as in `{struct_ident}{}`",
                if what == "payload" { "Request" } else { "Result" }
            ),
        );
    }
    let extras = extras(args.metadata, args.streams, errors);
    FnSpec {
        id,
        struct_ident,
        payload,
        ret,
        context,
        extras,
        struct_exists,
    }
}

/// Whether `ty` is the plain path `ident`.
fn is_named(ty: &Type, ident: &Ident) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident(ident))
}

/// Whether a parameter's type is `TaskContext` (behind references, with or without its task):
/// what `#[task]` writes the task into. By name, as the user writes it: an alias is checked by
/// its trait bound instead.
pub(crate) fn is_task_context(ty: &Type) -> bool {
    let mut ty = ty;
    while let Type::Reference(reference) = ty {
        ty = &reference.elem;
    }
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == "TaskContext"))
}

pub(crate) fn task_struct(args: TaskArgs, s: &ItemStruct, errors: &mut Errors) -> StructSpec {
    let ident = &s.ident;
    if !s.generics.params.is_empty() || s.generics.where_clause.is_some() {
        errors.spanned(
            &s.generics,
            "a task struct cannot be generic: a task has exactly one identifier, payload type and output type",
        );
    }
    if !matches!(s.fields, syn::Fields::Unit) {
        errors.at(
            s.fields.span(),
            "a task struct must be a unit struct (`struct Name;`): it only names the task; its payload and output are the `payload = ...` and `output = ...` types",
        );
    }
    // Everything missing is one mistake (as `#[task]` alone), so one error lists it all.
    let mut missing = Vec::new();
    if args.id_key.is_none() {
        missing.push(format!("`id = \"{}\"`", kebab_case(ident)));
    }
    if args.payload.is_none() {
        missing.push("`payload = Type`".to_owned());
    }
    if args.output.is_none() {
        missing.push("`output = Type`".to_owned());
    }
    if args.complete && !missing.is_empty() {
        let why = if args.payload.is_none() || args.output.is_none() {
            "a task run elsewhere has no function to take its types from"
        } else {
            "its runs are matched to it by this name"
        };
        errors.at(
            ident.span(),
            format_args!(
                "`#[task]` on struct `{ident}` needs {}: {why}",
                english_list(&missing)
            ),
        );
    }
    declared(args, errors)
}

/// The id, types and extras a task struct (or enum) declares, each if its rules hold.
fn declared(args: TaskArgs, errors: &mut Errors) -> StructSpec {
    let id = args.id.and_then(|id| check_id(id, errors));
    let payload = args
        .payload
        .and_then(|(_, ty)| owned(ty, Role::Payload, errors));
    let output = args
        .output
        .and_then(|(_, ty)| owned(ty, Role::Output, errors));
    StructSpec {
        id,
        payload,
        output,
        extras: extras(args.metadata, args.streams, errors),
    }
}

/// `#[task]` on an enum, which it does not apply to: still a task, with the types given.
pub(crate) fn task_enum(args: TaskArgs, e: &ItemEnum, errors: &mut Errors) -> StructSpec {
    errors.at(
        e.enum_token.span,
        format_args!(
            "`#[task]` applies to an `async fn` (a task run here) or a unit struct (a task run elsewhere), not to an enum; an enum can be a task's payload or output, as in `payload = {}`",
            e.ident
        ),
    );
    declared(args, errors)
}

/// The `id` argument, if its rules hold.
fn check_id(id: LitStr, errors: &mut Errors) -> Option<LitStr> {
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
    } else {
        return Some(id);
    }
    None
}

const RECEIVER: &str = "a task function cannot take `self`: put `#[task]` on a free `async fn`, outside any `impl` block";

const FN_SHAPE: &str = "expected `async fn name(payload: Payload, ctx: TaskContext) -> Result<Output, Error>` (the `ctx` parameter is optional)";

/// The payload, return and context types of a task function, each if its rules hold.
fn fn_types(f: &ItemFn, errors: &mut Errors) -> (Option<Type>, Option<Type>, Option<Type>) {
    let sig = &f.sig;
    let ident = &sig.ident;
    // `fn f() -> impl Future<Output = T>` is `async fn f() -> T` written by hand: one mistake.
    let future_output = match &sig.output {
        ReturnType::Type(_, ty) => future_output(ty),
        ReturnType::Default => None,
    };
    if sig.asyncness.is_none() {
        match future_output {
            Some(output) => errors.at(
                sig.fn_token.span,
                format_args!(
                    "a task function must be an `async fn`, not a `fn` returning `impl Future`: write `async fn {ident}(...) -> {}`",
                    type_name(output)
                ),
            ),
            None => errors.at(
                sig.fn_token.span,
                format_args!(
                    "a task function must be `async`, as in `async fn {ident}`: the engine awaits it on its worker pool"
                ),
            ),
        }
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
    // A generic function's types may name its parameters, unknown outside it.
    let generic = !sig.generics.params.is_empty() || sig.generics.where_clause.is_some();
    if generic {
        errors.spanned(
            &sig.generics,
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
            errors.spanned(receiver, RECEIVER);
            None
        }
        Some(FnArg::Typed(arg)) if is_task_context(&arg.ty) => {
            let pat = arg.pat.to_token_stream();
            let message = match sig.inputs.iter().nth(1) {
                Some(payload) => format!(
                    "a task function takes its payload first and its context second: `async fn {ident}({}, {}: TaskContext)`",
                    type_name(payload),
                    type_name(&pat)
                ),
                None => format!(
                    "a task function takes its payload first, then its context: `async fn {ident}(payload: Payload, {}: TaskContext)`",
                    type_name(&pat)
                ),
            };
            errors.spanned(arg, message);
            None
        }
        Some(FnArg::Typed(arg)) => named_type(&arg.ty, "payload", errors)
            .filter(|_| !generic)
            .and_then(|ty| owned(ty.clone(), Role::Payload, errors)),
    };
    let context = match params.next() {
        None => None,
        Some(FnArg::Receiver(receiver)) => {
            errors.spanned(receiver, RECEIVER);
            None
        }
        Some(FnArg::Typed(arg)) => named_type(&arg.ty, "context", errors).cloned(),
    };
    if let Some(extra) = params.next() {
        errors.spanned(
            extra,
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
        // Reported with the missing `async`.
        ReturnType::Type(..) if future_output.is_some() && sig.asyncness.is_none() => None,
        ReturnType::Type(_, ty) => named_type(ty, "return", errors)
            .filter(|_| !generic)
            .filter(|ty| match ok_type(ty) {
                Some(ok) => owned(ok.clone(), Role::Output, errors).is_some(),
                None => true,
            })
            .cloned(),
    };
    (payload, ret, context)
}

/// `T` of `impl Future<Output = T>`.
fn future_output(ty: &Type) -> Option<&Type> {
    let Type::ImplTrait(ty) = ty else {
        return None;
    };
    ty.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The `Ok` type of a return type written `Result<T, E>` or as an alias such as
/// `io::Result<T>`: its first type argument.
fn ok_type(ret: &Type) -> Option<&Type> {
    let Type::Path(path) = ret else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// Rejects `impl Trait` types, which the generated `Task` impl could not name.
fn named_type<'a>(ty: &'a Type, what: &str, errors: &mut Errors) -> Option<&'a Type> {
    if let Type::ImplTrait(_) = ty {
        errors.spanned(
            ty,
            format_args!(
                "the {what} type of a task function must be a named type, not `impl Trait`"
            ),
        );
        return None;
    }
    Some(ty)
}

/// What a type is to a task, for the message about a borrowed one.
#[derive(Clone, Copy)]
enum Role {
    Payload,
    Output,
    Metadata,
    Chunk,
}

impl Role {
    /// "a task's payload is stored ..., so it must be an owned type".
    fn rule(self) -> &'static str {
        match self {
            Role::Payload => {
                "a task's payload is stored and sent between processes, so it must be an owned type"
            }
            Role::Output => {
                "a task's output is stored and sent between processes, so it must be an owned type"
            }
            Role::Metadata => {
                "a task's metadata is stored and sent between processes, so it must be an owned type"
            }
            Role::Chunk => {
                "a stream's chunks are stored and sent between processes, so their type must be an owned type"
            }
        }
    }
}

/// `ty` if it owns its data; an error at its first reference or lifetime if not, with the
/// owned type to use when there is one (`String` for `&str`).
fn owned(ty: Type, role: Role, errors: &mut Errors) -> Option<Type> {
    let Some(borrow) = first_borrow(&ty) else {
        return Some(ty);
    };
    match borrow {
        Borrow::Reference(reference) => {
            let owned = owned_type(&ty);
            errors.spanned(
                reference,
                format_args!(
                    "{}: use `{}` instead of `{}`",
                    role.rule(),
                    type_name(&owned),
                    type_name(&ty)
                ),
            );
        }
        Borrow::Lifetime(lifetime) => errors.spanned(
            lifetime,
            format_args!(
                "{}, without the lifetime `{lifetime}`: one that does not borrow",
                role.rule()
            ),
        ),
    }
    None
}

/// Where a type borrows.
enum Borrow<'a> {
    /// `&T`.
    Reference(&'a syn::TypeReference),
    /// A lifetime other than `'static` (`Cow<'a, str>`).
    Lifetime(&'a Lifetime),
}

/// The first reference, or lifetime other than `'static`, in `ty`.
fn first_borrow(ty: &Type) -> Option<Borrow<'_>> {
    match ty {
        Type::Reference(reference) => Some(Borrow::Reference(reference)),
        Type::Array(array) => first_borrow(&array.elem),
        Type::Slice(slice) => first_borrow(&slice.elem),
        Type::Paren(paren) => first_borrow(&paren.elem),
        Type::Group(group) => first_borrow(&group.elem),
        Type::Ptr(ptr) => first_borrow(&ptr.elem),
        Type::Tuple(tuple) => tuple.elems.iter().find_map(first_borrow),
        Type::Path(path) => {
            let qself = path.qself.as_ref().and_then(|q| first_borrow(&q.ty));
            qself.or_else(|| {
                path.path.segments.iter().find_map(|segment| {
                    let PathArguments::AngleBracketed(args) = &segment.arguments else {
                        return None;
                    };
                    args.args.iter().find_map(|arg| match arg {
                        GenericArgument::Type(ty) => first_borrow(ty),
                        GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                            Some(Borrow::Lifetime(lifetime))
                        }
                        _ => None,
                    })
                })
            })
        }
        _ => None,
    }
}

/// `ty` with each reference replaced by an owned type: `&str` → `String`, `&[T]` → `Vec<T>`,
/// `&T` → `T`.
fn owned_type(ty: &Type) -> Type {
    let mut ty = ty.clone();
    make_owned(&mut ty);
    ty
}

fn make_owned(ty: &mut Type) {
    match ty {
        Type::Reference(reference) => {
            let mut elem = (*reference.elem).clone();
            make_owned(&mut elem);
            *ty = match elem {
                Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
                    syn::parse_quote!(String)
                }
                Type::Slice(slice) => {
                    let elem = slice.elem;
                    syn::parse_quote!(Vec<#elem>)
                }
                other => other,
            };
        }
        Type::Array(array) => make_owned(&mut array.elem),
        Type::Ptr(pointer) => make_owned(&mut pointer.elem),
        Type::Slice(slice) => make_owned(&mut slice.elem),
        Type::Paren(paren) => make_owned(&mut paren.elem),
        Type::Group(group) => make_owned(&mut group.elem),
        Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(make_owned),
        Type::Path(path) => {
            for segment in &mut path.path.segments {
                if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
                    for arg in &mut args.args {
                        if let GenericArgument::Type(ty) = arg {
                            make_owned(ty);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `resize_image` → `ResizeImage`, spanned at the function's name.
pub(crate) fn struct_name(fn_ident: &Ident) -> Ident {
    let name = fn_ident.unraw().to_string();
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

/// `resize_image` or `ResizeImage` → `resize-image`: an identifier to suggest.
fn kebab_case(ident: &Ident) -> String {
    let name = ident.unraw().to_string();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c == '_' {
            out.push('-');
        } else if c.is_uppercase() {
            if i > 0 && !out.ends_with('-') {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A type as the user wrote it, for messages: `billing::Charge`, `&str`.
pub(crate) fn type_name(ty: &impl ToTokens) -> String {
    // `& str`, `Vec < u8 >`, `& 'static str`, `std :: io`, `n : u32` → `&str`, `Vec<u8>`,
    // `&'static str`, `std::io`, `n: u32`.
    let text = ty.to_token_stream().to_string().replace(" :: ", "::");
    let text = if let Some(rest) = text.strip_prefix(":: ") {
        format!("::{rest}")
    } else {
        text
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let joins = matches!(prev, Some('&' | '<' | '(' | '[' | '\''))
                || matches!(next, Some('<' | '>' | ',' | ')' | ']' | ';'))
                || (next == Some(':') && !out.ends_with(':'))
                || (prev.is_some_and(|p| p.is_alphanumeric() || p == '_') && next == Some('('));
            if !joins {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What to expand of a union.
pub(crate) struct UnionPlan {
    /// The members that get a variant, in order, each with whether it is a type to check as
    /// a task (`false`: rejected here, its variant holds an error type, so that the
    /// program's uses of the variant add no errors of their own).
    pub(crate) members: Vec<(usize, bool)>,
    /// Index of the catch-all to expand.
    pub(crate) catch_all: Option<usize>,
}

/// Checks a union, reporting every bad entry.
pub(crate) fn union(input: &UnionInput) -> (UnionPlan, Option<syn::Error>) {
    let mut errors = Errors::default();
    if let Some(token) = &input.struct_token {
        errors.spanned(
            token,
            format_args!(
                "realtime_union! declares an enum, one variant per task: write `enum {}`",
                input.ident
            ),
        );
    }
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.spanned(
            &input.generics,
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
        let ty = type_name(&member.ty);
        let variant = member.variant.to_string();
        let mut checked = true;
        if let Some(function) = function_name(&member.ty) {
            errors.spanned(
                &member.ty,
                format_args!(
                    "realtime_union! lists task types, and `{function}` is not one: list `{}`, the struct that `#[task]` declares for `async fn {function}`",
                    type_name(&with_last_segment(&member.ty, &struct_name(function)))
                ),
            );
            checked = false;
        } else if types.contains_key(&ty) {
            errors.spanned(
                &member.ty,
                format_args!(
                    "task `{ty}` is listed twice in realtime_union! `{}`; each task gets one variant",
                    input.ident
                ),
            );
            checked = false;
        } else {
            types.insert(ty.clone(), &member.ty);
        }
        if variants.contains_key(&variant) {
            if checked {
                errors.at(
                    member.variant.span(),
                    format_args!(
                        "two variants of `{}` are named `{variant}`; name this one explicitly, as in `Other{variant}({ty})`",
                        input.ident,
                    ),
                );
            }
            continue;
        }
        variants.insert(variant, &member.variant);
        keep.push((i, checked));
    }
    let mut catch_all = None;
    for (i, other) in input.catch_alls.iter().enumerate() {
        if i > 0 {
            errors.spanned(
                other,
                "realtime_union! takes at most one catch-all `_ => Variant`",
            );
        } else if other.position < input.members.len() {
            errors.spanned(
                other,
                "the catch-all `_ => Variant` must come last in realtime_union!, as in a `match`",
            );
        }
        if variants.contains_key(&other.variant.to_string()) {
            errors.at(
                other.variant.span(),
                format_args!(
                    "the catch-all variant `{}` has the name of a task variant; name it differently, as in `_ => Other`",
                    other.variant
                ),
            );
        } else if catch_all.is_none() {
            catch_all = Some(i);
        }
    }
    let plan = UnionPlan {
        members: keep,
        catch_all,
    };
    (plan, errors.into_inner())
}

/// The name, if a union member is named like a function (`resize_image`) rather than a
/// type: a task function's name written in place of its struct's.
fn function_name(ty: &Type) -> Option<&Ident> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let name = last.ident.unraw().to_string();
    let primitive = matches!(
        name.as_str(),
        "bool"
            | "char"
            | "str"
            | "u8"
            | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "f32"
            | "f64"
    );
    let lower = name.starts_with(|c: char| c.is_lowercase());
    (path.qself.is_none() && last.arguments.is_none() && lower && !primitive).then_some(&last.ident)
}

/// `ty` (a path) with its last segment renamed.
fn with_last_segment(ty: &Type, ident: &Ident) -> TokenStream {
    match ty {
        Type::Path(path) => {
            let mut path = path.clone();
            if let Some(last) = path.path.segments.last_mut() {
                last.ident = ident.clone();
            }
            path.into_token_stream()
        }
        other => quote!(#other),
    }
}
