//! The generated code, for `trait Kv` with service name `KV`:
//! - the trait itself, each `async fn` rewritten to return
//!   `impl Future<Output = …> + Send` (the server runs handlers on any worker),
//!   with `Send + Sync + 'static` as supertraits;
//! - `impl<T: Kv> Kv for Arc<T>`, forwarding every method;
//! - `KvServer<T: Kv>`: implements `ServiceDef`, so `Router::register` takes it,
//!   and converts into a `Router`;
//! - `KvClient<C: Caller>`: one method per RPC, each a thin inline call of
//!   `Client::go_with` with the wire name and declared idempotency;
//! - `KvCall<'_, C>`: the same methods with per-call `CallOptions`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemTrait, ReturnType, TraitItem, Type};

use crate::model::{Rpc, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let item = rewrite_trait(service);
    let shared = arc_forwarding(&item);
    let server = server(service);
    let client = client(service);
    quote! {
        #item
        #shared
        #server
        #client
    }
}

/// `impl<T: Kv> Kv for Arc<T>`: one implementation can back several servers
/// (or routers) and stay reachable to its owner, without a wrapper type.
fn arc_forwarding(item: &ItemTrait) -> TokenStream {
    let trait_ident = &item.ident;
    let methods = item.items.iter().filter_map(|trait_item| {
        let TraitItem::Fn(function) = trait_item else {
            return None;
        };
        let mut sig = function.sig.clone();
        let mut names = Vec::new();
        for (index, input) in sig.inputs.iter_mut().skip(1).enumerate() {
            if let FnArg::Typed(typed) = input {
                let name = format_ident!("arg{}", index);
                *typed.pat = syn::parse_quote!(#name);
                names.push(name);
            }
        }
        let ident = &sig.ident;
        Some(quote! {
            #[inline]
            #sig {
                <T as #trait_ident>::#ident(&**self, #(#names),*)
            }
        })
    });
    quote! {
        impl<T: #trait_ident> #trait_ident for ::std::sync::Arc<T> {
            #(#methods)*
        }
    }
}

/// The user's trait with `Send` futures and `Send + Sync + 'static` supertraits.
fn rewrite_trait(service: &Service) -> ItemTrait {
    let mut item = service.item.clone();
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));
    for trait_item in &mut item.items {
        let TraitItem::Fn(function) = trait_item else {
            continue;
        };
        function.sig.asyncness = None;
        let output = match &function.sig.output {
            ReturnType::Type(_, ty) => ty.clone(),
            ReturnType::Default => continue,
        };
        let span = output.span();
        function.sig.output = syn::parse_quote_spanned! {span=>
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
    }
    item
}

/// The wire arguments of `rpc`: its one argument, a tuple of several, or `()`.
fn wire_type(rpc: &Rpc) -> TokenStream {
    match rpc.args.as_slice() {
        [(_, ty)] => quote!(#ty),
        args => {
            let types = args.iter().map(|(_, ty)| ty);
            quote!((#(#types,)*))
        }
    }
}

/// The pattern binding the wire arguments to the trait's argument names.
fn wire_pattern(rpc: &Rpc) -> TokenStream {
    match rpc.args.as_slice() {
        [(name, _)] => quote!(#name),
        args => {
            let names = args.iter().map(|(name, _)| name);
            quote!((#(#names,)*))
        }
    }
}

fn server(service: &Service) -> TokenStream {
    let krate = &service.krate;
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let server = format_ident!("{}Server", trait_ident);
    let name = &service.name;
    let registrations = service.rpcs.iter().map(|rpc| {
        let method = &rpc.method;
        let ident = &rpc.ident;
        let wire_type = wire_type(rpc);
        let pattern = wire_pattern(rpc);
        let names = rpc.args.iter().map(|(name, _)| name);
        // Internal bindings carry a prefix no argument name will have.
        let (context_pattern, context) = if rpc.has_context {
            (quote!(__squall_ctx), quote!(__squall_ctx,))
        } else {
            (quote!(_), quote!())
        };
        quote_spanned! {ident.span()=>
            __squall_methods.method(
                #method,
                |__squall_server: ::std::sync::Arc<Self>, #context_pattern: #krate::Context, #pattern: #wire_type| async move {
                    __squall_server.service.#ident(#context #(#names),*).await
                },
            );
        }
    });
    let doc = format!(
        "Serves a [`{trait_ident}`] implementation as the `{name}` service: \
         give it to `Router::register`, or convert it into a `Router`."
    );
    quote! {
        #[doc = #doc]
        #vis struct #server<T> {
            /// The implementation every call is dispatched to.
            service: T,
        }

        impl<T: #trait_ident> #server<T> {
            /// Serves `service`.
            #vis fn new(service: T) -> Self {
                #server { service }
            }

            /// A router with this service's methods and no others.
            #vis fn into_router(self) -> #krate::Router {
                #krate::Router::new().register(self)
            }
        }

        impl<T> ::core::fmt::Debug for #server<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#server)).finish_non_exhaustive()
            }
        }

        impl<T: #trait_ident> #krate::server::ServiceDef for #server<T> {
            const NAME: &'static str = #name;
            fn methods(__squall_methods: &mut #krate::server::Methods<Self>) {
                #(#registrations)*
            }
        }

        impl<T: #trait_ident> ::core::convert::From<#server<T>> for #krate::Router {
            fn from(server: #server<T>) -> #krate::Router {
                server.into_router()
            }
        }
    }
}

