//! Code generation: `quote!` only; the rules are checked in `valid`.
//!
//! A task's types are checked in one constant of the task type, `__RUNCAST_CHECK`, and every
//! generated item names each of these types as `Checked<T, { Task::__RUNCAST_CHECK }>`, which
//! is `T` (see `runcast::__private::Checked`). A failed check is one error at the type, and
//! leaves the constant without a value, so rustc takes every type checked by it for an error
//! and reports nothing else about it: neither the bounds of the `Task` impl nor the program's
//! uses of the task. When the macro itself reports errors, it writes them in that constant: the
//! task is still declared, with its `Task` (and `TaskFn`) impls, and those errors are the only
//! ones. `realtime_union!` does the same with a constant per member.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, Type};

use crate::ast::{TaskItem, UnionInput};
use crate::attr::TaskArgs;
use crate::valid::{self, Errors, Extras, FnSpec, StructSpec, type_name};

/// `#[task]`: the user's item, the task type and its impls; with the errors, if any, written
/// in its check constant.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: TaskItem = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => return with_error(item, error),
    };
    let mut errors = Errors::default();
    let args = TaskArgs::parse(args, &mut errors);
    match item {
        TaskItem::Fn(mut f) => {
            name_task_context(&mut f);
            let spec = valid::task_fn(args, &f, &mut errors);
            fn_task(f, &spec, errors.into_inner())
        }
        TaskItem::Struct(s) => {
            let spec = valid::task_struct(args, &s, &mut errors);
            struct_task(
                &s,
                (&s.ident, &s.vis, &s.generics),
                &spec,
                errors.into_inner(),
            )
        }
        TaskItem::Enum(e) => {
            let spec = valid::task_enum(args, &e, &mut errors);
            struct_task(
                &e,
                (&e.ident, &e.vis, &e.generics),
                &spec,
                errors.into_inner(),
            )
        }
    }
}

