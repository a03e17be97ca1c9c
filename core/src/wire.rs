//! Frames: who sent a message, the message, and (from replicas) a link MAC.
//!
//! ```text
//! replica frame: [0][sender u32][message][HMAC-SHA256 under key(sender, receiver)]
//! client frame:  [1][sender u64][REQUEST]   (the request carries its own authenticator)
//! ```
//! Opening a frame checks the size bound, the sender and the MAC before the
//! message reaches any protocol state.
//!
//! A replica frame's MAC covers its body, except that a PROPOSE's batch is
//! covered through its digest (SHA-256 of the batch's encoding, the value
//! WRITEs and ACCEPTs name): `[0][sender][PROPOSE][regency][instance][digest]`.
//! So a leader hashes a batch once and MACs 54 bytes per follower, and a
//! follower hashes the batch once for the MAC and its vote alike, instead of
//! a pass over the whole batch per MAC. A body with the PROPOSE tag is never
//! MACed whole, so the two forms cannot be confused.

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{hash, Crypto, Digest, Peer, DIGEST_BYTES, MAC_BYTES};
use crate::limits::{BATCH_BYTES_MAX, FRAME_BYTES_MAX};
use crate::message::{decode_message, encode_message, encoded_len_hint, ClientId, Message};
use crate::message::{TAG_PROPOSE, TAG_REPLY, TAG_REPLY_DIGEST};
use std::borrow::Cow;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the bound")]
    TooLarge(usize),
    #[error("undecodable: {0}")]
    Decode(#[from] DecodeError),
    #[error("unknown sender")]
    UnknownSender,
    #[error("bad MAC")]
    BadMac,
    #[error("client frames may carry only their own requests")]
    BadClientFrame,
}

/// Header and message, without the MAC: encoded once per broadcast.
pub fn encode_body(from: Peer, msg: &Message) -> Vec<u8> {
    encode_body_reserving(from, msg, 0)
}

/// The body in a buffer with room for `extra` more bytes (a MAC).
fn encode_body_reserving(from: Peer, msg: &Message, extra: usize) -> Vec<u8> {
    let mut w = Writer::with_capacity(CLIENT_HEADER_BYTES + encoded_len_hint(msg) + extra);
    match from {
        Peer::Replica(r) => {
            w.u8(0);
            w.u32(r);
        }
        Peer::Client(c) => {
            w.u8(1);
            w.u64(c);
        }
    }
    encode_message(&mut w, msg);
    w.finish()
}

/// Bytes of a PROPOSE body before its batch: header, tag, regency, instance.
const PROPOSE_PREFIX_BYTES: usize = REPLICA_HEADER_BYTES + 1 + 8 + 8;

/// What the link MAC of a replica frame with this body and message covers
/// (see the module's comment).
pub fn mac_input<'a>(body: &'a [u8], msg: &Message) -> Cow<'a, [u8]> {
    let is_propose = body.get(REPLICA_HEADER_BYTES) == Some(&TAG_PROPOSE);
    debug_assert_eq!(is_propose, matches!(msg, Message::Propose { .. }));
    match msg {
        Message::Propose { batch, .. } if body.len() >= PROPOSE_PREFIX_BYTES => Cow::Owned(
            propose_mac_input(&body[..PROPOSE_PREFIX_BYTES], &batch.digest()),
        ),
        _ => Cow::Borrowed(body),
    }
}

fn propose_mac_input(prefix: &[u8], digest: &Digest) -> Vec<u8> {
    let mut input = Vec::with_capacity(prefix.len() + DIGEST_BYTES);
    input.extend_from_slice(prefix);
    input.extend_from_slice(digest);
    input
}

/// Appends the link MAC for `to` over `input` (`mac_input` of the body; a
/// broadcast computes it once). Client bodies carry no link MAC.
pub fn seal(body: &[u8], input: &[u8], to: Peer, crypto: &dyn Crypto) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + MAC_BYTES);
    frame.extend_from_slice(body);
    if body.first() == Some(&0) {
        frame.extend_from_slice(&crypto.mac(to, input));
    }
    frame
}

/// One frame for one receiver: encoded in place, MAC appended, no copy.
pub fn encode_frame(from: Peer, to: Peer, msg: &Message, crypto: &dyn Crypto) -> Vec<u8> {
    let mut frame = encode_body_reserving(from, msg, MAC_BYTES);
    if let Peer::Replica(_) = from {
        let tag = crypto.mac(to, &mac_input(&frame, msg));
        frame.extend_from_slice(&tag);
    }
    frame
}

fn split_sender(frame: &[u8], n: usize) -> Result<(Peer, Reader<'_>, usize), FrameError> {
    if frame.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(frame.len()));
    }
    let mut r = Reader::new(frame);
    match r.u8()? {
        0 => {
            let id = r.u32()?;
            if id as usize >= n {
                return Err(FrameError::UnknownSender);
            }
            if frame.len() < 5 + MAC_BYTES {
                return Err(FrameError::Decode(DecodeError::Truncated));
            }
            let body_len = frame.len() - MAC_BYTES;
            Ok((
                Peer::Replica(id),
                Reader::new(&frame[5..body_len]),
                body_len,
            ))
        }
        1 => {
            let id = r.u64()?;
            Ok((Peer::Client(id), r, frame.len()))
        }
        t => Err(DecodeError::BadTag(t).into()),
    }
}

