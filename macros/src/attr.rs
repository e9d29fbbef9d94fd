//! The arguments of `#[task(...)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token, Type};

use crate::valid::{Errors, type_name};

/// The keys `#[task]` accepts, in the order the messages list them.
const KEYS: &str = "`id`, `payload`, `output`, `metadata`, `streams`";

/// `#[task(id = "...", payload = P, output = O, metadata = M, streams(key = C, ...))]`, each
/// key at most once.
#[derive(Default)]
pub(crate) struct TaskArgs {
    /// The `id` key, even if its value is not a string literal: a wrong id is not also a
    /// missing one.
    pub(crate) id_key: Option<Ident>,
    pub(crate) id: Option<LitStr>,
    pub(crate) payload: Option<(Ident, Type)>,
    pub(crate) output: Option<(Ident, Type)>,
    pub(crate) metadata: Option<(Ident, Type)>,
    /// Each stream's key and chunk type (unless it is missing), in order.
    pub(crate) streams: Option<Vec<(Ident, Option<Type>)>>,
    /// Whether every argument was read: after a syntax error the rest is unknown, and no key
    /// is reported missing.
    pub(crate) complete: bool,
    /// Whether a `key: value` was reported: once is enough for that one mistake.
    colon_reported: bool,
}

impl TaskArgs {
    /// Reads the arguments. A key that is unknown, given twice or given a wrong value is
    /// reported in `errors` and skipped, so that the others are still known; a syntax error
    /// stops the reading there.
    pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Self {
        let mut parsed = TaskArgs::default();
        let (positional, args) = positional_id(args);
        if let Some(id) = positional {
            // `#[task("resize-image")]`: the identifier without its key, still read as one.
            errors.at(
                id.span(),
                format_args!(
                    "give the task's identifier with its key: `id = {}`",
                    id.token()
                ),
            );
            parsed.id_key = Some(Ident::new("id", id.span()));
            parsed.id = Some(id);
        }
        let result = syn::meta::parser(|meta| parsed.parse_one(meta, errors)).parse2(args);
        match result {
            Ok(()) => parsed.complete = true,
            Err(error) => errors.push(error),
        }
        parsed
    }

    fn parse_one(&mut self, meta: ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().cloned() else {
            errors.spanned(
                &meta.path,
                format_args!("unknown `#[task]` argument; expected one of: {KEYS}"),
            );
            return skip_value(&meta);
        };
        let duplicate = |errors: &mut Errors| {
            errors.at(
                key.span(),
                format_args!("duplicate `#[task]` argument `{key}`; give each argument once"),
            );
        };
        if key == "id" {
            let value: Expr = self.value(&meta, &key, errors)?;
            if self.id_key.is_some() {
                duplicate(errors);
                return Ok(());
            }
            self.id_key = Some(key.clone());
            match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(id), ..
                }) => self.id = Some(id),
                other => errors.spanned(
                    other,
                    "task `id` must be a string literal, as in `id = \"resize-image\"`, so that it is checked at compile time",
                ),
            }
        } else if key == "payload" || key == "output" || key == "metadata" {
            let ty: Type = self.value(&meta, &key, errors)?;
            let slot = if key == "payload" {
                &mut self.payload
            } else if key == "output" {
                &mut self.output
            } else {
                &mut self.metadata
            };
            if slot.is_some() {
                duplicate(errors);
            } else {
                *slot = Some((key.clone(), ty));
            }
        } else if key == "streams" {
            if self.streams.is_some() {
                duplicate(errors);
                return skip_value(&meta);
            }
            if !meta.input.peek(syn::token::Paren) {
                errors.at(
                    key.span(),
                    "`streams` lists the task's streams and their chunk types, as in `streams(tokens = String)`",
                );
                return skip_value(&meta);
            }
            let fork = meta.input.fork();
            let content;
            syn::parenthesized!(content in fork);
            if content.is_empty() {
                errors.at(
                    key.span(),
                    "`streams()` declares no stream; declare at least one, as in `streams(tokens = String)`, or leave `streams` out",
                );
                return skip_value(&meta);
            }
            let mut streams: Vec<(Ident, Option<Type>)> = Vec::new();
            let mut colon_reported = self.colon_reported;
            meta.parse_nested_meta(|stream| {
                let Some(name) = stream.path.get_ident().cloned() else {
                    errors.spanned(
                        &stream.path,
                        "a stream is declared as `key = ChunkType`, with a plain identifier as its key",
                    );
                    return skip_value(&stream);
                };
                let ty = if stream.input.peek(Token![=]) || stream.input.peek(Token![:]) {
                    Some(value(&stream, &name, &mut colon_reported, errors)?)
                } else {
                    // Still declared, so that its uses add no errors.
                    errors.at(
                        name.span(),
                        format_args!("stream `{name}` needs its chunk type, as in `{name} = String`"),
                    );
                    skip_value(&stream)?;
                    None
                };
                if streams.iter().any(|(seen, _)| *seen == name) {
                    errors.at(
                        name.span(),
                        format_args!("duplicate stream `{name}`; declare each stream once"),
                    );
                } else {
                    streams.push((name, ty));
                }
                Ok(())
            })?;
            self.colon_reported = colon_reported;
            self.streams = Some(streams);
        } else {
            errors.at(
                key.span(),
                format_args!("unknown `#[task]` argument `{key}`; expected one of: {KEYS}"),
            );
            return skip_value(&meta);
        }
        Ok(())
    }

    /// The value of `key = value` (or of `key: value`, reported).
    fn value<T: Parse + ToTokens>(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        key: &Ident,
        errors: &mut Errors,
    ) -> syn::Result<T> {
        value(meta, key, &mut self.colon_reported, errors)
    }
}

/// The value of `key = value`; also of `key: value`, a struct field's syntax, which is
/// reported (the first time) but still read.
fn value<T: Parse + ToTokens>(
    meta: &ParseNestedMeta<'_>,
    key: &Ident,
    colon_reported: &mut bool,
    errors: &mut Errors,
) -> syn::Result<T> {
    let Some(colon) = meta.input.parse::<Option<Token![:]>>()? else {
        return meta.value()?.parse();
    };
    let value: T = meta.input.parse()?;
    if !std::mem::replace(colon_reported, true) {
        errors.at(
            colon.span,
            format_args!(
                "write `{key} = {}`: `#[task]` arguments are given with `=`, not `:`",
                type_name(&value)
            ),
        );
    }
    Ok(value)
}

/// A leading string literal, as in `#[task("resize-image")]`, and the arguments after it.
fn positional_id(args: TokenStream) -> (Option<LitStr>, TokenStream) {
    let split = |input: ParseStream<'_>| {
        let id = input.parse::<Option<LitStr>>()?;
        if id.is_some() && !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        Ok((id, input.parse::<TokenStream>()?))
    };
    split.parse2(args.clone()).unwrap_or((None, args))
}

/// Reads past the value of an argument that is reported already: `= value`, `(...)` or
/// nothing.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<proc_macro2::Group>()?;
    }
    Ok(())
}
