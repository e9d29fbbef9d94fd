//! Code generation: `quote!` only; the rules are checked in `valid`.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{TaskItem, UnionInput};
use crate::attr::TaskArgs;
use crate::valid::{self, TaskKind, TaskSpec};

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
    match valid::task(args, item) {
        Ok(spec) => task_impls(&spec),
        Err((error, item)) => fallback(item, error),
    }
}

fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

/// The user's item unchanged and, for a function, its struct (without impls) so that uses of
/// the task's name do not add errors of their own.
fn fallback(item: TaskItem, error: syn::Error) -> TokenStream {
    match item {
        TaskItem::Fn(f) => {
            let vis = &f.vis;
            let ident = valid::struct_name(&f.sig.ident);
            let tokens = quote! {
                #f
                #[allow(dead_code)]
                #vis struct #ident;
            };
            with_error(tokens, error)
        }
        TaskItem::Struct(s) => with_error(s.into_token_stream(), error),
    }
}

fn task_impls(spec: &TaskSpec) -> TokenStream {
    let id = &spec.id;
    let private = quote!(::runcast::__private);
    match &spec.kind {
        TaskKind::Fn {
            item,
            struct_ident,
            payload,
            ret,
            context,
        } => {
            let vis = &item.vis;
            let fn_ident = &item.sig.ident;
            let doc = format!(
                "The `{}` task, run by [`{}`].",
                id.value(),
                fn_ident.to_string().trim_start_matches("r#")
            );
            let call = match context {
                Some(_) => quote_spanned!(fn_ident.span()=> #fn_ident(payload, ctx)),
                None => quote_spanned!(fn_ident.span()=> { let _ = ctx; #fn_ident(payload) }),
            };
            let context_check = context
                .iter()
                .map(|ty| quote_spanned!(ty.span()=> #private::assert_context::<#ty>();));
            let output = quote_spanned!(ret.span()=> <#ret as #private::TaskReturn>::Ok);
            let error = quote_spanned!(ret.span()=> <#ret as #private::TaskReturn>::Err);
            quote! {
                #item

                #[doc = #doc]
                #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
                #vis struct #struct_ident;

                #[automatically_derived]
                impl #struct_ident {
                    /// The task identifier.
                    pub const ID: &'static str = #id;
                }

                const _: () = {
                    #[automatically_derived]
                    impl #private::Task for #struct_ident {
                        const ID: &'static str = #id;
                        type Payload = #payload;
                        type Output = #output;
                    }

                    #[automatically_derived]
                    impl #private::TaskFn for #struct_ident {
                        type Error = #error;

                        fn run(
                            payload: #payload,
                            ctx: #private::TaskContext,
                        ) -> impl #private::Future<Output = #ret> + ::core::marker::Send {
                            #call
                        }
                    }

                    fn __check() {
                        #(#context_check)*
                    }
                };
            }
        }
        TaskKind::Struct {
            item,
            payload,
            output,
        } => {
            let ident = &item.ident;
            quote! {
                #item

                #[automatically_derived]
                impl #ident {
                    /// The task identifier.
                    pub const ID: &'static str = #id;
                }

                const _: () = {
                    #[automatically_derived]
                    impl #private::Task for #ident {
                        const ID: &'static str = #id;
                        type Payload = #payload;
                        type Output = #output;
                    }
                };
            }
        }
    }
}

/// `realtime_union!`: the enum, its `RunUnion` impl, `From<Run<T>>` per task, and a const
/// assertion per pair of tasks that their identifiers differ.
pub(crate) fn realtime_union(input: &UnionInput) -> TokenStream {
    let (keep, errors) = valid::union(input);
    let private = quote!(::runcast::__private);
    let UnionInput {
        attrs,
        vis,
        ident,
        catch_all,
        ..
    } = input;
    let members: Vec<_> = keep.iter().map(|&i| &input.members[i]).collect();
    let tys: Vec<_> = members.iter().map(|m| &m.ty).collect();
    let variants: Vec<_> = members.iter().map(|m| &m.variant).collect();
    let variant_defs = members.iter().map(|m| {
        let (attrs, variant, ty) = (&m.attrs, &m.variant, &m.ty);
        let doc = (!attrs.iter().any(|a| a.path().is_ident("doc"))).then(|| {
            let doc = format!(
                "A run of `{}`.",
                ty.to_token_stream().to_string().replace(' ', "")
            );
            quote!(#[doc = #doc])
        });
        quote!(#(#attrs)* #doc #variant(#private::Run<#ty>))
    });
    let task_checks = tys
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> #private::assert_task::<#ty>();));
    let distinct_ids = tys.iter().enumerate().flat_map(|(j, b)| {
        let private = &private;
        tys[..j].iter().map(move |a| {
            let message = format!(
                "realtime_union!: `{}` and `{}` have the same task identifier, so a run could not tell them apart",
                a.to_token_stream().to_string().replace(' ', ""),
                b.to_token_stream().to_string().replace(' ', ""),
            );
            quote_spanned! {b.span()=>
                const _: () = ::core::assert!(
                    !#private::str_eq(<#a as #private::Task>::ID, <#b as #private::Task>::ID),
                    #message,
                );
            }
        })
    });
    let (other_def, other_info, other_arm) = match catch_all {
        Some(other) => {
            let (attrs, variant) = (&other.attrs, &other.variant);
            let doc = (!attrs.iter().any(|a| a.path().is_ident("doc")))
                .then(|| quote!(#[doc = "A run of a task not listed in the union."]));
            (
                Some(quote!(#(#attrs)* #doc #variant(#private::AnyRun),)),
                Some(quote!(Self::#variant(ref run) => run,)),
                quote!(::core::result::Result::map(#private::catch_all(run), Self::#variant)),
            )
        }
        None => (
            None,
            None,
            quote!(::core::result::Result::Err(#private::unexpected(run, <Self as #private::RunUnion>::TASK_IDENTIFIERS))),
        ),
    };
    let decode_fn = format_ident!("decode");
    let errors = errors.map(syn::Error::into_compile_error);
    quote! {
        #(#attrs)*
        #vis enum #ident {
            #(#variant_defs,)*
            #other_def
        }

        const _: () = {
            fn __check() {
                #(#task_checks)*
            }

            #(#distinct_ids)*

            #[automatically_derived]
            impl #private::RunUnion for #ident {
                const TASK_IDENTIFIERS: &'static [&'static str] = &[#(<#tys as #private::Task>::ID),*];

                fn as_run_info(&self) -> &dyn #private::RunInfo {
                    match *self {
                        #(Self::#variants(ref run) => run,)*
                        #other_info
                    }
                }

                fn #decode_fn<K: #private::RawKind>(
                    run: #private::Run<K>,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    #[allow(unreachable_patterns)]
                    match ::core::convert::AsRef::<str>::as_ref(&run.task_identifier) {
                        #(<#tys as #private::Task>::ID => ::core::result::Result::map(
                            #private::decode::<#tys, K>(run),
                            Self::#variants,
                        ),)*
                        _ => #other_arm,
                    }
                }
            }

            #(
                #[automatically_derived]
                impl ::core::convert::From<#private::Run<#tys>> for #ident {
                    fn from(run: #private::Run<#tys>) -> Self {
                        Self::#variants(run)
                    }
                }
            )*
        };

        #errors
    }
}