fn client(service: &Service) -> TokenStream {
    let krate = &service.krate;
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let client = format_ident!("{}Client", trait_ident);
    let call = format_ident!("{}Call", trait_ident);
    let name = &service.name;
    let forwarding = service
        .rpcs
        .iter()
        .map(|rpc| forwarding_method(service, rpc));
    let calls = service.rpcs.iter().map(|rpc| call_method(service, rpc));
    let client_doc = format!(
        "A typed client of the `{name}` service ([`{trait_ident}`]) over any `Caller`: \
         a `Channel`, a `Pool` or a discovery-aware `ServiceClient`.\n\n\
         Every method starts its call at once and returns a handle: await it now, \
         or later (net/rpc's `Go`). Dropping the handle cancels the call. \
         Per-call options: [`{client}::with_options`]."
    );
    let call_doc = format!(
        "The methods of [`{client}`] with per-call `CallOptions` \
         (from [`{client}::with_options`])."
    );
    quote! {
        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client<C> {
            /// The string-named client the typed methods call through.
            client: #krate::Client<C>,
        }

        impl<C: #krate::Caller> #client<C> {
            /// A client over `caller` with `Client::new`'s defaults
            /// (MessagePack, 30 s per call).
            #vis fn new(caller: C) -> Self {
                #client { client: #krate::Client::new(caller) }
            }

            /// A client with `client`'s codec and timeout defaults.
            #vis fn from_client(client: #krate::Client<C>) -> Self {
                #client { client }
            }

            /// The string-named client underneath.
            #vis fn client(&self) -> &#krate::Client<C> {
                &self.client
            }

            /// The string-named client underneath, by value.
            #vis fn into_client(self) -> #krate::Client<C> {
                self.client
            }

            /// The same methods with per-call `options` (timeout, codec,
            /// metadata). `options.idempotent()` marks one call idempotent
            /// on top of what the trait declares.
            #[inline]
            #vis fn with_options(&self, options: #krate::CallOptions) -> #call<'_, C> {
                #call { client: &self.client, options }
            }

            #(#forwarding)*
        }

        impl #client<#krate::Channel> {
            /// Connects one multiplexed TCP channel to `addr`
            /// (`Client::connect`).
            #vis async fn connect(addr: &str) -> ::core::result::Result<Self, #krate::Status> {
                ::core::result::Result::Ok(#client { client: #krate::Client::connect(addr).await? })
            }
        }

        impl<C: #krate::Caller> ::core::convert::From<#krate::Client<C>> for #client<C> {
            fn from(client: #krate::Client<C>) -> Self {
                #client { client }
            }
        }

        #[doc = #call_doc]
        #[derive(Debug)]
        #vis struct #call<'a, C> {
            /// The client the call goes through.
            client: &'a #krate::Client<C>,
            /// This call's options.
            options: #krate::CallOptions,
        }

        impl<C: #krate::Caller> #call<'_, C> {
            #(#calls)*
        }
    }
}

/// The argument list of a client method: the trait's arguments, by value.
fn client_arguments(rpc: &Rpc) -> TokenStream {
    let args = rpc.args.iter().map(|(name, ty)| quote!(#name: #ty));
    quote!(#(#args),*)
}

fn reply_handle(service: &Service, rpc: &Rpc) -> TokenStream {
    let krate = &service.krate;
    let reply: &Type = &rpc.reply;
    quote!(#krate::client::CallHandle<<C as #krate::Caller>::Future, #reply>)
}

/// `KvClient::get`: forwards to `KvCall::get` with default options.
fn forwarding_method(service: &Service, rpc: &Rpc) -> TokenStream {
    let krate = &service.krate;
    let vis = &service.item.vis;
    let ident = &rpc.ident;
    let docs = &rpc.docs;
    let arguments = client_arguments(rpc);
    let names = rpc.args.iter().map(|(name, _)| name);
    let handle = reply_handle(service, rpc);
    let summary = summary(service, rpc);
    quote! {
        #(#docs)*
        #[doc = #summary]
        #[inline]
        #vis fn #ident(&self, #arguments) -> #handle {
            self.with_options(#krate::CallOptions::new()).#ident(#(#names),*)
        }
    }
}

/// `KvCall::get`: encodes the arguments and starts the call.
fn call_method(service: &Service, rpc: &Rpc) -> TokenStream {
    let vis = &service.item.vis;
    let ident = &rpc.ident;
    let arguments = client_arguments(rpc);
    let handle = reply_handle(service, rpc);
    let full_name = format!("{}.{}", service.name, rpc.method);
    let idempotent = rpc.idempotent;
    let args = match rpc.args.as_slice() {
        [(name, _)] => quote!(&#name),
        args => {
            let names = args.iter().map(|(name, _)| name);
            quote!(&(#(#names,)*))
        }
    };
    let summary = summary(service, rpc);
    quote! {
        #[doc = #summary]
        #[inline]
        #vis fn #ident(self, #arguments) -> #handle {
            let mut __squall_options = self.options;
            __squall_options.idempotent |= #idempotent;
            self.client.go_with(#full_name, #args, __squall_options)
        }
    }
}

fn summary(service: &Service, rpc: &Rpc) -> String {
    let idempotent = if rpc.idempotent {
        "declared idempotent: retries and hedges may re-send it"
    } else {
        "not idempotent: never re-sent once it may have run"
    };
    format!(
        "\n\nCalls `{}.{}` ({idempotent}).",
        service.name, rpc.method
    )
}
