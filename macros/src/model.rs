//! The service trait as the macro understands it. Every rule a trait must
//! follow is checked here, so a mistake is reported at the user's own tokens
//! with a sentence saying what to write instead, not as an error deep inside
//! generated code.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments,
    ReturnType, TraitItem, TraitItemFn, Type,
};

/// Names the generated client already uses for its own methods: an RPC named
/// like one of them would not compile, so it is refused with advice instead.
const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_client",
    "client",
    "into_client",
    "with_options",
    "connect",
];

/// `#[squall::service(name = "...", crate = "...")]`.
#[derive(Default)]
pub(crate) struct ServiceAttr {
    /// The service part of every method name; the trait's name if not given.
    name: Option<LitStr>,
    /// The path generated code reaches squall by; `::squall` if not given.
    krate: Option<syn::Path>,
}

impl ServiceAttr {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<ServiceAttr> {
        let mut attr = ServiceAttr::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                attr.name = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path: LitStr = meta.value()?.parse()?;
                attr.krate = Some(path.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown squall::service option: expected `name = \"Service\"` or `crate = \"path::to::squall\"`",
                ))
            }
        });
        parser.parse2(args)?;
        Ok(attr)
    }
}

/// One RPC: a method of the trait.
pub(crate) struct Rpc {
    /// The Rust method name, used by the trait and the client alike.
    pub(crate) ident: Ident,
    /// The method part of the wire name (after the dot).
    pub(crate) method: String,
    /// Whether retries and hedges may re-send a call that may have run.
    pub(crate) idempotent: bool,
    /// Whether the trait method takes a `Context` first.
    pub(crate) has_context: bool,
    /// The arguments after the context, as named in the trait.
    pub(crate) args: Vec<(Ident, Type)>,
    /// The `T` of `Result<T, Status>`.
    pub(crate) reply: Type,
    /// The user's doc comments, copied onto the client methods.
    pub(crate) docs: Vec<Attribute>,
}

/// The whole service.
pub(crate) struct Service {
    /// The trait, with squall's inert attributes removed (rewritten on expansion).
    pub(crate) item: ItemTrait,
    /// The service part of every method name.
    pub(crate) name: String,
    /// How generated code names squall.
    pub(crate) krate: syn::Path,
    /// The methods, in declaration order.
    pub(crate) rpcs: Vec<Rpc>,
}