/// Authenticates and decodes a frame addressed to the owner of `crypto`.
pub fn open(frame: &[u8], n: usize, crypto: &dyn Crypto) -> Result<(Peer, Message), FrameError> {
    let (from, mut r, body_len) = split_sender(frame, n)?;
    if let Peer::Replica(_) = from {
        let body = &frame[..body_len];
        let mut tag = [0u8; MAC_BYTES];
        tag.copy_from_slice(&frame[body_len..]);
        if body.get(REPLICA_HEADER_BYTES) == Some(&TAG_PROPOSE) {
            return open_propose(from, body, r, &tag, crypto);
        }
        if !crypto.verify_mac(from, body, &tag) {
            return Err(FrameError::BadMac);
        }
    }
    let msg = decode_message(&mut r)?;
    r.finish()?;
    if let Peer::Client(c) = from {
        match &msg {
            Message::Request(req) if req.client == c => {}
            _ => return Err(FrameError::BadClientFrame),
        }
    }
    Ok((from, msg))
}

/// A PROPOSE from a replica: its batch is the rest of the body (decoding
/// must consume it exactly), so the batch is hashed and the MAC checked over
/// the prefix and that digest before anything is decoded; the decoded batch
/// then keeps the digest. The encoding is canonical (fixed-width integers,
/// checked tags and lengths, `Replier`'s one-to-one wire form), so the bytes
/// received are exactly what encoding the decoded batch would give.
fn open_propose(
    from: Peer,
    body: &[u8],
    mut r: Reader<'_>,
    tag: &[u8; MAC_BYTES],
    crypto: &dyn Crypto,
) -> Result<(Peer, Message), FrameError> {
    let batch_bytes = body
        .get(PROPOSE_PREFIX_BYTES..)
        .ok_or(DecodeError::Truncated)?;
    if batch_bytes.len() > BATCH_BYTES_MAX {
        return Err(DecodeError::TooLong {
            what: "batch bytes",
            len: batch_bytes.len(),
            max: BATCH_BYTES_MAX,
        }
        .into());
    }
    let digest = hash(batch_bytes);
    let input = propose_mac_input(&body[..PROPOSE_PREFIX_BYTES], &digest);
    if !crypto.verify_mac(from, &input, tag) {
        return Err(FrameError::BadMac);
    }
    let msg = decode_message(&mut r)?;
    r.finish()?;
    if let Message::Propose { batch, .. } = &msg {
        batch.preset_digest(digest);
    }
    Ok((from, msg))
}

/// The message's kind tag (its first byte after the header), read without
/// decoding anything: lets a caller skip frames it has no use for.
pub fn message_tag(frame: &[u8]) -> Option<u8> {
    match frame.first()? {
        0 => frame.get(REPLICA_HEADER_BYTES).copied(),
        1 => frame.get(CLIENT_HEADER_BYTES).copied(),
        _ => None,
    }
}

/// The client a replica's REPLY or REPLY-DIGEST frame answers, read without
/// decoding or authenticating anything: lets a host that multiplexes many
/// clients hand the frame to the right one (which then opens it).
pub fn reply_client(frame: &[u8]) -> Option<ClientId> {
    reply_id(frame).map(|(client, _)| client)
}

/// The (client, sequence number) a REPLY or REPLY-DIGEST frame claims to
/// answer, unauthenticated: enough to drop a reply nobody waits for unopened.
pub fn reply_id(frame: &[u8]) -> Option<(ClientId, u64)> {
    if frame.first() != Some(&0) {
        return None;
    }
    let tag = *frame.get(REPLICA_HEADER_BYTES)?;
    if tag != TAG_REPLY && tag != TAG_REPLY_DIGEST {
        return None;
    }
    let start = REPLICA_HEADER_BYTES + 1;
    let id = frame.get(start..start + 16)?;
    let (client, seq) = id.split_at(8);
    Some((
        u64::from_le_bytes(client.try_into().ok()?),
        u64::from_le_bytes(seq.try_into().ok()?),
    ))
}

/// Header lengths: kind byte and sender id.
pub const REPLICA_HEADER_BYTES: usize = 1 + 4;
pub const CLIENT_HEADER_BYTES: usize = 1 + 8;

/// Decodes without checking the MAC: for the harness's Byzantine mutator and
/// tracing, never for protocol input.
pub fn peek(frame: &[u8], n: usize) -> Result<(Peer, Message), FrameError> {
    let (from, mut r, _) = split_sender(frame, n)?;
    let msg = decode_message(&mut r)?;
    r.finish()?;
    Ok((from, msg))
}
