//! Code generation: `quote!` only; the rules are checked in `valid`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ItemStruct};

use crate::ast::{TaskItem, UnionInput};
use crate::attr::TaskArgs;
use crate::valid::{self, Extras, FnSpec, StructSpec};

/// `#[task]`: the user's item, then the `Task` (and `TaskFn`) impls. On error, the item and
/// the errors, so one mistake does not cascade into unresolved names.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: TaskItem = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => return with_error(item, error),
    };
    let args = match TaskArgs::parse(args) {
        Ok(args) => args,
        Err(error) => return fallback(item, error),
    };
    match item {
        TaskItem::Fn(mut f) => {
            name_task_context(&mut f);
            match valid::task_fn(args, &f) {
                Ok(spec) => fn_impls(&f, &spec),
                Err(error) => fallback(TaskItem::Fn(f), error),
            }
        }
        TaskItem::Struct(s) => match valid::task_struct(args, &s) {
            Ok(spec) => struct_impls(&s, &spec),
            Err(error) => fallback(TaskItem::Struct(s), error),
        },
    }
}

/// Writes the task into a context parameter written `TaskContext` (with no task): the context
/// of `resize_image` is `TaskContext<ResizeImage>`, which reaches only that task's metadata and
/// streams.
fn name_task_context(f: &mut ItemFn) {
    let Some(syn::FnArg::Typed(param)) = f.sig.inputs.iter_mut().nth(1) else {
        return;
    };
    let syn::Type::Path(path) = &mut *param.ty else {
        return;
    };
    let Some(last) = path.path.segments.last_mut() else {
        return;
    };
    if path.qself.is_none() && last.ident == "TaskContext" && last.arguments.is_none() {
        let task = syn::Ident::new(
            &valid::struct_name(&f.sig.ident).to_string(),
            last.ident.span(),
        );
        last.arguments = syn::PathArguments::AngleBracketed(syn::parse_quote!(<#task>));
    }
}

fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

/// The user's item unchanged and, for a function, its struct (without impls) so that uses of
/// the task's name do not add errors of their own. Not for a method: a struct cannot be
/// declared in an `impl` block.
fn fallback(item: TaskItem, error: syn::Error) -> TokenStream {
    match item {
        TaskItem::Fn(f) if f.sig.receiver().is_none() => {
            let vis = &f.vis;
            let ident = valid::struct_name(&f.sig.ident);
            let tokens = quote! {
                #f
                #[allow(dead_code)]
                #vis struct #ident;
            };
            with_error(tokens, error)
        }
        TaskItem::Fn(f) => with_error(f.into_token_stream(), error),
        TaskItem::Struct(s) => with_error(s.into_token_stream(), error),
    }
}

/// `::runcast::__private`, spanned at `span`.
fn private_at(span: Span) -> TokenStream {
    quote_spanned!(span=> ::runcast::__private)
}

/// The function, its struct and the struct's `Task` and `TaskFn` impls.
fn fn_impls(item: &ItemFn, spec: &FnSpec) -> TokenStream {
    let FnSpec {
        id,
        struct_ident,
        payload,
        ret,
        context,
        extras,
    } = spec;
    let private = quote!(::runcast::__private);
    let vis = &item.vis;
    let fn_ident = &item.sig.ident;
    let doc = format!(
        "The `{}` task, run by [`{}`].",
        id.value(),
        fn_ident.to_string().trim_start_matches("r#")
    );
    // Each piece is spanned at the user's tokens it depends on, so that a wrong type is
    // reported once, there: the context's conversion at the context type; the output,
    // the error and the conversion to `Result` at the return type.
    let args = match context {
        Some(ty) => {
            let p = private_at(ty.span());
            quote_spanned!(ty.span()=> payload, <#ty as #p::IsTaskContext<#struct_ident>>::from_context(ctx))
        }
        None => quote!(payload),
    };
    let ctx = match context {
        Some(_) => format_ident!("ctx"),
        None => format_ident!("_ctx"),
    };
    let (first, last) = first_last_spans(ret);
    let p = private_at(first);
    let task_return = quote_spanned!(first=> <#ret as #p::TaskReturn>);
    let output = quote_spanned!(last=> #task_return::Ok);
    let error = quote_spanned!(last=> #task_return::Err);
    // `where for<'a> R: TaskReturn` (never rejected itself) keeps a return type that is not a
    // `Result` from being reported again here; `Task::Output` reports it. `run` is spanned at
    // the function's name, where a future that is not `Send` is reported.
    let run = quote_spanned! {fn_ident.span()=>
        async fn run(
            payload: #payload,
            #ctx: #private::TaskContext<Self>,
        ) -> ::core::result::Result<Self::Output, Self::Error> {
            let output = #fn_ident(#args).await;
            #p::TaskReturn::into_result(output)
        }
    };
    let task_fn_impl = quote_spanned! {first=>
        #[automatically_derived]
        impl #p::TaskFn for #struct_ident where for<'__a> #ret: #p::TaskReturn + '__a {
            type Error = #error;

            #run
        }
    };
    let task = task_items(struct_ident, vis, id, payload, &output, extras);
    quote! {
        #item

        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
        #vis struct #struct_ident;

        #task

        const _: () = {
            #task_fn_impl
        };
    }
}

/// The struct and its `Task` impl.
fn struct_impls(item: &ItemStruct, spec: &StructSpec) -> TokenStream {
    let StructSpec {
        id,
        payload,
        output,
        extras,
    } = spec;
    let task = task_items(&item.ident, &item.vis, id, payload, output, extras);
    quote! {
        #item

        #task
    }
}

/// The task type's constants (`ID` and one per stream), its chunk enum if it declares streams,
/// and its `Task` impl.
fn task_items(
    task: &syn::Ident,
    vis: &syn::Visibility,
    id: &syn::LitStr,
    payload: &dyn ToTokens,
    output: &dyn ToTokens,
    extras: &Extras,
) -> TokenStream {
    let Generated {
        metadata,
        chunk,
        chunk_items,
        stream_consts,
    } = generated(task, vis, extras);
    let private = quote!(::runcast::__private);
    quote! {
        #[automatically_derived]
        impl #task {
            /// The task identifier.
            pub const ID: &'static str = #id;
            #stream_consts
        }

        #chunk_items

        const _: () = {
            #[automatically_derived]
            impl #private::Task for #task {
                const ID: &'static str = #id;
                type Payload = #payload;
                type Output = #output;
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

fn generated(task: &syn::Ident, vis: &syn::Visibility, extras: &Extras) -> Generated {
    let private = quote!(::runcast::__private);
    let metadata = match &extras.metadata {
        Some(ty) => ty.to_token_stream(),
        None => quote!(::runcast::JsonObject),
    };
    if extras.streams.is_empty() {
        return Generated {
            metadata,
            chunk: quote!(#private::NoStreams),
            chunk_items: TokenStream::new(),
            stream_consts: TokenStream::new(),
        };
    }
    let chunk = format_ident!("{}Chunk", task);
    let task_name = task.to_string();
    let keys: Vec<&str> = extras.streams.iter().map(|s| s.key.as_str()).collect();
    let variants = extras.streams.iter().map(|s| {
        let (variant, ty) = (&s.variant, &s.ty);
        let doc = format!("A chunk of stream `{}`.", s.key);
        quote!(#[doc = #doc] #variant(#ty))
    });
    let arms = extras.streams.iter().map(|s| {
        let (key, variant) = (&s.key, &s.variant);
        quote!(#key => #private::decode_chunk(data).map(Self::#variant))
    });
    let debug_arms = extras.streams.iter().map(|s| {
        let variant = &s.variant;
        let name = variant.to_string();
        quote!(Self::#variant(chunk) => #private::debug_chunk(f, #name, chunk))
    });
    let consts = extras.streams.iter().map(|s| {
        let (key, konst, ty) = (&s.key, &s.konst, &s.ty);
        let doc = format!("Stream `{key}`: write it with `ctx.stream({task_name}::{konst})`.");
        quote! {
            #[doc = #doc]
            pub const #konst: #private::StreamKey<Self, #ty> = #private::StreamKey::new(#key);
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
                impl #private::TaskChunk for #chunk {
                    const STREAMS: &'static [&'static str] = &[#(#keys),*];

                    fn decode(
                        stream: &str,
                        data: &#private::RawValue,
                    ) -> ::core::result::Result<Self, #private::ChunkError> {
                        match stream {
                            #(#arms,)*
                            _ => ::core::result::Result::Err(#private::ChunkError::UnknownStream(
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

/// `realtime_union!`: the enum, its `RunUnion` impl, `From<Run<T>>` per task, and a const
/// assertion per pair of tasks that their identifiers differ.
///
/// A listed type that is not a task must give one error, at that type, not one per place the
/// expansion names it. So the code naming a member type is spanned at it; only the enum's
/// variant requires it to be a task; the impls assume every member is one (`where for<'a> T:
/// Task`, a bound that is never rejected itself); and identifiers are read through
/// `__TaskId`, which gives `""` for a type that is not a task instead of a second error.
pub(crate) fn realtime_union(input: &UnionInput) -> TokenStream {
    let (plan, errors) = valid::union(input);
    let private = quote!(::runcast::__private);
    let UnionInput {
        attrs, vis, ident, ..
    } = input;
    let members: Vec<_> = plan.members.iter().map(|&i| &input.members[i]).collect();
    let tys: Vec<_> = members.iter().map(|m| &m.ty).collect();
    let ids: Vec<_> = (0..members.len())
        .map(|i| format_ident!("__ID_{}", i))
        .collect();
    let variant_defs = members.iter().map(|m| {
        let (attrs, variant, ty) = (&m.attrs, &m.variant, &m.ty);
        let doc = (!attrs.iter().any(|a| a.path().is_ident("doc"))).then(|| {
            let doc = format!("A run of `{}`.", type_name(ty));
            quote!(#[doc = #doc])
        });
        let p = private_at(ty.span());
        let run = quote_spanned!(ty.span()=> #p::Run<#ty>);
        quote!(#(#attrs)* #doc #variant(#run))
    });
    let id_defs = tys
        .iter()
        .zip(&ids)
        .map(|(ty, id)| quote_spanned!(ty.span()=> const #id: &str = <__TaskId<#ty>>::ID;));
    let distinct_ids = members.iter().enumerate().flat_map(|(j, b)| {
        let (ids, tys) = (&ids, &tys);
        (0..j).map(move |i| {
            let message = format!(
                "realtime_union!: `{}` and `{}` have the same task identifier, so a run could not tell them apart; give one of them another `#[task(id = \"...\")]`",
                type_name(tys[i]),
                type_name(&b.ty),
            );
            let (a_id, b_id) = (&ids[i], &ids[j]);
            // The assertion's span runs from the path of `assert!` to its arguments: spanned at
            // the first and last tokens of the type, the error underlines the whole type.
            let (first, last) = first_last_spans(&b.ty);
            let p = private_at(last);
            let args = quote_spanned! {last=>
                (#a_id.is_empty() || !#p::str_eq(#a_id, #b_id), #message)
            };
            quote_spanned!(first=> const _: () = ::core::assert! #args;)
        })
    });
    let bounds = quote!(where #(for<'__a> #tys: #private::Task + '__a,)*);
    let catch_all = plan.catch_all.map(|i| &input.catch_alls[i]);
    // `Self::Variant(ref inner) => inner` for every variant: the run of the union, or the
    // chunk of its chunk enum, whose variants are named alike.
    let inner_arms: Vec<_> = members
        .iter()
        .map(|m| {
            let (ty, variant) = (&m.ty, &m.variant);
            quote_spanned!(ty.span()=> Self::#variant(ref inner) => inner,)
        })
        .chain(catch_all.map(|other| {
            let variant = &other.variant;
            quote!(Self::#variant(ref inner) => inner,)
        }))
        .collect();
    let dispatch_arms = members.iter().zip(&ids).map(|(m, id)| {
        let (ty, variant, p) = (&m.ty, &m.variant, private_at(m.ty.span()));
        quote_spanned! {ty.span()=>
            #id => ::core::result::Result::map(#p::RunSource::decode::<#ty>(run), Self::#variant),
        }
    });
    let from_impls = members.iter().map(|m| {
        let (ty, variant, p) = (&m.ty, &m.variant, private_at(m.ty.span()));
        quote_spanned! {ty.span()=>
            #[automatically_derived]
            impl ::core::convert::From<#p::Run<#ty>> for #ident #bounds {
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
                Some(quote!(#(#attrs)* #doc #variant(#private::AnyRun),)),
                quote!(::core::result::Result::map(#private::RunSource::into_any(run), Self::#variant)),
            )
        }
        None => (
            None,
            quote!(::core::result::Result::Err(#private::RunSource::unexpected(run, <Self as #private::RunUnion>::TASK_IDENTIFIERS))),
        ),
    };
    let chunk_ident = format_ident!("{}Chunk", ident);
    let chunk_variants = members.iter().map(|m| {
        let (variant, ty) = (&m.variant, &m.ty);
        let doc = format!("A chunk of a stream of a run of `{}`.", type_name(ty));
        quote_spanned!(ty.span()=> #[doc = #doc] #variant(::runcast::Chunk<#ty>))
    });
    let chunk_arms = members.iter().zip(&ids).map(|(m, id)| {
        let (ty, variant, p) = (&m.ty, &m.variant, private_at(m.ty.span()));
        quote_spanned! {ty.span()=>
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
                    quote!(#[doc = "A chunk of a run of a task not listed in the union."] #variant(#private::AnyChunk),),
                ),
                quote!(::core::result::Result::Ok(Self::#variant(chunk))),
            )
        }
        None => (
            None,
            quote!(::core::result::Result::Err(#private::unexpected_chunk(chunk, <#ident as #private::RunUnion>::TASK_IDENTIFIERS))),
        ),
    };
    // `for<'a>`: a bound that is never rejected itself; the impl applies when it holds.
    let chunk_debug_bounds =
        quote!(#bounds #(for<'__a> ::runcast::Chunk<#tys>: ::core::fmt::Debug + '__a,)*);
    let chunk_debug_arms: Vec<_> = members
        .iter()
        .map(|m| {
            let (ty, variant) = (&m.ty, &m.variant);
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
    let errors = errors.map(syn::Error::into_compile_error);
    quote! {
        #(#attrs)*
        #vis enum #ident {
            #(#variant_defs,)*
            #other_def
        }

        #[doc = #chunk_doc]
        #[allow(dead_code)]
        #vis enum #chunk_ident {
            #(#chunk_variants,)*
            #chunk_other_def
        }

        const _: () = {
            /// `<__TaskId<T>>::ID` is `T::ID`, or `""` if `T` is not a task.
            struct __TaskId<T: ?::core::marker::Sized>(::core::marker::PhantomData<T>);
            trait __NotATask {
                const ID: &'static str = "";
            }
            impl<T: ?::core::marker::Sized> __NotATask for __TaskId<T> {}
            impl<T: #private::Task> __TaskId<T> {
                const ID: &'static str = <T as #private::Task>::ID;
            }

            #(#id_defs)*

            #(#distinct_ids)*

            #[automatically_derived]
            #[allow(unreachable_code)] // An empty union, already reported.
            impl #private::UnionChunk for #chunk_ident #bounds {
                fn as_chunk_info(&self) -> &dyn #private::ChunkInfo {
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
            impl #private::FromAnyChunk for #chunk_ident #bounds {
                fn from_any_chunk(
                    chunk: #private::AnyChunk,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    #[allow(unreachable_patterns)]
                    match &*chunk.task_identifier {
                        #(#chunk_arms)*
                        _ => #chunk_other_arm,
                    }
                }
            }

            #[automatically_derived]
            impl #private::RunUnion for #ident #bounds {
                const TASK_IDENTIFIERS: &'static [&'static str] = &[#(#ids),*];
                type Chunk = #chunk_ident;

                fn as_run_info(&self) -> &dyn #private::RunInfo {
                    match *self {
                        #(#inner_arms)*
                    }
                }

                fn dispatch<S: #private::RunSource>(
                    run: S,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    #[allow(unreachable_patterns)]
                    match #private::RunSource::task_identifier(&run) {
                        #(#dispatch_arms)*
                        _ => #other_arm,
                    }
                }
            }

            #(#from_impls)*
        };

        #errors
    }
}

/// A type as the user wrote it, for messages: `billing::Charge`.
fn type_name(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}

/// The spans of the first and last tokens of `tokens`, to underline all of them on stable,
/// where a span cannot be joined.
fn first_last_spans(tokens: &impl ToTokens) -> (Span, Span) {
    let mut spans = tokens.to_token_stream().into_iter().map(|tt| tt.span());
    let first = spans.next().unwrap_or_else(Span::call_site);
    (first, spans.last().unwrap_or(first))
}
