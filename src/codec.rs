//! [`Codec`]: how a bridge turns messages into NATS payloads and back.

use std::convert::Infallible;
use std::error;
use std::str::Utf8Error;
use std::string::FromUtf8Error;
use std::sync::Arc;

use bytes::Bytes;

/// Turns a message into the payload of a NATS message, and a payload back into a message.
///
/// A [`Bridge`](crate::Bridge) encodes every message it exports and decodes every message it
/// imports. A payload that fails to decode is counted in
/// [`BridgeStats::decode_errors`](crate::BridgeStats::decode_errors) and skipped: it never
/// reaches the broker and never panics the bridge.
///
/// Implemented for the byte and text types a broker is likely to carry: `Vec<u8>`, `String`,
/// `Arc<[u8]>`, `Arc<str>` and [`Bytes`] (re-exported as [`syncmq::Bytes`](crate::Bytes), so
/// implementing the trait needs no extra dependency). For a structured type, implement it with
/// the serialisation of your choice.
///
/// # Examples
///
/// ```
/// use syncmq::{Bytes, Codec};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Price {
///     cents: u64,
/// }
///
/// impl Codec for Price {
///     type Error = std::num::ParseIntError;
///
///     fn encode(&self) -> Bytes {
///         Bytes::from(self.cents.to_string())
///     }
///
///     fn decode(payload: Bytes) -> Result<Self, Self::Error> {
///         let text = String::from_utf8_lossy(&payload);
///         Ok(Price { cents: text.parse()? })
///     }
/// }
///
/// let price = Price { cents: 1999 };
/// assert_eq!(Price::decode(price.encode()), Ok(price));
/// assert!(Price::decode(Bytes::from_static(b"n/a")).is_err());
/// ```
pub trait Codec: Sized {
    /// Why a payload could not be decoded.
    type Error: error::Error + Send + Sync + 'static;

    /// The payload that carries this message.
    fn encode(&self) -> Bytes;

    /// The message a payload carries.
    ///
    /// # Errors
    ///
    /// When the payload is not a valid encoding of `Self`.
    fn decode(payload: Bytes) -> Result<Self, Self::Error>;
}

/// The payload itself, shared without copying.
impl Codec for Bytes {
    type Error = Infallible;

    fn encode(&self) -> Bytes {
        self.clone()
    }

    fn decode(payload: Bytes) -> Result<Self, Self::Error> {
        Ok(payload)
    }
}

/// The payload's bytes.
impl Codec for Vec<u8> {
    type Error = Infallible;

    fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }

    fn decode(payload: Bytes) -> Result<Self, Self::Error> {
        Ok(payload.into())
    }
}

/// The payload's bytes; encoding shares them without copying.
impl Codec for Arc<[u8]> {
    type Error = Infallible;

    fn encode(&self) -> Bytes {
        Bytes::from_owner(SharedOwner(self.clone()))
    }

    fn decode(payload: Bytes) -> Result<Self, Self::Error> {
        Ok(Arc::from(&payload[..]))
    }
}

/// UTF-8 text; a payload that is not UTF-8 fails to decode.
impl Codec for String {
    type Error = FromUtf8Error;

    fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }

    fn decode(payload: Bytes) -> Result<Self, Self::Error> {
        String::from_utf8(payload.into())
    }
}

/// UTF-8 text; encoding shares it without copying, and a payload that is not UTF-8 fails to
/// decode.
impl Codec for Arc<str> {
    type Error = Utf8Error;

    fn encode(&self) -> Bytes {
        Bytes::from_owner(SharedOwner(self.clone()))
    }

    fn decode(payload: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&payload).map(Arc::from)
    }
}

/// An `Arc` of bytes or text as the owner of a [`Bytes`], which wants `AsRef<[u8]>` (and
/// `Arc<[u8]>` and `Arc<str>` do not implement it themselves).
struct SharedOwner<T: ?Sized>(Arc<T>);

impl<T: AsRef<[u8]> + ?Sized> AsRef<[u8]> for SharedOwner<T> {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Codec + Clone + PartialEq + std::fmt::Debug>(value: T) {
        let decoded = T::decode(value.encode()).ok();
        assert_eq!(decoded, Some(value));
    }

    #[test]
    fn byte_and_text_types_round_trip() {
        round_trip(Bytes::from_static(b"\x00\xffraw"));
        round_trip(vec![0u8, 1, 2, 255]);
        round_trip(Arc::<[u8]>::from(&b"shared"[..]));
        round_trip(String::from("héllo"));
        round_trip(Arc::<str>::from("wörld"));
    }

    #[test]
    fn invalid_utf8_fails_to_decode_as_text() {
        let bad = Bytes::from_static(b"\xff\xfe");
        assert!(String::decode(bad.clone()).is_err());
        assert!(<Arc<str>>::decode(bad.clone()).is_err());
        assert_eq!(Vec::<u8>::decode(bad), Ok(vec![0xff, 0xfe]));
    }

    #[test]
    fn shared_types_encode_without_copying() {
        let data: Arc<[u8]> = Arc::from(&b"payload"[..]);
        let payload = data.encode();
        assert_eq!(payload.as_ptr(), data.as_ptr());
        let text: Arc<str> = Arc::from("text");
        assert_eq!(text.encode().as_ptr(), text.as_ptr());
    }
}