impl Service {
    pub(crate) fn from_trait(attr: ServiceAttr, mut item: ItemTrait) -> syn::Result<Service> {
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            return Err(Error::new(
                item.generics.span(),
                "a squall::service trait cannot be generic: each method has one argument and one reply type on the wire",
            ));
        }
        let name = match &attr.name {
            Some(lit) => checked_name(&lit.value(), lit.span(), "service name")?,
            None => item.ident.to_string(),
        };
        let krate = attr.krate.unwrap_or_else(|| syn::parse_quote!(::squall));
        let mut rpcs = Vec::new();
        let mut errors: Option<Error> = None;
        for trait_item in &mut item.items {
            match rpc_of(trait_item) {
                Ok(rpc) => rpcs.push(rpc),
                Err(error) => match &mut errors {
                    Some(errors) => errors.combine(error),
                    None => errors = Some(error),
                },
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        check_unique_methods(&name, &rpcs)?;
        Ok(Service {
            item,
            name,
            krate,
            rpcs,
        })
    }
}

/// Reads one trait item as an RPC, removing squall's attributes from it.
fn rpc_of(trait_item: &mut TraitItem) -> syn::Result<Rpc> {
    let TraitItem::Fn(function) = trait_item else {
        return Err(Error::new(
            trait_item.span(),
            "a squall::service trait holds only `async fn` methods (one per RPC)",
        ));
    };
    let (method, idempotent) = take_attributes(function)?;
    check_signature(function)?;
    let ident = function.sig.ident.clone();
    if CLIENT_METHODS.contains(&ident.to_string().as_str()) {
        return Err(Error::new(
            ident.span(),
            format!(
                "`{ident}` is a method of the generated client itself; name the Rust method otherwise and keep the wire name with #[method = \"{}\"]",
                upper_camel_case(&ident.to_string())
            ),
        ));
    }
    let method = match method {
        Some(lit) => checked_name(&lit.value(), lit.span(), "method name")?,
        None => upper_camel_case(&ident.to_string()),
    };
    let (has_context, args) = arguments(function)?;
    let reply = reply_type(&function.sig.output, &ident)?;
    let docs = function
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    Ok(Rpc {
        ident,
        method,
        idempotent,
        has_context,
        args,
        reply,
        docs,
    })
}

/// Removes `#[method = "..."]` and `#[idempotent]` / `#[idempotent(bool)]`
/// from `function`, returning what they said.
fn take_attributes(function: &mut TraitItemFn) -> syn::Result<(Option<LitStr>, bool)> {
    let mut method = None;
    let mut idempotent = None;
    let mut kept = Vec::new();
    for attr in function.attrs.drain(..) {
        if attr.path().is_ident("method") {
            let value = &attr.meta.require_name_value()?.value;
            let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(lit),
                ..
            }) = value
            else {
                return Err(Error::new(
                    value.span(),
                    "write #[method = \"Name\"]: the method part of the wire name, as a string",
                ));
            };
            if method.replace(lit.clone()).is_some() {
                return Err(Error::new(attr.span(), "#[method] given twice"));
            }
        } else if attr.path().is_ident("idempotent") {
            let value = match &attr.meta {
                syn::Meta::Path(_) => true,
                syn::Meta::List(list) => list.parse_args::<syn::LitBool>()?.value,
                syn::Meta::NameValue(_) => {
                    return Err(Error::new(
                        attr.span(),
                        "write #[idempotent] or #[idempotent(false)]",
                    ))
                }
            };
            if idempotent.replace(value).is_some() {
                return Err(Error::new(attr.span(), "#[idempotent] given twice"));
            }
        } else {
            kept.push(attr);
        }
    }
    function.attrs = kept;
    Ok((method, idempotent.unwrap_or(false)))
}

/// `item` with `#[method]` and `#[idempotent]` removed from its methods.
pub(crate) fn without_squall_attributes(mut item: ItemTrait) -> ItemTrait {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(function) = trait_item {
            function
                .attrs
                .retain(|a| !a.path().is_ident("method") && !a.path().is_ident("idempotent"));
        }
    }
    item
}

/// `async fn name(&self, …) -> …;`: async, `&self`, no generics, no body.
fn check_signature(function: &TraitItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let name = &sig.ident;
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            format!("`{name}` must be an `async fn`: every RPC is awaited (write `async fn {name}(&self, …)`)"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            format!(
                "`{name}` cannot be generic: its argument and reply types are fixed on the wire"
            ),
        ));
    }
    if let Some(body) = &function.default {
        return Err(Error::new(
            body.span(),
            format!("`{name}` cannot have a default body here: write it in your `impl`"),
        ));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() =>
        {
            Ok(())
        }
        Some(other) => Err(Error::new(
            other.span(),
            format!("`{name}` must take `&self` first: one instance serves concurrent calls"),
        )),
        None => Err(Error::new(
            sig.paren_token.span.join(),
            format!("`{name}` must take `&self` first: one instance serves concurrent calls"),
        )),
    }
}

/// Whether a `Context` comes first, and the named arguments after it.
fn arguments(function: &TraitItemFn) -> syn::Result<(bool, Vec<(Ident, Type)>)> {
    let mut has_context = false;
    let mut args = Vec::new();
    for (position, input) in function.sig.inputs.iter().skip(1).enumerate() {
        let FnArg::Typed(typed) = input else {
            return Err(Error::new(
                input.span(),
                "only the first argument may be `self`",
            ));
        };
        if is_context(&typed.ty) {
            if position != 0 {
                return Err(Error::new(
                    typed.ty.span(),
                    "the `Context` must come right after `&self`",
                ));
            }
            has_context = true;
            continue;
        }
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(Error::new(
                typed.pat.span(),
                "name each argument (`key: String`); destructure it in your `impl`",
            ));
        };
        args.push((pat.ident.clone(), (*typed.ty).clone()));
    }
    Ok((has_context, args))
}

