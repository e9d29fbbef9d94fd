//! Procedural macros of runcast: `#[task]` and `realtime_union!`.
//!
//! Depend on the `runcast` crate, which re-exports them and documents them; the generated
//! code refers to it.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Declares a task. Documented in the `runcast` crate.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}

/// Declares an enum over the runs of several tasks. Documented in the `runcast` crate.
#[proc_macro]
pub fn realtime_union(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as ast::UnionInput);
    expand::realtime_union(&input).into()
}
