//! Payload codecs: how arguments and replies become bytes. Chosen per client and
//! overridable per call; a server answers in the codec it was asked in.

mod depth;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

pub use depth::{DepthLimited, DECODE_DEPTH_MAX_DEFAULT};

use crate::protocol::CodecId;
use crate::status::Status;

/// The first allocation for an encoded payload, in bytes.
const ENCODE_CAPACITY_INITIAL: usize = 256;

/// A payload codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Codec {
    /// JSON via serde_json: readable, slower, larger.
    Json,
    /// MessagePack via rmp-serde, structs encoded as maps (field names kept, so
    /// adding a field stays compatible): compact and fast. The default.
    #[default]
    MessagePack,
}

impl Codec {
    /// The codec's id on the wire.
    pub fn id(self) -> CodecId {
        match self {
            Codec::Json => CodecId::Json,
            Codec::MessagePack => CodecId::MessagePack,
        }
    }

    /// The codec for a wire id; `None` for [`CodecId::None`].
    pub fn from_id(id: CodecId) -> Option<Codec> {
        match id {
            CodecId::Json => Some(Codec::Json),
            CodecId::MessagePack => Some(Codec::MessagePack),
            CodecId::None => None,
        }
    }

    /// Encodes `value`. A failure is `Internal`: the value cannot be represented.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, Status> {
        // Room for small payloads with their framing (a 64-byte blob is 66 bytes
        // of MessagePack) so the common case does not grow the buffer; larger
        // ones double from here.
        let mut out = BytesMut::with_capacity(ENCODE_CAPACITY_INITIAL).writer();
        let result = match self {
            Codec::Json => serde_json::to_writer(&mut out, value).map_err(|e| e.to_string()),
            Codec::MessagePack => {
                rmp_serde::encode::write_named(&mut out, value).map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(()) => Ok(out.into_inner().freeze()),
            Err(error) => Err(Status::internal(format!("{self:?} encode failed: {error}"))),
        }
    }

