//! Payload codecs: how arguments and replies become bytes. Chosen per client and
//! overridable per call; a server answers in the codec it was asked in.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

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

    /// Decodes a `T`. A failure is `InvalidArgument` (the bytes do not describe a `T`).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, Status> {
        let result = match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
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
}
