//! The arguments of `#[task(...)]`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Type};

/// The keys `#[task]` accepts, in the order the messages list them.
const KEYS: &str = "`id`, `payload`, `output`";

/// `#[task(id = "...", payload = P, output = O)]`, each key at most once.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) id: Option<LitStr>,
    pub(crate) payload: Option<(Ident, Type)>,
    pub(crate) output: Option<(Ident, Type)>,
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
        } else if key == "payload" || key == "output" {
            let ty: Type = meta.value()?.parse()?;
            let slot = if key == "payload" {
                &mut self.payload
            } else {
                &mut self.output
            };
            if slot.replace((key.clone(), ty)).is_some() {
                return Err(duplicate());
            }
        } else {
            return Err(syn::Error::new(
                key.span(),
                format_args!("unknown `#[task]` argument `{key}`; expected one of: {KEYS}"),
            ));
        }
        Ok(())
    }
}
