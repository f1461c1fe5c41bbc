//! A serde `Deserializer` adapter that bounds how deeply a value may nest.
//!
//! Derived `Deserialize` impls recurse once per level of the value: a recursive
//! argument type (a tree, a filter, an AST) fed a body nested 40,000 deep
//! recurses 40,000 times and overflows the task's stack, which aborts the whole
//! process. rmp-serde counts depth only for arrays, maps and ext values (not
//! enums, newtypes or options) and serde_json only for arrays, maps and enums, so
//! neither codec alone keeps every type safe. A type such as
//! `struct T(Option<Box<T>>)` even recurses forever on a one-byte body, because
//! an option and a newtype consume no input.
//!
//! [`DepthLimited`] wraps any `Deserializer` and every access object it hands
//! out, and charges one level each time a value is nested inside another: a
//! sequence element, a map key or value, an enum variant's payload, the inner
//! value of a newtype or a `Some`. Past the limit it fails with the codec's own
//! error, which the payload codec reports as `InvalidArgument`. Stack use is
//! then bounded by the limit, whatever the body, and the limit is checked before
//! the level is entered, so no input reaches deeper than it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// The nesting depth, in steps, decoders accept by default. Common recursive
/// shapes cost one or two steps a level (a struct through an `Option<Box<_>>`
/// field costs two: the field and the `Some`), so this admits at least 128
/// levels, the bound serde_json already puts on JSON brackets. Yet it is shallow
/// enough for an unoptimised build to decode within a tokio worker's 2 MiB
/// stack: about 5.7 KiB a level for a one-field struct, so ≈ 0.75 MiB at the limit.
pub const DECODE_DEPTH_MAX_DEFAULT: usize = 256;

/// Wraps a `Deserializer` so that values nested more than `depth_remaining`
/// levels fail instead of recursing further.
#[derive(Debug)]
pub struct DepthLimited<D> {
    /// The real deserializer.
    inner: D,
    /// How many more levels may be entered below the value being decoded.
    depth_remaining: usize,
}

impl<D> DepthLimited<D> {
    /// Wraps `inner`, allowing values nested at most `depth_max` levels.
    pub fn new(inner: D, depth_max: usize) -> DepthLimited<D> {
        DepthLimited {
            inner,
            depth_remaining: depth_max,
        }
    }
}

/// The error for a value that nests too deeply.
#[inline]
fn too_deep<E: de::Error>() -> E {
    E::custom("value nests too deeply (a recursive type fed a deeply nested body)")
}

/// One level down from `depth_remaining`, or the error if none is left.
#[inline]
fn descend<E: de::Error>(depth_remaining: usize) -> Result<usize, E> {
    depth_remaining.checked_sub(1).ok_or_else(too_deep)
}

/// Wraps a visitor: the access objects it receives count depth too.
struct Limited<V> {
    /// The real visitor (or seed, or access object).
    inner: V,
    /// Levels left below the value this wraps.
    depth_remaining: usize,
}

impl<V> Limited<V> {
    #[inline]
    fn new(inner: V, depth_remaining: usize) -> Limited<V> {
        Limited {
            inner,
            depth_remaining,
        }
    }
}

/// Forwards `deserialize_*` methods that take only a visitor.
macro_rules! forward_visitor {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Limited::new(visitor, self.depth_remaining))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for DepthLimited<D> {
    type Error = D::Error;

    forward_visitor! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_unit_struct(name, visitor)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_tuple(len, visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Limited::new(visitor, self.depth_remaining);
        self.inner.deserialize_enum(name, variants, visitor)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A seed for a value nested one level below: checks and charges the level.
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Limited<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        let depth_remaining = descend(self.depth_remaining)?;
        self.inner
            .deserialize(DepthLimited::new(deserializer, depth_remaining))
    }
}

/// Forwards `visit_*` methods for leaf values, which nest nothing.
macro_rules! forward_leaf {
    ($($method:ident($ty:ty))*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Limited<V> {
    type Value = V::Value;

    #[inline]
    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_leaf! {
        visit_bool(bool)
        visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128)
        visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128)
        visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let depth_remaining = descend(self.depth_remaining)?;
        self.inner
            .visit_some(DepthLimited::new(deserializer, depth_remaining))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let depth_remaining = descend(self.depth_remaining)?;
        self.inner
            .visit_newtype_struct(DepthLimited::new(deserializer, depth_remaining))
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner
            .visit_seq(Limited::new(seq, self.depth_remaining))
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner
            .visit_map(Limited::new(map, self.depth_remaining))
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner
            .visit_enum(Limited::new(data, self.depth_remaining))
    }
}

/// Each element is one level below the sequence.
impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Limited<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner
            .next_element_seed(Limited::new(seed, self.depth_remaining))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Each key and each value is one level below the map.
impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Limited<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner
            .next_key_seed(Limited::new(seed, self.depth_remaining))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner
            .next_value_seed(Limited::new(seed, self.depth_remaining))
    }

    #[inline]
    fn next_entry_seed<K: DeserializeSeed<'de>, T: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: T,
    ) -> Result<Option<(K::Value, T::Value)>, A::Error> {
        self.inner.next_entry_seed(
            Limited::new(key, self.depth_remaining),
            Limited::new(value, self.depth_remaining),
        )
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The variant's name is one level below the enum; so is its payload.
impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Limited<A> {
    type Error = A::Error;
    type Variant = Limited<A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Limited<A::Variant>), A::Error> {
        let depth_remaining = self.depth_remaining;
        let (value, variant) = self
            .inner
            .variant_seed(Limited::new(seed, depth_remaining))?;
        Ok((value, Limited::new(variant, depth_remaining)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Limited<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner
            .newtype_variant_seed(Limited::new(seed, self.depth_remaining))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let depth_remaining = descend(self.depth_remaining)?;
        self.inner
            .tuple_variant(len, Limited::new(visitor, depth_remaining))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let depth_remaining = descend(self.depth_remaining)?;
        self.inner
            .struct_variant(fields, Limited::new(visitor, depth_remaining))
    }
}