/// A type whose path ends in `Context` (`Context`, `squall::Context`).
fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Context" && s.arguments.is_empty()))
}

/// The `T` of `-> Result<T, Status>`.
fn reply_type(output: &ReturnType, name: &Ident) -> syn::Result<Type> {
    let wrong = |span: Span| {
        Error::new(
            span,
            format!("`{name}` must return `Result<T, Status>`: any call can fail (network, deadline, the handler), and squall's `Status` says how"),
        )
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(wrong(name.span()));
    };
    let Type::Path(path) = &**ty else {
        return Err(wrong(ty.span()));
    };
    let Some(last) = path.path.segments.last() else {
        return Err(wrong(ty.span()));
    };
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return Err(wrong(ty.span()));
    };
    let types: Vec<&Type> = generics
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [reply, error] if last.ident == "Result" => match error {
            Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == "Status") => {
                Ok((*reply).clone())
            }
            _ => Err(Error::new(
                error.span(),
                format!("`{name}`'s error type must be squall's `Status`: it carries whether the call may have run, which retries need"),
            )),
        },
        _ => Err(wrong(ty.span())),
    }
}

/// `name` if it is a valid part of `Service.Method` (letters, digits, `_`).
fn checked_name(name: &str, span: Span, what: &str) -> syn::Result<String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else if name.contains('.') {
        Err(Error::new(
            span,
            format!("a {what} is one part of `Service.Method`, without a dot: set the service part with #[squall::service(name = \"...\")] and the method part with #[method = \"...\"]"),
        ))
    } else {
        Err(Error::new(
            span,
            format!(
                "{what} {name:?} must be letters, digits and `_` (it is half of `Service.Method`)"
            ),
        ))
    }
}

/// Two methods may not share a wire name (one would shadow the other).
fn check_unique_methods(service: &str, rpcs: &[Rpc]) -> syn::Result<()> {
    for (i, rpc) in rpcs.iter().enumerate() {
        if let Some(first) = rpcs[..i].iter().find(|r| r.method == rpc.method) {
            return Err(Error::new(
                rpc.ident.span(),
                format!(
                    "`{}` and `{}` both map to `{service}.{}`: rename one with #[method = \"...\"]",
                    first.ident, rpc.ident, rpc.method
                ),
            ));
        }
    }
    Ok(())
}

/// The naming rule: `get` → `Get`, `get_all` → `GetAll`, `v2_put` → `V2Put`.
/// Each `_`-separated word gets an upper-case first letter; the rest of each
/// word is kept as written. A raw identifier's `r#` is dropped.
pub(crate) fn upper_camel_case(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let mut out = String::with_capacity(ident.len());
    for word in ident.split('_').filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{upper_camel_case, Service, ServiceAttr};

    #[test]
    fn the_crate_option_sets_the_path_generated_code_names_squall_by() {
        // Proves `crate = "..."` replaces `::squall` in every generated path
        // (a test through the compiler could not tell: `::squall` resolves there).
        let attr = ServiceAttr::parse(quote::quote!(crate = "my_squall", name = "KV")).unwrap();
        let item = syn::parse_quote! {
            trait Kv {
                async fn get(&self, key: String) -> Result<u8, Status>;
            }
        };
        let service = Service::from_trait(attr, item).unwrap();
        assert_eq!(service.name, "KV");
        let code = crate::expand::expand(&service).to_string();
        assert!(code.contains("my_squall :: Router"), "{code}");
        assert!(!code.contains(":: squall ::"), "{code}");
    }

    #[test]
    fn method_names_are_the_upper_camel_case_of_the_rust_name() {
        // Proves the documented rule on the cases users meet.
        assert_eq!(upper_camel_case("get"), "Get");
        assert_eq!(upper_camel_case("get_all"), "GetAll");
        assert_eq!(upper_camel_case("v2_put"), "V2Put");
        assert_eq!(upper_camel_case("_private_thing"), "PrivateThing");
        assert_eq!(upper_camel_case("already_Camel"), "AlreadyCamel");
        assert_eq!(upper_camel_case("r#type"), "Type");
    }
}
