//! The arguments of `#[task(...)]`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Type};

/// The keys `#[task]` accepts, in the order the messages list them.
const KEYS: &str = "`id`, `payload`, `output`, `metadata`, `streams`";

/// `#[task(id = "...", payload = P, output = O, metadata = M, streams(key = C, ...))]`, each
/// key at most once.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) id: Option<LitStr>,
    pub(crate) payload: Option<(Ident, Type)>,
    pub(crate) output: Option<(Ident, Type)>,
    pub(crate) metadata: Option<(Ident, Type)>,
    /// Each stream's key and chunk type, in order.
    pub(crate) streams: Option<Vec<(Ident, Type)>>,
}

impl TaskArgs {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Self> {
        let mut parsed = TaskArgs::default();
        syn::meta::parser(|meta| parsed.parse_one(meta)).parse2(args)?;
        Ok(parsed)
    }

    fn parse_one(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(key) = meta.path.get_ident().cloned() else {
            return Err(meta.error(format_args!(
                "unknown `#[task]` argument; expected one of: {KEYS}"
            )));
        };
        let duplicate = || {
            syn::Error::new(
                key.span(),
                format_args!("duplicate `#[task]` argument `{key}`; give each argument once"),
            )
        };
        if key == "id" {
            let value = match meta.value()?.parse()? {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(id), ..
                }) => id,
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "task `id` must be a string literal, as in `id = \"resize-image\"`, so that it is checked at compile time",
                    ));
                }
            };
            if self.id.replace(value).is_some() {
                return Err(duplicate());
            }
        } else if key == "payload" || key == "output" || key == "metadata" {
            let ty: Type = meta.value()?.parse()?;
            let slot = if key == "payload" {
                &mut self.payload
            } else if key == "output" {
                &mut self.output
            } else {
                &mut self.metadata
            };
            if slot.replace((key.clone(), ty)).is_some() {
                return Err(duplicate());
            }
        } else if key == "streams" {
            if self.streams.is_some() {
                return Err(duplicate());
            }
            let empty = || {
                syn::Error::new(
                    key.span(),
                    "`streams()` declares no stream; declare at least one, as in `streams(tokens = String)`, or leave `streams` out",
                )
            };
            let fork = meta.input.fork();
            let content;
            syn::parenthesized!(content in fork);
            if content.is_empty() {
                return Err(empty());
            }
            let mut streams: Vec<(Ident, Type)> = Vec::new();
            meta.parse_nested_meta(|stream| {
                let Some(name) = stream.path.get_ident().cloned() else {
                    return Err(stream.error(
                        "a stream is declared as `key = ChunkType`, with a plain identifier as its key",
                    ));
                };
                if !stream.input.peek(syn::Token![=]) {
                    return Err(stream.error(format_args!(
                        "stream `{name}` needs its chunk type, as in `{name} = String`"
                    )));
                }
                let ty: Type = stream.value()?.parse()?;
                if streams.iter().any(|(seen, _)| *seen == name) {
                    return Err(syn::Error::new(
                        name.span(),
                        format_args!("duplicate stream `{name}`; declare each stream once"),
                    ));
                }
                streams.push((name, ty));
                Ok(())
            })?;
            self.streams = Some(streams);
        } else {
            return Err(syn::Error::new(
                key.span(),
                format_args!("unknown `#[task]` argument `{key}`; expected one of: {KEYS}"),
            ));
        }
        Ok(())
    }
}
