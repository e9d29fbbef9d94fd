//! The rules `#[task]` and `realtime_union!` check before expanding.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, ItemStruct, LitStr, ReturnType, Type};

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

    pub(crate) fn into_result(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A `#[task]` function whose rules hold: what expansion needs besides the function.
pub(crate) struct FnSpec {
    pub(crate) id: LitStr,
    /// `resize_image` → `ResizeImage`.
    pub(crate) struct_ident: Ident,
    /// The types of the signature, as their tokens (the function keeps its syntax tree).
    pub(crate) payload: TokenStream,
    pub(crate) ret: TokenStream,
    pub(crate) context: Option<TokenStream>,
    pub(crate) extras: Extras,
}

/// A `#[task]` struct whose rules hold: what expansion needs besides the struct.
pub(crate) struct StructSpec {
    pub(crate) id: LitStr,
    pub(crate) payload: Type,
    pub(crate) output: Type,
    pub(crate) extras: Extras,
}

/// What a task declares besides its payload and output.
pub(crate) struct Extras {
    /// `metadata = M`.
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
    pub(crate) ty: Type,
}

/// The metadata type and the streams, checked: each stream's constant and variant must be
/// distinct, and no constant may be `ID`.
fn extras(
    metadata: Option<(Ident, Type)>,
    streams: Option<Vec<(Ident, Type)>>,
    errors: &mut Errors,
) -> Extras {
    let mut specs: Vec<StreamSpec> = Vec::new();
    for (name, ty) in streams.unwrap_or_default() {
        let key = name.to_string();
        let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
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
        specs.push(StreamSpec {
            key,
            konst,
            variant,
            ty,
        });
    }
    Extras {
        metadata: metadata.map(|(_, ty)| ty),
        streams: specs,
    }
}

pub(crate) fn task_fn(args: TaskArgs, f: &ItemFn) -> syn::Result<FnSpec> {
    let mut errors = Errors::default();
    let id = id(args.id, &f.sig.ident, &mut errors);
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
    let types = fn_types(f, &mut errors);
    let extras = extras(args.metadata, args.streams, &mut errors);
    errors.into_result()?;
    match (id, types) {
        (Some(id), Some((payload, ret, context))) => Ok(FnSpec {
            id,
            struct_ident: struct_name(&f.sig.ident),
            payload,
            ret,
            context,
            extras,
        }),
        _ => Err(syn::Error::new(f.sig.ident.span(), "invalid `#[task]`")),
    }
}

pub(crate) fn task_struct(args: TaskArgs, s: &ItemStruct) -> syn::Result<StructSpec> {
    let mut errors = Errors::default();
    let id = id(args.id, &s.ident, &mut errors);
    check_struct(
        s,
        args.payload.is_some(),
        args.output.is_some(),
        &mut errors,
    );
    let extras = extras(args.metadata, args.streams, &mut errors);
    errors.into_result()?;
    match (id, args.payload, args.output) {
        (Some(id), Some((_, payload)), Some((_, output))) => Ok(StructSpec {
            id,
            payload,
            output,
            extras,
        }),
        _ => Err(syn::Error::new(s.ident.span(), "invalid `#[task]`")),
    }
}

/// The `id` argument, checked; its absence is reported at the item's name.
fn id(id: Option<LitStr>, ident: &Ident, errors: &mut Errors) -> Option<LitStr> {
    match id {
        Some(id) => {
            check_id(&id, errors);
            Some(id)
        }
        None => {
            errors.at(
                ident.span(),
                format_args!("`#[task]` on `{ident}` needs an identifier: `#[task(id = \"...\")]`"),
            );
            None
        }
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

const RECEIVER: &str = "a task function cannot take `self`: put `#[task]` on a free `async fn`, outside any `impl` block";

const FN_SHAPE: &str = "expected `async fn name(payload: Payload, ctx: TaskContext) -> Result<Output, Error>` (the `ctx` parameter is optional)";

/// The payload, return and context types of a task function, if its signature is right.
fn fn_types(
    f: &ItemFn,
    errors: &mut Errors,
) -> Option<(TokenStream, TokenStream, Option<TokenStream>)> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            format_args!("a task function must be `async`: the engine awaits it on its worker pool; {FN_SHAPE}"),
        );
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
        Some(FnArg::Typed(arg)) => param_type(&arg.ty, "payload", errors),
    };
    let context = match params.next() {
        None => None,
        Some(FnArg::Receiver(receiver)) => {
            errors.spanned(receiver, RECEIVER);
            None
        }
        Some(FnArg::Typed(arg)) => param_type(&arg.ty, "context", errors),
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
        ReturnType::Type(_, ty) => param_type(ty, "return", errors),
    };
    Some((payload?, ret?, context))
}

/// Rejects `impl Trait` types, which the generated `Task` impl could not name.
fn param_type(ty: &Type, what: &str, errors: &mut Errors) -> Option<TokenStream> {
    if let Type::ImplTrait(_) = ty {
        errors.spanned(
            ty,
            format_args!(
                "the {what} type of a task function must be a named type, not `impl Trait`"
            ),
        );
        return None;
    }
    Some(ty.to_token_stream())
}

fn check_struct(s: &ItemStruct, payload: bool, output: bool, errors: &mut Errors) {
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
    let missing = match (payload, output) {
        (false, false) => Some("`payload = Type` and `output = Type`"),
        (false, true) => Some("`payload = Type`"),
        (true, false) => Some("`output = Type`"),
        (true, true) => None,
    };
    if let Some(missing) = missing {
        errors.at(
            s.ident.span(),
            format_args!(
                "`#[task]` on struct `{}` needs {missing}: a task run elsewhere has no function to take its types from",
                s.ident
            ),
        );
    }
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

/// What to expand of a union: each task type and variant name once, so that a bad entry adds
/// no error of its own to the one reported here.
pub(crate) struct UnionPlan {
    /// Indices of the members to expand.
    pub(crate) members: Vec<usize>,
    /// Index of the catch-all to expand.
    pub(crate) catch_all: Option<usize>,
}

/// Checks a union, reporting every bad entry.
pub(crate) fn union(input: &UnionInput) -> (UnionPlan, Option<syn::Error>) {
    let mut errors = Errors::default();
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
        let ty = member.ty.to_token_stream().to_string();
        if types.contains_key(&ty) {
            errors.spanned(
                &member.ty,
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
    (plan, errors.0)
}