/// Writes the task into each parameter written `TaskContext` (with no task), by value or
/// behind a reference: the context of `resize_image` is `TaskContext<ResizeImage>`, which
/// reaches only that task's metadata and streams. A context in the wrong place or form is
/// reported, not also left without its task.
fn name_task_context(f: &mut ItemFn) {
    let task = valid::struct_name(&f.sig.ident);
    for param in &mut f.sig.inputs {
        let syn::FnArg::Typed(param) = param else {
            continue;
        };
        if !valid::is_task_context(&param.ty) {
            continue;
        }
        let mut ty = &mut *param.ty;
        while let syn::Type::Reference(reference) = ty {
            ty = &mut *reference.elem;
        }
        let syn::Type::Path(path) = ty else {
            continue;
        };
        let Some(last) = path.path.segments.last_mut() else {
            continue;
        };
        if last.arguments.is_none() {
            // Spanned at `TaskContext`, so that an error about the parameter's type is
            // reported there.
            let span = last.ident.span();
            let task = Ident::new(&task.to_string(), span);
            last.arguments =
                syn::PathArguments::AngleBracketed(syn::parse_quote_spanned!(span=> <#task>));
        }
    }
}

fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

/// `::runcast::__private`.
fn private() -> TokenStream {
    quote!(::runcast::__private)
}

/// `tokens`, every one spanned at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tt = TokenTree::Group(inner);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `#before #ty #after`, the added tokens spanned at the first and last tokens of `ty`: an
/// error about the whole is reported on `ty`.
fn around(before: TokenStream, ty: &impl ToTokens, after: TokenStream) -> TokenStream {
    let (first, last) = first_last_spans(ty);
    let before = respan(before, first);
    let after = respan(after, last);
    quote!(#before #ty #after)
}

/// A check constant (a task's `Task::__RUNCAST_CHECK`, a union member's
/// `Union::__RUNCAST_TASK_<n>`) and how the types it checks are written.
struct Check<'a> {
    /// The type the constant belongs to.
    owner: &'a Ident,
    /// The constant's name.
    name: Ident,
    /// What the constant checks, or the macro's errors.
    terms: Result<Vec<TokenStream>, syn::Error>,
}

impl<'a> Check<'a> {
    /// A task's `__RUNCAST_CHECK`.
    fn new(task: &'a Ident, errors: Option<syn::Error>) -> Self {
        Check::named(task, format_ident!("__RUNCAST_CHECK"), errors)
    }

    /// The check constant `name` of `owner`, such as a union member's `__RUNCAST_TASK_<n>`.
    fn named(owner: &'a Ident, name: Ident, errors: Option<syn::Error>) -> Self {
        Check {
            owner,
            name,
            terms: errors.map_or(Ok(Vec::new()), Err),
        }
    }

    /// Adds `<#ty as #private::#check<{ <#private::Is<#ty>>::#flag }, ...>>::OK`, spanned at
    /// `ty`, unless the macro reported errors.
    fn add(&mut self, check: &str, ty: &impl ToTokens, flags: &[&str]) {
        let Ok(terms) = &mut self.terms else {
            return;
        };
        let flags = flags.iter().map(|flag| is(ty, flag));
        terms.push(passes(ty, check, quote!(#(#flags),*)));
    }

    /// Checks a payload type.
    fn payload(&mut self, ty: &impl ToTokens) {
        self.add(
            "TaskPayload",
            ty,
            &["SERIALIZE", "DESERIALIZE", "JSON_SCHEMA", "SEND_SYNC"],
        );
    }

    /// Checks an output type.
    fn output(&mut self, ty: &impl ToTokens) {
        self.add(
            "TaskOutput",
            ty,
            &["SERIALIZE", "DESERIALIZE", "JSON_SCHEMA", "SEND_SYNC"],
        );
    }

    /// Checks a task function's return type, then its `Ok` type as the output.
    fn fn_return(&mut self, ret: &Type) {
        let Ok(terms) = &mut self.terms else {
            return;
        };
        let p = private();
        let result = is(ret, "RESULT");
        let part = |part: &str| {
            let part = Ident::new(part, Span::call_site());
            around(quote!(#p::#part<), ret, quote!(, #result>))
        };
        let (ok, err) = (part("OkOf"), part("ErrOf"));
        let (display, debug, send) = (is(&err, "DISPLAY"), is(&err, "DEBUG"), is(&err, "SEND"));
        terms.push(passes(ret, "TaskFnReturn", result));
        terms.push(passes(ret, "TaskFnError", quote!(#display, #debug, #send)));
        self.output(&ok);
    }

    /// Checks a metadata type.
    fn metadata(&mut self, ty: &impl ToTokens) {
        self.add(
            "TaskMetadata",
            ty,
            &["SERIALIZE", "DESERIALIZE", "JSON_SCHEMA", "SEND_SYNC"],
        );
    }

    /// Checks a stream's chunk type.
    fn chunk(&mut self, ty: &impl ToTokens) {
        self.add("StreamChunk", ty, &["SERIALIZE", "DESERIALIZE", "SEND"]);
    }

    /// Checks a type listed in a union.
    fn member(&mut self, ty: &impl ToTokens) {
        self.add("UnionMember", ty, &["TASK"]);
    }

    /// `ty` as checked: `Checked<ty, { Owner::NAME }>`, spanned at `ty`.
    fn checked(&self, ty: &impl ToTokens) -> TokenStream {
        let (p, owner, name) = (private(), self.owner, &self.name);
        around(quote!(#p::Checked<), ty, quote!(, { #owner::#name }>))
    }

    /// The constant: the checks, or the macro's errors.
    fn constant(&self) -> TokenStream {
        let p = private();
        let value = match &self.terms {
            Ok(terms) if terms.is_empty() => quote!(0),
            Ok(terms) => quote! {
                #[allow(unused_imports)]
                use #p::IsNot as _;
                #(#terms)+*
            },
            Err(errors) => {
                let errors = errors.to_compile_error();
                quote!(#errors 0)
            }
        };
        let name = &self.name;
        quote! {
            #[doc(hidden)]
            const #name: usize = { #value };
        }
    }
}

/// `<ty as #private::#check<args>>::OK`, spanned at `ty`: `0` if `ty` passes the check (one of
/// the check traits re-exported in `runcast::__private`, such as `TaskPayload`), else one error
/// at `ty` saying what it lacks.
fn passes(ty: &impl ToTokens, check: &str, args: TokenStream) -> TokenStream {
    let p = private();
    let check = Ident::new(check, Span::call_site());
    around(quote!(<), ty, quote!(as #p::#check<#args>>::OK))
}

/// `{ <Is<ty>>::FLAG }`: whether `ty` implements what `flag` names.
fn is(ty: &impl ToTokens, flag: &str) -> TokenStream {
    let p = private();
    let flag = Ident::new(flag, Span::call_site());
    quote!({ <#p::Is<#ty>>::#flag })
}

/// `()`, for a type that is unknown or breaks a rule: it is only written checked, by a
/// constant holding the errors, so it is an error type to rustc.
fn or_unknown(ty: Option<&Type>) -> TokenStream {
    ty.map_or_else(|| quote!(()), ToTokens::to_token_stream)
}

/// The function, its struct and the struct's `Task` and `TaskFn` impls.
fn fn_task(mut item: ItemFn, spec: &FnSpec, errors: Option<syn::Error>) -> TokenStream {
    if item.sig.receiver().is_some() {
        // A method: no struct can be declared in an `impl` block. Its receiver is reported.
        let errors = errors.map(|e| e.into_compile_error());
        return quote!(#item #errors);
    }
    let FnSpec {
        id,
        struct_ident,
        payload,
        ret,
        context,
        extras,
        struct_exists,
    } = spec;
    let failed = errors.is_some();
    if failed && item.sig.asyncness.is_none() && item.sig.constness.is_none() {
        // The function a task function should be, so that its body's `.await`s add no errors
        // to the one about the missing `async`.
        item.sig.asyncness = Some(syn::Token![async](item.sig.fn_token.span));
    }
    let mut check = Check::new(struct_ident, errors);
    if let Some(payload) = payload {
        check.payload(payload);
    }
    if let Some(ret) = ret {
        check.fn_return(ret);
    }
    let p = private();
    let vis = &item.vis;
    let fn_ident = &item.sig.ident;
    let fn_name = fn_ident.unraw().to_string();
    let doc = match id {
        Some(id) => format!("The `{}` task, run by [`{fn_name}`].", id.value()),
        None => format!("The task run by [`{fn_name}`]."),
    };
    let payload_doc = match payload {
        Some(ty) => format!(
            "`{}`, the type of the first parameter of [`{fn_name}`].",
            type_name(ty)
        ),
        None => String::new(),
    };
    let output_doc = match ret {
        Some(ty) => format!(
            "The `Ok` type of `{}`, the return type of [`{fn_name}`].",
            type_name(ty)
        ),
        None => String::new(),
    };
    let ret_checked = check.checked(&or_unknown(ret.as_ref()));
    let (first, last) = ret
        .as_ref()
        .map_or_else(|| (fn_ident.span(), fn_ident.span()), first_last_spans);
    let task_return = around(quote!(<), &ret_checked, quote!(as #p::TaskReturn>));
    let output = quote_spanned!(last=> #task_return::Ok);
    let error = quote_spanned!(last=> #task_return::Err);
    // `run` is spanned at the function's name, where a future that is not `Send` is reported;
    // the context's conversion at the context type.
    let run = if failed {
        quote_spanned! {fn_ident.span()=>
            async fn run(
                _: <Self as #p::Task>::Payload,
                _: #p::TaskContext<Self>,
            ) -> ::core::result::Result<<Self as #p::Task>::Output, Self::Error> {
                ::core::unreachable!("a task whose declaration failed to compile")
            }
        }
    } else {
        let (ctx, args) = match context {
            Some(ty) => {
                let convert = quote_spanned!(ty.span()=> <#ty as #p::IsTaskContext<#struct_ident>>::from_context(ctx));
                (quote!(ctx), quote!(payload, #convert))
            }
            None => (quote!(_), quote!(payload)),
        };
        quote_spanned! {fn_ident.span()=>
            async fn run(
                payload: <Self as #p::Task>::Payload,
                #ctx: #p::TaskContext<Self>,
            ) -> ::core::result::Result<<Self as #p::Task>::Output, Self::Error> {
                let output = #fn_ident(#args).await;
                #task_return::into_result(output)
            }
        }
    };
    let task_fn_impl = quote_spanned! {first=>
        #[automatically_derived]
        impl #p::TaskFn for #struct_ident {
            type Error = #error;

            #run
        }
    };
    let payload = check.checked(&or_unknown(payload.as_ref()));
    let task = task_items(
        struct_ident,
        vis,
        id.as_ref(),
        (&payload, &payload_doc),
        (&output, &output_doc),
        extras,
        check,
    );
    // A type of that name exists already (reported): the impls go on it.
    let declaration = (!struct_exists).then(|| {
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
            #vis struct #struct_ident;
        }
    });
    quote! {
        #item

        #declaration

        #task

        const _: () = {
            #task_fn_impl
        };
    }
}

/// The struct (or the enum, rejected) and its `Task` impl.
fn struct_task(
    item: &impl ToTokens,
    (ident, vis, generics): (&Ident, &syn::Visibility, &syn::Generics),
    spec: &StructSpec,
    errors: Option<syn::Error>,
) -> TokenStream {
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        // No impl can be written for it; its generics are reported.
        let errors = errors.map(|e| e.into_compile_error());
        return quote!(#item #errors);
    }
    let StructSpec {
        id,
        payload,
        output,
        extras,
    } = spec;
    let mut check = Check::new(ident, errors);
    if let Some(payload) = payload {
        check.payload(payload);
    }
    if let Some(output) = output {
        check.output(output);
    }
    let doc = |ty: &Option<Type>| {
        ty.as_ref()
            .map_or_else(String::new, |ty| format!("`{}`.", type_name(ty)))
    };
    let (payload_doc, output_doc) = (doc(payload), doc(output));
    let payload = check.checked(&or_unknown(payload.as_ref()));
    let output = check.checked(&or_unknown(output.as_ref()));
    let task = task_items(
        ident,
        vis,
        id.as_ref(),
        (&payload, &payload_doc),
        (&output, &output_doc),
        extras,
        check,
    );
    quote! {
        #item

        #task
    }
}

/// The task type's constants (`ID`, one per stream and the check constant), its chunk enum if
/// it declares streams, and its `Task` impl. The payload and output types come with their
/// docs, which name them as written: rustdoc shows them as `Checked<...>`.
fn task_items(
    task: &Ident,
    vis: &syn::Visibility,
    id: Option<&syn::LitStr>,
    (payload, payload_doc): (&TokenStream, &str),
    (output, output_doc): (&TokenStream, &str),
    extras: &Extras,
    mut check: Check<'_>,
) -> TokenStream {
    // A task declared with an error has no identifier; `""` is one no union compares.
    let id = id.map_or_else(|| quote!(""), ToTokens::to_token_stream);
    if let Some(metadata) = &extras.metadata {
        check.metadata(metadata);
    }
    for stream in &extras.streams {
        if let Some(ty) = &stream.ty {
            check.chunk(ty);
        }
    }
    let metadata_doc = match &extras.metadata {
        Some(ty) => format!("`{}`.", type_name(ty)),
        None => "A JSON object: the task declares no metadata type.".to_owned(),
    };
    let Generated {
        metadata,
        chunk,
        chunk_items,
        stream_consts,
    } = generated(task, vis, extras, &check);
    let constant = check.constant();
    let p = private();
    quote! {
        #[automatically_derived]
        impl #task {
            /// The task identifier.
            pub const ID: &'static str = #id;
            #stream_consts
            #constant
        }

        #chunk_items

        const _: () = {
            #[automatically_derived]
            impl #p::Task for #task {
                const ID: &'static str = #id;
                #[doc = #payload_doc]
                type Payload = #payload;
                #[doc = #output_doc]
                type Output = #output;
                #[doc = #metadata_doc]
                type Metadata = #metadata;
                type Chunk = #chunk;
            }
        };
    }
}

/// What a task's metadata type and streams add to its expansion.
struct Generated {
    /// `Task::Metadata`: the declared type, or `JsonObject`.
    metadata: TokenStream,
    /// `Task::Chunk`: the chunk enum, or `NoStreams`.
    chunk: TokenStream,
    /// The chunk enum and its `TaskChunk` impl, beside the task.
    chunk_items: TokenStream,
    /// A `StreamKey` constant per stream, on the task type.
    stream_consts: TokenStream,
}

fn generated(task: &Ident, vis: &syn::Visibility, extras: &Extras, check: &Check<'_>) -> Generated {
    let p = private();
    let metadata = match &extras.metadata {
        Some(ty) => check.checked(ty),
        None => quote!(::runcast::JsonObject),
    };
    if extras.streams.is_empty() {
        return Generated {
            metadata,
            chunk: quote!(#p::NoStreams),
            chunk_items: TokenStream::new(),
            stream_consts: TokenStream::new(),
        };
    }
    let chunk = format_ident!("{}Chunk", task);
    let task_name = task.to_string();
    let keys: Vec<&str> = extras.streams.iter().map(|s| s.key.as_str()).collect();
    let tys: Vec<TokenStream> = extras
        .streams
        .iter()
        .map(|s| check.checked(&or_unknown(s.ty.as_ref())))
        .collect();
    let variants = extras.streams.iter().zip(&tys).map(|(s, ty)| {
        let variant = &s.variant;
        let doc = match &s.ty {
            Some(chunk) => format!("A chunk of stream `{}`: a `{}`.", s.key, type_name(chunk)),
            None => format!("A chunk of stream `{}`.", s.key),
        };
        quote!(#[doc = #doc] #variant(#ty))
    });
    let arms = extras.streams.iter().map(|s| {
        let (key, variant) = (&s.key, &s.variant);
        quote!(#key => #p::decode_chunk(data).map(Self::#variant))
    });
    let debug_arms = extras.streams.iter().map(|s| {
        let variant = &s.variant;
        let name = variant.to_string();
        quote!(Self::#variant(chunk) => #p::debug_chunk(f, #name, chunk))
    });
    let consts = extras.streams.iter().zip(&tys).map(|(s, ty)| {
        let (key, konst) = (&s.key, &s.konst);
        let doc = match &s.ty {
            Some(chunk) => format!(
                "Stream `{key}`, of `{}` chunks: write it with `ctx.stream({task_name}::{konst})`.",
                type_name(chunk)
            ),
            None => format!("Stream `{key}`: write it with `ctx.stream({task_name}::{konst})`."),
        };
        quote! {
            #[doc = #doc]
            pub const #konst: #p::StreamKey<Self, #ty> = #p::stream_key(#key);
        }
    });
    let doc = format!("A chunk of one of the realtime streams of [`{task_name}`], by stream.");
    Generated {
        metadata,
        chunk: chunk.to_token_stream(),
        chunk_items: quote! {
            #[doc = #doc]
            #[allow(dead_code)]
            #vis enum #chunk {
                #(#variants,)*
            }

            const _: () = {
                #[automatically_derived]
                impl ::core::fmt::Debug for #chunk {
                    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        match self {
                            #(#debug_arms,)*
                        }
                    }
                }

                #[automatically_derived]
                impl #p::TaskChunk for #chunk {
                    const STREAMS: &'static [&'static str] = &[#(#keys),*];

                    fn decode(
                        stream: &str,
                        data: &#p::RawValue,
                    ) -> ::core::result::Result<Self, #p::ChunkError> {
                        match stream {
                            #(#arms,)*
                            _ => ::core::result::Result::Err(#p::ChunkError::UnknownStream(
                                ::std::string::ToString::to_string(stream),
                            )),
                        }
                    }
                }
            };
        },
        stream_consts: quote!(#(#consts)*),
    }
}

/// `realtime_union!`: the enum, its chunk enum, its `RunUnion` impl, `From<Run<T>>` per task,
/// and a const assertion per pair of tasks that their identifiers differ.
///
/// Each member is checked to be a task in a constant of the union, `__RUNCAST_TASK_<n>`, and
/// written `Checked<T, { Union::__RUNCAST_TASK_<n> }>` everywhere: a type that is not a task
/// is one error, at that type, and an error type to rustc everywhere else. The members the
/// macro rejects keep their variants, holding an error type by the constant that holds the
/// macro's errors, so that the program's uses of them add no errors either.
pub(crate) fn realtime_union(input: &UnionInput) -> TokenStream {
    let (plan, errors) = valid::union(input);
    let p = private();
    let UnionInput {
        attrs, vis, ident, ..
    } = input;
    struct Planned<'a> {
        member: &'a crate::ast::Member,
        /// `Checked<T, { Union::__RUNCAST_TASK_<n> }>`, or an error type if rejected.
        ty: TokenStream,
        /// The check constant, if the member is to be checked.
        check: Option<TokenStream>,
    }
    let planned: Vec<Planned<'_>> = plan
        .members
        .iter()
        .enumerate()
        .map(|(n, &(i, checked))| {
            let member = &input.members[i];
            let ty = &member.ty;
            if checked {
                let mut check = Check::named(ident, format_ident!("__RUNCAST_TASK_{}", n), None);
                check.member(ty);
                Planned {
                    member,
                    ty: check.checked(ty),
                    check: Some(check.constant()),
                }
            } else {
                let invalid =
                    quote_spanned!(ty.span()=> #p::Checked<(), { #ident::__RUNCAST_INVALID }>);
                Planned {
                    member,
                    ty: invalid,
                    check: None,
                }
            }
        })
        .collect();
    let tasks: Vec<&Planned<'_>> = planned.iter().filter(|m| m.check.is_some()).collect();
    let ids: Vec<_> = (0..tasks.len())
        .map(|i| format_ident!("__ID_{}", i))
        .collect();
    let variant_defs = planned.iter().map(|m| {
        let (attrs, variant, ty) = (&m.member.attrs, &m.member.variant, &m.member.ty);
        let doc = (!attrs.iter().any(|a| a.path().is_ident("doc"))).then(|| {
            let doc = format!("A run of `{0}`: a `Run<{0}>`.", type_name(ty));
            quote!(#[doc = #doc])
        });
        // A function's name listed by mistake, already reported.
        let allow = m
            .check
            .is_none()
            .then(|| quote!(#[allow(non_camel_case_types)]));
        let checked = &m.ty;
        let run = quote_spanned!(ty.span()=> #p::Run<#checked>);
        quote!(#(#attrs)* #doc #allow #variant(#run))
    });
    let check_consts = planned.iter().filter_map(|m| m.check.as_ref());
    let invalid_const = errors.map(|errors| {
        let errors = errors.into_compile_error();
        quote! {
            #[doc(hidden)]
            #[allow(dead_code)]
            const __RUNCAST_INVALID: usize = { #errors 0 };
        }
    });
    let id_defs = tasks.iter().zip(&ids).map(|(m, id)| {
        let ty = &m.ty;
        quote_spanned!(m.member.ty.span()=> const #id: &str = <#ty as #p::Task>::ID;)
    });
    // Identifiers are compared pairwise; `""` is a task whose declaration failed, reported.
    let distinct_ids = tasks.iter().enumerate().flat_map(|(j, b)| {
        let (ids, tasks, p) = (&ids, &tasks, &p);
        (0..j).map(move |i| {
            let (a_id, b_id, a_ty) = (&ids[i], &ids[j], &tasks[i].ty);
            let distinct = quote!({ #a_id.is_empty() || !#p::str_eq(#a_id, #b_id) });
            let check = passes(&b.ty, "DistinctId", quote!(#a_ty, #distinct));
            quote!(const _: usize = #check;)
        })
    });
    let catch_all = plan.catch_all.map(|i| &input.catch_alls[i]);
    // `Self::Variant(ref inner) => inner` for every variant: the run of the union, or the
    // chunk of its chunk enum, whose variants are named alike.
    let inner_arms: Vec<_> = planned
        .iter()
        .map(|m| {
            let (ty, variant) = (&m.member.ty, &m.member.variant);
            quote_spanned!(ty.span()=> Self::#variant(ref inner) => inner,)
        })
        .chain(catch_all.map(|other| {
            let variant = &other.variant;
            quote!(Self::#variant(ref inner) => inner,)
        }))
        .collect();
    let dispatch_arms = tasks.iter().zip(&ids).map(|(m, id)| {
        let (ty, variant) = (&m.ty, &m.member.variant);
        quote_spanned! {m.member.ty.span()=>
            #id => ::core::result::Result::map(#p::RunSource::decode::<#ty>(run), Self::#variant),
        }
    });
    let from_impls = tasks.iter().map(|m| {
        let (ty, variant) = (&m.ty, &m.member.variant);
        quote_spanned! {m.member.ty.span()=>
            #[automatically_derived]
            #[allow(private_interfaces)]
            impl ::core::convert::From<#p::Run<#ty>> for #ident {
                fn from(run: #p::Run<#ty>) -> Self {
                    Self::#variant(run)
                }
            }
        }
    });
    let (other_def, other_arm) = match catch_all {
        Some(other) => {
            let (attrs, variant) = (&other.attrs, &other.variant);
            let doc = (!attrs.iter().any(|a| a.path().is_ident("doc")))
                .then(|| quote!(#[doc = "A run of a task not listed in the union."]));
            (
                Some(quote!(#(#attrs)* #doc #variant(#p::AnyRun),)),
                quote!(::core::result::Result::map(#p::RunSource::into_any(run), Self::#variant)),
            )
        }
        None => (
            None,
            quote!(::core::result::Result::Err(#p::RunSource::unexpected(run, <Self as #p::RunUnion>::TASK_IDENTIFIERS))),
        ),
    };
    let chunk_ident = format_ident!("{}Chunk", ident);
    let chunk_variants = planned.iter().map(|m| {
        let (variant, ty) = (&m.member.variant, &m.ty);
        let doc = format!(
            "A chunk of a stream of a run of `{0}`: a `Chunk<{0}>`.",
            type_name(&m.member.ty)
        );
        let allow = m
            .check
            .is_none()
            .then(|| quote!(#[allow(non_camel_case_types)]));
        quote_spanned!(m.member.ty.span()=> #[doc = #doc] #allow #variant(::runcast::Chunk<#ty>))
    });
    let chunk_arms = tasks.iter().zip(&ids).map(|(m, id)| {
        let (ty, variant) = (&m.ty, &m.member.variant);
        quote_spanned! {m.member.ty.span()=>
            #id => ::core::result::Result::map(
                <::runcast::Chunk<#ty> as #p::FromAnyChunk>::from_any_chunk(chunk),
                Self::#variant,
            ),
        }
    });
    let (chunk_other_def, chunk_other_arm) = match catch_all {
        Some(other) => {
            let variant = &other.variant;
            (
                Some(
                    quote!(#[doc = "A chunk of a run of a task not listed in the union."] #variant(#p::AnyChunk),),
                ),
                quote!(::core::result::Result::Ok(Self::#variant(chunk))),
            )
        }
        None => (
            None,
            quote!(::core::result::Result::Err(#p::unexpected_chunk(chunk, <#ident as #p::RunUnion>::TASK_IDENTIFIERS))),
        ),
    };
    // `for<'a>`: a bound that is never rejected itself; the impl applies when it holds.
    let chunk_debug_tys = planned.iter().map(|m| &m.ty);
    let chunk_debug_bounds =
        quote!(where #(for<'__a> ::runcast::Chunk<#chunk_debug_tys>: ::core::fmt::Debug + '__a,)*);
    let chunk_debug_arms: Vec<_> = planned
        .iter()
        .map(|m| {
            let (ty, variant) = (&m.member.ty, &m.member.variant);
            let name = variant.to_string();
            quote_spanned!(ty.span()=> Self::#variant(ref chunk) => f.debug_tuple(#name).field(chunk).finish(),)
        })
        .chain(catch_all.map(|other| &other.variant).map(|variant| {
            let name = variant.to_string();
            quote!(Self::#variant(ref chunk) => f.debug_tuple(#name).field(chunk).finish(),)
        }))
        .collect();
    let chunk_doc = format!(
        "A chunk of a stream of a run of one of the tasks of [`{ident}`], by task: the chunk items of a feed of `{ident}` with streams."
    );
    quote! {
        #(#attrs)*
        #vis enum #ident {
            #(#variant_defs,)*
            #other_def
        }

        #[doc = #chunk_doc]
        #[allow(dead_code, private_interfaces)]
        #vis enum #chunk_ident {
            #(#chunk_variants,)*
            #chunk_other_def
        }

        #[automatically_derived]
        impl #ident {
            #(#check_consts)*
            #invalid_const
        }

        const _: () = {
            #(#id_defs)*

            #(#distinct_ids)*

            #[automatically_derived]
            #[allow(unreachable_code)] // An empty union, already reported.
            impl #p::UnionChunk for #chunk_ident {
                fn as_chunk_info(&self) -> &dyn #p::ChunkInfo {
                    match *self {
                        #(#inner_arms)*
                    }
                }
            }

            #[automatically_derived]
            #[allow(unreachable_code)] // An empty union, already reported.
            impl ::core::fmt::Debug for #chunk_ident #chunk_debug_bounds {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #(#chunk_debug_arms)*
                    }
                }
            }

            #[automatically_derived]
            impl #p::FromAnyChunk for #chunk_ident {
                fn from_any_chunk(
                    chunk: #p::AnyChunk,
                ) -> ::core::result::Result<Self, #p::DecodeError> {
                    #[allow(unreachable_patterns)]
                    match &*chunk.task_identifier {
                        #(#chunk_arms)*
                        _ => #chunk_other_arm,
                    }
                }
            }

            #[automatically_derived]
            impl #p::RunUnion for #ident {
                const TASK_IDENTIFIERS: &'static [&'static str] = &[#(#ids),*];
                type Chunk = #chunk_ident;

                fn as_run_info(&self) -> &dyn #p::RunInfo {
                    match *self {
                        #(#inner_arms)*
                    }
                }

                fn dispatch<S: #p::RunSource>(
                    run: S,
                ) -> ::core::result::Result<Self, #p::DecodeError> {
                    #[allow(unreachable_patterns)]
                    match #p::RunSource::task_identifier(&run) {
                        #(#dispatch_arms)*
                        _ => #other_arm,
                    }
                }
            }

            #(#from_impls)*
        };
    }
}

/// The spans of the first and last tokens of `tokens`, to underline all of them on stable,
/// where a span cannot be joined.
fn first_last_spans(tokens: &impl ToTokens) -> (Span, Span) {
    let mut spans = tokens.to_token_stream().into_iter().map(|tt| tt.span());
    let first = spans.next().unwrap_or_else(Span::call_site);
    (first, spans.last().unwrap_or(first))
}
