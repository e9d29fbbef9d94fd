//! The typed input of the macros, keeping the user's tokens for spans.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Generics, Ident, ItemEnum, ItemFn, ItemStruct, Token, Type, TypePath, Visibility,
    braced, parenthesized,
};

/// The item under `#[task]`.
pub(crate) enum TaskItem {
    /// `async fn name(payload: P, ctx: TaskContext) -> Result<O, E>`
    Fn(ItemFn),
    /// `struct Name;`
    Struct(ItemStruct),
    /// `enum Name { .. }`: rejected, but still declared a task so that its uses add no errors.
    Enum(ItemEnum),
}

impl Parse for TaskItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let lookahead = input.fork();
        // Skip qualifiers so `pub const async unsafe extern "C" fn` is seen as a fn, and
        // rejected as one.
        while lookahead.peek(Token![const])
            || lookahead.peek(Token![async])
            || lookahead.peek(Token![unsafe])
            || lookahead.peek(Token![extern])
            || lookahead.peek(syn::LitStr)
        {
            lookahead.parse::<proc_macro2::TokenTree>()?;
        }
        if lookahead.peek(Token![fn]) {
            let mut item: ItemFn = input.parse()?;
            item.attrs = attrs;
            item.vis = vis;
            Ok(TaskItem::Fn(item))
        } else if lookahead.peek(Token![struct]) {
            let mut item: ItemStruct = input.parse()?;
            item.attrs = attrs;
            item.vis = vis;
            Ok(TaskItem::Struct(item))
        } else if lookahead.peek(Token![enum]) {
            let mut item: ItemEnum = input.parse()?;
            item.attrs = attrs;
            item.vis = vis;
            Ok(TaskItem::Enum(item))
        } else {
            Err(input.error("`#[task]` applies to an `async fn` (a task run here) or a unit struct (a task run elsewhere)"))
        }
    }
}

/// `realtime_union! { #[attrs] vis enum Name { Member, Name(Member), _ => Other } }`
pub(crate) struct UnionInput {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    /// `struct` written where `enum` goes, which `valid` reports.
    pub(crate) struct_token: Option<Token![struct]>,
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) members: Vec<Member>,
    /// Every `_ => Variant`, in order; `valid` accepts one, last.
    pub(crate) catch_alls: Vec<CatchAll>,
}

/// One task of a union: its variant name and its type.
pub(crate) struct Member {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) variant: Ident,
    pub(crate) ty: Type,
}

/// `_ => Other`: the variant for runs of tasks not listed.
pub(crate) struct CatchAll {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) underscore: Token![_],
    pub(crate) arrow: Token![=>],
    pub(crate) variant: Ident,
    /// How many members come before it.
    pub(crate) position: usize,
}

/// `_ => Variant`, for messages about the catch-all as a whole.
impl ToTokens for CatchAll {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.underscore.to_tokens(tokens);
        self.arrow.to_tokens(tokens);
        self.variant.to_tokens(tokens);
    }
}

impl Parse for UnionInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let struct_token: Option<Token![struct]> = input.parse()?;
        if struct_token.is_none() && !input.peek(Token![enum]) {
            return Err(input.error(
                "realtime_union! declares an enum over tasks, named and listed as in `realtime_union! { pub enum Feed { ResizeImage, SendEmail } }`",
            ));
        }
        if struct_token.is_none() {
            input.parse::<Token![enum]>()?;
        }
        let ident = input.parse()?;
        let generics = input.parse()?;
        let body;
        braced!(body in input);
        let mut members = Vec::new();
        let mut catch_alls = Vec::new();
        for entry in Punctuated::<Entry, Token![,]>::parse_terminated(&body)? {
            match entry {
                Entry::Member(member) => members.push(*member),
                Entry::CatchAll(mut catch_all) => {
                    catch_all.position = members.len();
                    catch_alls.push(catch_all);
                }
            }
        }
        Ok(UnionInput {
            attrs,
            vis,
            struct_token,
            ident,
            generics,
            members,
            catch_alls,
        })
    }
}

enum Entry {
    Member(Box<Member>),
    CatchAll(CatchAll),
}

impl Parse for Entry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        if input.peek(Token![_]) {
            return Ok(Entry::CatchAll(CatchAll {
                attrs,
                underscore: input.parse()?,
                arrow: input.parse()?,
                variant: input.parse()?,
                position: 0,
            }));
        }
        if input.peek(syn::Ident) && input.peek2(syn::token::Paren) {
            let variant = input.parse()?;
            let content;
            parenthesized!(content in input);
            let ty = content.parse()?;
            return Ok(Entry::Member(Box::new(Member { attrs, variant, ty })));
        }
        let path: TypePath = input.parse()?;
        let Some(last) = path.path.segments.last() else {
            return Err(input.error("expected a task type"));
        };
        let variant = last.ident.clone();
        Ok(Entry::Member(Box::new(Member {
            attrs,
            variant,
            ty: Type::Path(path),
        })))
    }
}