    /// Decodes a `T`, nested at most [`DECODE_DEPTH_MAX_DEFAULT`] levels. A
    /// failure is `InvalidArgument` (the bytes do not describe a `T`, or nest
    /// deeper than the limit).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, Status> {
        self.decode_with_depth_max(bytes, DECODE_DEPTH_MAX_DEFAULT)
    }

    /// Decodes a `T` nested at most `depth_max` levels (see [`DepthLimited`]
    /// for what counts as a level). The limit is what keeps a body from the
    /// network off the end of the stack: derived `Deserialize` impls recurse
    /// once per level, and neither codec bounds every kind of level itself.
    pub fn decode_with_depth_max<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        depth_max: usize,
    ) -> Result<T, Status> {
        let result = match self {
            Codec::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                T::deserialize(DepthLimited::new(&mut deserializer, depth_max))
                    .and_then(|value| deserializer.end().map(|()| value))
                    .map_err(|e| e.to_string())
            }
            Codec::MessagePack => {
                let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
                T::deserialize(DepthLimited::new(&mut deserializer, depth_max))
                    .map_err(|e| e.to_string())
            }
        };
        result.map_err(|error| Status::invalid_argument(format!("{self:?} decode failed: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Args {
        a: i64,
        b: i64,
    }

    #[test]
    fn both_codecs_round_trip_a_struct() {
        for codec in [Codec::Json, Codec::MessagePack] {
            let bytes = codec.encode(&Args { a: 7, b: -8 }).unwrap();
            assert_eq!(codec.decode::<Args>(&bytes).unwrap(), Args { a: 7, b: -8 });
            assert_eq!(Codec::from_id(codec.id()), Some(codec));
        }
    }

    #[test]
    fn undecodable_bytes_are_invalid_argument() {
        let error = Codec::Json.decode::<Args>(b"{\"a\":1}").unwrap_err();
        assert_eq!(error.code(), crate::Code::InvalidArgument);
        let error = Codec::MessagePack.decode::<Args>(&[0xc1]).unwrap_err();
        assert_eq!(error.code(), crate::Code::InvalidArgument);
    }

    /// An expression tree: every kind of enum variant, recursive.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Expr {
        Lit(i64),
        Neg(Box<Expr>),
        Add(Box<Expr>, Box<Expr>),
        Wrap { inner: Box<Expr> },
    }

    /// A struct that nests through an optional field.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Node {
        child: Option<Box<Node>>,
    }

    /// Nests through sequences.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Tree(Vec<Tree>);

    /// Nests through maps.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Dict(std::collections::BTreeMap<String, Dict>);

    /// Nests through an untagged enum, which serde buffers as `Content`.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum Loose {
        Leaf(i64),
        Many(Vec<Loose>),
    }

    /// A newtype around an option: neither consumes input, so any non-null
    /// body recurses without end unless the decoder counts these levels.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Endless(Option<Box<Endless>>);

    /// The same through `#[serde(transparent)]`, which skips the newtype path.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(transparent)]
    struct EndlessTransparent(Option<Box<EndlessTransparent>>);

    /// Far past any stack: 100,000 levels.
    const DEPTH_HOSTILE: usize = 100_000;

    /// `open` × depth, then `leaf`, then `close` × depth.
    fn nest(open: &[u8], leaf: &[u8], close: &[u8], depth: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity((open.len() + close.len()) * depth + leaf.len());
        for _ in 0..depth {
            body.extend_from_slice(open);
        }
        body.extend_from_slice(leaf);
        for _ in 0..depth {
            body.extend_from_slice(close);
        }
        body
    }

    /// A MessagePack map of one entry whose key is `key`: the prefix of its value.
    fn msgpack_entry(key: &str) -> Vec<u8> {
        assert!(key.len() < 32, "fixstr keys only");
        let mut prefix = vec![0x81, 0xa0 | key.len() as u8];
        prefix.extend_from_slice(key.as_bytes());
        prefix
    }

    fn assert_invalid_argument<T: DeserializeOwned + std::fmt::Debug>(
        codec: Codec,
        body: &[u8],
        what: &str,
    ) {
        match codec.decode::<T>(body) {
            Ok(value) => panic!("{codec:?} {what}: decoded {value:?}, expected an error"),
            Err(status) => assert_eq!(
                status.code(),
                crate::Code::InvalidArgument,
                "{codec:?} {what}: {status}"
            ),
        }
    }

    #[test]
    fn enum_variants_nested_past_any_stack_are_invalid_argument() {
        // Proves finding 2 of issue 9 is gone: `{"Neg":{"Neg":…}}` 100,000 deep
        // (newtype variants), and the same through tuple and struct variants,
        // fail with InvalidArgument instead of overflowing the stack.
        let n = DEPTH_HOSTILE;
        let leaf_json = br#"{"Lit":1}"#;
        let leaf_msgpack = [msgpack_entry("Lit"), vec![0x01]].concat();
        let cases: [(&str, Vec<u8>, Vec<u8>); 3] = [
            (
                "newtype variants",
                nest(br#"{"Neg":"#, leaf_json, b"}", n),
                nest(&msgpack_entry("Neg"), &leaf_msgpack, b"", n),
            ),
            (
                "tuple variants",
                nest(br#"{"Add":["#, leaf_json, br#",{"Lit":2}]}"#, n),
                nest(
                    &[msgpack_entry("Add"), vec![0x92]].concat(),
                    &leaf_msgpack,
                    &leaf_msgpack,
                    n,
                ),
            ),
            (
                "struct variants",
                nest(br#"{"Wrap":{"inner":"#, leaf_json, b"}}", n),
                nest(
                    &[msgpack_entry("Wrap"), msgpack_entry("inner")].concat(),
                    &leaf_msgpack,
                    b"",
                    n,
                ),
            ),
        ];
        for (what, json, msgpack) in cases {
            assert_invalid_argument::<Expr>(Codec::Json, &json, what);
            assert_invalid_argument::<Expr>(Codec::MessagePack, &msgpack, what);
        }
    }

    #[test]
    fn structs_options_sequences_and_maps_nested_past_any_stack_are_invalid_argument() {
        // Proves every other serde construct is bounded too, in both codecs.
        let n = DEPTH_HOSTILE;
        let node_msgpack = msgpack_entry("child");
        let dict_msgpack = msgpack_entry("k");
        assert_invalid_argument::<Node>(
            Codec::Json,
            &nest(br#"{"child":"#, b"null", b"}", n),
            "structs",
        );
        assert_invalid_argument::<Node>(
            Codec::MessagePack,
            &nest(&node_msgpack, &[0xc0], b"", n),
            "structs",
        );
        assert_invalid_argument::<Tree>(Codec::Json, &nest(b"[", b"", b"]", n), "sequences");
        assert_invalid_argument::<Tree>(
            Codec::MessagePack,
            &nest(&[0x91], &[0x90], b"", n),
            "sequences",
        );
        assert_invalid_argument::<Dict>(Codec::Json, &nest(br#"{"k":"#, b"{}", b"}", n), "maps");
        assert_invalid_argument::<Dict>(
            Codec::MessagePack,
            &nest(&dict_msgpack, &[0x80], b"", n),
            "maps",
        );
        assert_invalid_argument::<Loose>(Codec::Json, &nest(b"[", b"1", b"]", n), "untagged enums");
        assert_invalid_argument::<Loose>(
            Codec::MessagePack,
            &nest(&[0x91], &[0x01], b"", n),
            "untagged enums",
        );
        // Ignored fields are skipped through the same wrapper.
        let ignored_json = [
            br#"{"child":null,"extra":"#.as_slice(),
            &nest(b"[", b"", b"]", n),
            b"}",
        ]
        .concat();
        let ignored_msgpack = [
            &[0x82][..],
            &node_msgpack[1..],
            &[0xc0, 0xa5],
            b"extra",
            &nest(&[0x91], &[0x90], b"", n),
        ]
        .concat();
        // serde_json skips them without recursing, so JSON may even accept one.
        let skipped = Codec::Json.decode::<Node>(&ignored_json);
        assert!(skipped.is_ok(), "serde_json skips iteratively: {skipped:?}");
        assert_invalid_argument::<Node>(Codec::MessagePack, &ignored_msgpack, "an ignored field");
    }

    #[test]
    fn a_newtype_of_an_option_fed_one_byte_is_invalid_argument_not_endless_recursion() {
        // Proves levels that consume no input are counted: without that, the
        // one-byte body `5` recurses through newtype and `Some` until the stack
        // ends, however small the frame limit.
        for (codec, body) in [(Codec::Json, &b"5"[..]), (Codec::MessagePack, &[0x05][..])] {
            assert_invalid_argument::<Endless>(codec, body, "newtype of option");
            assert_invalid_argument::<EndlessTransparent>(codec, body, "transparent option");
        }
    }

    #[test]
    fn values_nested_a_hundred_deep_still_decode_in_both_codecs() {
        // Proves the limit leaves room for legitimate recursive values: 100
        // nested values of each shape round-trip. A struct level through an
        // optional field costs two steps (the field and the `Some`), as does a
        // newtype around a sequence or a map.
        let depth = 100;
        let mut expr = Expr::Lit(1);
        let mut node = Node { child: None };
        let mut tree = Tree(Vec::new());
        let mut dict = Dict(Default::default());
        for _ in 0..depth {
            expr = Expr::Neg(Box::new(expr));
            node = Node {
                child: Some(Box::new(node)),
            };
            tree = Tree(vec![tree]);
            dict = Dict([("k".to_owned(), dict)].into());
        }
        for codec in [Codec::Json, Codec::MessagePack] {
            let decoded: Expr = codec.decode(&codec.encode(&expr).unwrap()).unwrap();
            assert_eq!(decoded, expr, "{codec:?}");
            let decoded: Node = codec.decode(&codec.encode(&node).unwrap()).unwrap();
            assert_eq!(decoded, node, "{codec:?}");
            let decoded: Tree = codec.decode(&codec.encode(&tree).unwrap()).unwrap();
            assert_eq!(decoded, tree, "{codec:?}");
            let decoded: Dict = codec.decode(&codec.encode(&dict).unwrap()).unwrap();
            assert_eq!(decoded, dict, "{codec:?}");
        }
        // Tuple and struct variants cost two JSON brackets a level, past
        // serde_json's own limit of 128; MessagePack has no brackets to count.
        let mut mixed = Expr::Lit(1);
        for level in 0..depth {
            mixed = match level % 3 {
                0 => Expr::Neg(Box::new(mixed)),
                1 => Expr::Add(Box::new(mixed), Box::new(Expr::Lit(2))),
                _ => Expr::Wrap {
                    inner: Box::new(mixed),
                },
            };
        }
        let codec = Codec::MessagePack;
        let decoded: Expr = codec.decode(&codec.encode(&mixed).unwrap()).unwrap();
        assert_eq!(decoded, mixed);
    }

    #[test]
    fn the_depth_limit_is_exact_and_configurable() {
        // Proves the boundary on both sides: `Neg` × n around `Lit(1)` nests
        // n + 1 steps (each variant's payload is one), so it decodes with a
        // limit of n + 1 and fails with n.
        for codec in [Codec::Json, Codec::MessagePack] {
            for n in [0, 1, 5, 100] {
                let mut expr = Expr::Lit(1);
                for _ in 0..n {
                    expr = Expr::Neg(Box::new(expr));
                }
                let body = codec.encode(&expr).unwrap();
                let decoded = codec.decode_with_depth_max::<Expr>(&body, n + 1);
                assert_eq!(decoded.ok().as_ref(), Some(&expr), "{codec:?} {n}");
                let error = codec.decode_with_depth_max::<Expr>(&body, n).unwrap_err();
                assert_eq!(error.code(), crate::Code::InvalidArgument, "{codec:?} {n}");
            }
        }
    }

    /// Every serde construct in one recursive type, for the property below.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Shape {
        Leaf,
        Newtype(Box<Shape>),
        Tuple(Box<Shape>, u8),
        Struct { inner: Box<Shape> },
        Seq(Vec<Shape>),
        Map(std::collections::BTreeMap<String, Shape>),
        Opt(Option<Box<Shape>>),
        Wrapped(Wrapper),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrapper(Box<Shape>);

    /// Builds the shape whose levels, outermost first, are `levels`, and the
    /// steps [`DepthLimited`] charges for it (each level's variant payload, plus
    /// the element, field, `Some` or newtype inside it; the leaf's name is one).
    fn shape(levels: &[u8]) -> (Shape, usize) {
        let mut value = Shape::Leaf;
        let mut steps = 1;
        for level in levels.iter().rev() {
            let inner = Box::new(value);
            (value, steps) = match level % 7 {
                0 => (Shape::Newtype(inner), steps + 1),
                1 => (Shape::Tuple(inner, 7), steps + 2),
                2 => (Shape::Struct { inner }, steps + 2),
                3 => (Shape::Seq(vec![*inner]), steps + 2),
                4 => (Shape::Map([("k".to_owned(), *inner)].into()), steps + 2),
                5 => (Shape::Opt(Some(inner)), steps + 2),
                _ => (Shape::Wrapped(Wrapper(inner)), steps + 2),
            };
        }
        (value, steps)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_mix_of_constructs_decodes_exactly_when_within_the_depth_limit(
            levels in proptest::collection::vec(0u8..7, 0..300),
        ) {
            // Proves, over random mixes of every construct, that MessagePack
            // decodes a value if and only if its nesting fits the limit, and that
            // JSON (which serde_json also bounds, by brackets) never accepts one
            // past it and never returns anything but the value or InvalidArgument.
            let (value, steps) = shape(&levels);
            let within = steps <= DECODE_DEPTH_MAX_DEFAULT;
            let body = Codec::MessagePack.encode(&value).unwrap();
            match Codec::MessagePack.decode::<Shape>(&body) {
                Ok(decoded) => {
                    proptest::prop_assert!(within, "{steps} steps decoded");
                    proptest::prop_assert_eq!(decoded, value);
                }
                Err(status) => {
                    proptest::prop_assert!(!within, "{steps} steps refused: {status}");
                    proptest::prop_assert_eq!(status.code(), crate::Code::InvalidArgument);
                }
            }
            let (value, steps) = shape(&levels);
            let body = Codec::Json.encode(&value).unwrap();
            match Codec::Json.decode::<Shape>(&body) {
                Ok(decoded) => {
                    proptest::prop_assert!(steps <= DECODE_DEPTH_MAX_DEFAULT);
                    proptest::prop_assert_eq!(decoded, value);
                }
                Err(status) => {
                    proptest::prop_assert_eq!(status.code(), crate::Code::InvalidArgument)
                }
            }
        }
    }
}
