//! gRPC framing of delta ADS without tonic's codec: responses are framed from each resource's
//! shared, pre-encoded bytes ([`NamedResource::wire`]) a chunk at a time, requests are deframed
//! into one buffer per message. Nothing is kept per stream between messages.
//!
//! A gRPC message is `compressed flag (1 byte) | length (4 bytes, big endian) | message`.

use prost::Message;
use prost::bytes::{Buf, Bytes};
use prost::encoding::{encode_varint, encoded_len_varint, key_len};
use std::sync::Arc;
use tonic::Status;
use weft_proto::envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use weft_xds::NamedResource;

/// Largest accepted request (as tonic's `max_decoding_message_size` for SotW).
pub const MAX_REQUEST: usize = 64 << 20;
/// Resources at least this large are sent as their shared buffer; smaller ones are copied.
const INLINE: usize = 4096;
/// Copied bytes per chunk: what a slow reader can make weftd hold beyond the shared buffers.
const CHUNK: usize = 16 << 10;

/// A `DeltaDiscoveryResponse` to frame: the resources are shared, not copied.
#[derive(Debug)]
pub struct DeltaOut {
    pub system_version_info: String,
    pub updates: Vec<Arc<NamedResource>>,
    pub type_url: String,
    pub nonce: String,
    pub removed: Vec<Arc<str>>,
}

// DeltaDiscoveryResponse field numbers.
const SYSTEM_VERSION_INFO: u32 = 1;
const RESOURCES: u32 = 2;
const TYPE_URL: u32 = 4;
const NONCE: u32 = 5;
const REMOVED_RESOURCES: u32 = 6;

fn bytes_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_key_len(out: &mut Vec<u8>, tag: u32, len: usize) {
    encode_varint(u64::from(tag << 3 | 2), out); // wire type 2: length-delimited
    encode_varint(len as u64, out);
}

/// A proto3 string field (omitted when empty, as prost does).
fn put_string(out: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        put_key_len(out, tag, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        bytes_field_len(tag, s.len())
    }
}

impl DeltaOut {
    /// The same response as a prost message (what [`Frames`] writes, decoded).
    pub fn to_message(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: self.system_version_info.clone(),
            resources: self
                .updates
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.resource.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: self.type_url.clone(),
            removed_resources: self.removed.iter().map(|n| n.to_string()).collect(),
            nonce: self.nonce.clone(),
            ..Default::default()
        }
    }

    /// The encoded message's length (without the 5-byte gRPC prefix).
    pub fn encoded_len(&self) -> usize {
        string_len(SYSTEM_VERSION_INFO, &self.system_version_info)
            + self
                .updates
                .iter()
                .map(|r| bytes_field_len(RESOURCES, r.wire().len()))
                .sum::<usize>()
            + string_len(TYPE_URL, &self.type_url)
            + string_len(NONCE, &self.nonce)
            + self
                .removed
                .iter()
                .map(|n| bytes_field_len(REMOVED_RESOURCES, n.len()))
                .sum::<usize>()
    }
}

/// The chunks of one framed response, produced on demand, with the fields in prost's order (by
/// tag: system_version_info, resources, type_url, nonce, removed_resources).
pub struct Frames {
    out: DeltaOut,
    stage: Stage,
    /// A large resource to send as its own chunk, after the chunk holding its field header.
    shared: Option<Bytes>,
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Start,
    Update(usize),
    Nonce,
    Removed(usize),
    Done,
}

impl Frames {
    pub fn new(out: DeltaOut) -> Result<Frames, Status> {
        if u32::try_from(out.encoded_len()).is_err() {
            return Err(Status::resource_exhausted("response larger than 4 GiB"));
        }
        Ok(Frames {
            out,
            stage: Stage::Start,
            shared: None,
        })
    }
}

impl Iterator for Frames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(b) = self.shared.take() {
            return Some(b);
        }
        if self.stage == Stage::Done {
            return None;
        }
        let mut cur = Vec::with_capacity(CHUNK + INLINE);
        while cur.len() < CHUNK {
            match self.stage {
                Stage::Start => {
                    let len = self.out.encoded_len() as u32; // checked in new()
                    cur.push(0);
                    cur.extend_from_slice(&len.to_be_bytes());
                    put_string(&mut cur, SYSTEM_VERSION_INFO, &self.out.system_version_info);
                    self.stage = Stage::Update(0);
                }
                Stage::Update(i) => match self.out.updates.get(i) {
                    Some(r) => {
                        self.stage = Stage::Update(i + 1);
                        let wire = r.wire();
                        put_key_len(&mut cur, RESOURCES, wire.len());
                        if wire.len() >= INLINE {
                            self.shared = Some(wire.clone());
                            break;
                        }
                        cur.extend_from_slice(wire);
                    }
                    None => {
                        put_string(&mut cur, TYPE_URL, &self.out.type_url);
                        self.stage = Stage::Nonce;
                    }
                },
                Stage::Nonce => {
                    put_string(&mut cur, NONCE, &self.out.nonce);
                    self.stage = Stage::Removed(0);
                }
                Stage::Removed(i) => match self.out.removed.get(i) {
                    Some(n) => {
                        // Repeated: every element is written, even an empty one.
                        put_key_len(&mut cur, REMOVED_RESOURCES, n.len());
                        cur.extend_from_slice(n.as_bytes());
                        self.stage = Stage::Removed(i + 1);
                    }
                    None => {
                        self.stage = Stage::Done;
                        break;
                    }
                },
                Stage::Done => break,
            }
        }
        Some(cur.into())
    }
}

/// Splits a request body into gRPC messages.
#[derive(Default)]
pub struct Deframer {
    header: [u8; 5],
    have: usize,
    msg: Vec<u8>,
    want: usize,
}

impl Deframer {
    /// Consumes `data`; appends each completed message to `out`.
    pub fn push(&mut self, mut data: impl Buf, out: &mut Vec<Vec<u8>>) -> Result<(), Status> {
        while data.has_remaining() {
            if self.have < 5 {
                let n = (5 - self.have).min(data.remaining());
                data.copy_to_slice(&mut self.header[self.have..self.have + n]);
                self.have += n;
                if self.have < 5 {
                    break;
                }
                if self.header[0] != 0 {
                    return Err(Status::unimplemented(
                        "compressed requests are not supported",
                    ));
                }
                let [_, a, b, c, d] = self.header;
                self.want = u32::from_be_bytes([a, b, c, d]) as usize;
                if self.want > MAX_REQUEST {
                    return Err(Status::resource_exhausted(format!(
                        "request of {} bytes is larger than the limit of {MAX_REQUEST}",
                        self.want
                    )));
                }
                // Exact size up to 1 MiB; larger ones grow as their bytes arrive.
                self.msg = Vec::with_capacity(self.want.min(1 << 20));
            }
            let chunk = data.chunk();
            let n = (self.want - self.msg.len()).min(chunk.len());
            self.msg.extend_from_slice(&chunk[..n]);
            data.advance(n);
            if self.msg.len() == self.want {
                out.push(std::mem::take(&mut self.msg));
                self.have = 0;
            }
        }
        Ok(())
    }

    /// At the end of the body: an unfinished message is an error.
    pub fn finish(&self) -> Result<(), Status> {
        if self.have == 0 {
            Ok(())
        } else {
            Err(Status::internal("request stream ended inside a message"))
        }
    }
}

pub fn decode_request(msg: &[u8]) -> Result<DeltaDiscoveryRequest, Status> {
    DeltaDiscoveryRequest::decode(msg)
        .map_err(|e| Status::internal(format!("cannot decode DeltaDiscoveryRequest: {e}")))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
