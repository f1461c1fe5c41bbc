//! `#[squall::service]`: one trait gives the server glue and a typed client.
//!
//! Use it through `squall` (`#[squall::service]`); the full guide, with
//! compiled examples, is the rustdoc of `squall::service` and `docs/API.md`.
//!
//! # Layout
//! - [`model`]: the trait as the macro understands it, and every check that
//!   turns a common mistake into a readable error at the user's code.
//! - [`expand`]: the generated trait, `{Trait}Server`, `{Trait}Client` and
//!   `{Trait}Call`.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns a trait of `async fn`s into a squall service: server registration
/// (`{Trait}Server`, a `ServiceDef` for `Router::register`) and a typed client
/// (`{Trait}Client<C: Caller>`). Documented in full on `squall::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::ItemTrait);
    let result = model::ServiceAttr::parse(args.into())
        .and_then(|attr| model::Service::from_trait(attr, item.clone()));
    match result {
        Ok(service) => expand::expand(&service).into(),
        Err(error) => {
            // The trait as written (minus squall's attributes) next to the
            // error, so the user sees this one error, not a cascade of
            // "cannot find trait" at every use.
            let error = error.to_compile_error();
            let item = model::without_squall_attributes(item);
            quote::quote!(#error #item).into()
        }
    }
}
