//! IPVS connection synchronisation messages (`--start-daemon`), as the
//! kernel's `ip_vs_sync.c` sends and receives them: UDP payloads, every
//! multi-byte field big-endian (reference ipvs.md 6.3 and 6.4).
//!
//! Why a wire module: a backup director installs what strangers on its
//! segment send it, so the decoder is the gate. It follows the kernel's
//! checks in the kernel's order (datagram length against the size field,
//! then the version, then each entry's type, size and version, then its
//! options) and answers with a precise reason for each, which the sync
//! thread counts. [`SyncMessage::new_checked`] validates the header; the
//! entries are then walked by [`SyncMessage::entries`], which never reads
//! past the message and never panics. [`MessageBuilder`] is the encoder the
//! master uses, over a caller's buffer (no allocation).
//!
//! Version 1 (the kernel's default, `sync_version=1`): an 8-byte header,
//! then entries of 36 (IPv4) or 72 (IPv6) bytes plus options, each entry
//! starting on a 4-byte boundary (padding counted in the message size, not
//! in the entry size). Version 0 (IPv4 only, no timeout and no fwmark): a
//! 4-byte header and 24-byte entries, optionally followed by a 24-byte
//! sequence block. A message that is not v1 (`reserved == 0`,
//! `version == 1`, `spare == 0`) is v0, as the kernel reads it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::get16;

mod field {
    use std::ops::Range;
    // v1 message header.
    pub const RESERVED: usize = 0;
    pub const SYNCID: usize = 1;
    pub const SIZE: usize = 2;
    pub const COUNT: usize = 4;
    pub const VERSION: usize = 5;
    pub const SPARE: usize = 6;
    // v0 message header: count where v1 has `reserved`.
    pub const V0_COUNT: usize = 0;

    // v1 entry.
    pub const TYPE: usize = 0;
    pub const PROTOCOL: usize = 1;
    pub const VER_SIZE: usize = 2;
    pub const FLAGS: Range<usize> = 4..8;
    pub const STATE: usize = 8;
    pub const CPORT: usize = 10;
    pub const VPORT: usize = 12;
    pub const DPORT: usize = 14;
    pub const FWMARK: Range<usize> = 16..20;
    pub const TIMEOUT: Range<usize> = 20..24;
    /// Client, virtual and destination addresses, 4 or 16 bytes each.
    pub const ADDRS: usize = 24;

    // v0 entry.
    pub const V0_PROTOCOL: usize = 1;
    pub const V0_CPORT: usize = 2;
    pub const V0_VPORT: usize = 4;
    pub const V0_DPORT: usize = 6;
    pub const V0_CADDR: Range<usize> = 8..12;
    pub const V0_VADDR: Range<usize> = 12..16;
    pub const V0_DADDR: Range<usize> = 16..20;
    pub const V0_FLAGS: usize = 20;
    pub const V0_STATE: usize = 22;
}

/// UDP port the daemons use by default.
pub const DEFAULT_PORT: u16 = 8848;
/// Multicast group of the daemons by default.
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The protocol version this module sends.
pub const VERSION: u8 = 1;

/// Length of the v1 message header.
pub const HEADER_LEN: usize = 8;
/// Length of the v0 message header.
pub const V0_HEADER_LEN: usize = 4;
/// Fixed part of an IPv4 entry.
pub const ENTRY_V4_LEN: usize = 36;
/// Fixed part of an IPv6 entry.
pub const ENTRY_V6_LEN: usize = 72;
/// A v0 entry without its sequence block.
pub const V0_ENTRY_LEN: usize = 24;
/// The sequence block (in_seq then out_seq: init_seq, delta,
/// previous_delta, each u32).
pub const SEQ_LEN: usize = 24;
/// The largest entry without options: the size of a ring record.
pub const RECORD_LEN: usize = ENTRY_V6_LEN;

/// Entry type bit: IPv6 addresses.
const TYPE_INET6: u8 = 0x01;
/// Entry size in the low 12 bits of `ver_size`, version in the high 4.
const SIZE_MASK: u16 = 0x0fff;

/// Option types (v1 entries).
pub mod option {
    pub const SEQ_DATA: u8 = 1;
    pub const PE_DATA: u8 = 2;
    pub const PE_NAME: u8 = 3;
    /// Set on an optional type: unknown ones are skipped.
    pub const F_PARAM: u8 = 0x40;
    /// Longest persistence-engine data and name.
    pub const PE_DATA_MAX: usize = 255;
    pub const PE_NAME_MAX: usize = 16;
}

/// Connection flags as the kernel sends them (ipvs.md appendix A).
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0;
    pub const LOCALNODE: u32 = 1;
    pub const TUNNEL: u32 = 2;
    pub const DROUTE: u32 = 3;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = OUT_SEQ | IN_SEQ;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a backup keeps of the flags it receives.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// Template states (the `state` field of an entry with the TEMPLATE flag).
pub mod template_state {
    pub const NONE: u16 = 0;
    pub const ASSURED: u16 = 1;
    pub const COUNT: u16 = 2;
}

/// Why a datagram is not a sync message at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than the smallest (v0) header.
    #[error("sync message shorter than its header")]
    Truncated,
    /// The size field is not the datagram's length.
    #[error("sync message size field differs from the datagram length")]
    BadSize,
}

/// Why an entry was not decoded. See [`EntryError::ends_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The entry (or the message's entry count) runs past the message.
    #[error("sync entry runs past the message")]
    Truncated,
    /// The entry type is neither IPv4 (0) nor IPv6 (bit 0).
    #[error("unknown sync entry type")]
    BadType,
    /// The entry's version bits are not 0.
    #[error("unknown sync entry version")]
    BadVersion,
    /// The entry size is smaller than its fixed part.
    #[error("sync entry shorter than its addresses")]
    BadSize,
    /// An option of length 0, past the entry, repeated, or of the wrong
    /// length.
    #[error("malformed sync entry option")]
    BadOption,
    /// A mandatory option of a type this side does not know.
    #[error("unknown mandatory sync entry option")]
    UnknownOption,
}

impl EntryError {
    /// Whether the kernel discards the rest of the message after this
    /// error (it drops only the entry for an unknown mandatory option).
    pub fn ends_message(self) -> bool {
        self != EntryError::UnknownOption
    }
}

/// Protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V0,
    V1,
}

/// One synchronised connection or template, decoded (the `Repr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol (6, 17, 132; 0 for fwmark templates).
    pub protocol: u8,
    /// Connection flags ([`flags`]); only bits 0..15 carry meaning.
    pub flags: u32,
    /// Protocol state number, or [`template_state`] for templates.
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    /// The entry's timeout in seconds (v0: 0, the receiver's own table).
    pub timeout: u32,
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    /// Sequence adjustment data, when the entry carried it.
    pub seq: Option<[u32; 6]>,
}

/// Why [`SyncConn::emit`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The three addresses are not of one family (not expressible).
    #[error("sync entry addresses of mixed families")]
    MixedFamily,
    /// The buffer is too small for the entry.
    #[error("no room for the sync entry")]
    NoRoom,
}

fn be32(b: &[u8], at: std::ops::Range<usize>) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at]);
    u32::from_be_bytes(w)
}

fn v4_at(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6_at(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

fn seq_at(b: &[u8]) -> [u32; 6] {
    std::array::from_fn(|i| be32(b, i * 4..i * 4 + 4))
}

impl SyncConn {
    /// Whether the entry is IPv6 (all three addresses are).
    pub fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    fn family(&self) -> Result<bool, EmitError> {
        let v6 = self.caddr.is_ipv6();
        if self.vaddr.is_ipv6() != v6 || self.daddr.is_ipv6() != v6 {
            return Err(EmitError::MixedFamily);
        }
        Ok(v6)
    }

    /// Bytes of the v1 entry, options included (without padding).
    pub fn entry_len(&self) -> Result<usize, EmitError> {
        let fixed = if self.family()? {
            ENTRY_V6_LEN
        } else {
            ENTRY_V4_LEN
        };
        Ok(fixed + if self.seq.is_some() { 2 + SEQ_LEN } else { 0 })
    }

    /// Writes the v1 entry at the start of `buf`; returns its length.
    /// The HASHED flag is cleared, as the kernel sends it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.entry_len()?;
        let v6 = self.is_v6();
        let b = buf.get_mut(..len).ok_or(EmitError::NoRoom)?;
        b[field::TYPE] = if v6 { TYPE_INET6 } else { 0 };
        b[field::PROTOCOL] = self.protocol;
        b[field::VER_SIZE..field::VER_SIZE + 2]
            .copy_from_slice(&(len as u16 & SIZE_MASK).to_be_bytes());
        b[field::FLAGS].copy_from_slice(&(self.flags & !flags::HASHED).to_be_bytes());
        b[field::STATE..field::STATE + 2].copy_from_slice(&self.state.to_be_bytes());
        b[field::CPORT..field::CPORT + 2].copy_from_slice(&self.cport.to_be_bytes());
        b[field::VPORT..field::VPORT + 2].copy_from_slice(&self.vport.to_be_bytes());
        b[field::DPORT..field::DPORT + 2].copy_from_slice(&self.dport.to_be_bytes());
        b[field::FWMARK].copy_from_slice(&self.fwmark.to_be_bytes());
        b[field::TIMEOUT].copy_from_slice(&self.timeout.to_be_bytes());
        let mut at = field::ADDRS;
        for a in [self.caddr, self.vaddr, self.daddr] {
            match a {
                IpAddr::V4(a) => {
                    b[at..at + 4].copy_from_slice(&a.octets());
                    at += 4;
                }
                IpAddr::V6(a) => {
                    b[at..at + 16].copy_from_slice(&a.octets());
                    at += 16;
                }
            }
        }
        if let Some(seq) = &self.seq {
            b[at] = option::SEQ_DATA;
            b[at + 1] = SEQ_LEN as u8;
            at += 2;
            for w in seq {
                b[at..at + 4].copy_from_slice(&w.to_be_bytes());
                at += 4;
            }
        }
        Ok(at)
    }

    /// Decodes one v1 entry; `b` is exactly the entry (its size field's
    /// length). Persistence-engine options are checked and skipped (UVS has
    /// no persistence engine).
    pub fn parse(b: &[u8]) -> Result<SyncConn, EntryError> {
        if b.len() < ENTRY_V4_LEN {
            return Err(EntryError::BadSize);
        }
        let ty = b[field::TYPE];
        let v6 = if ty & TYPE_INET6 != 0 {
            true
        } else if ty == 0 {
            false
        } else {
            return Err(EntryError::BadType);
        };
        let fixed = if v6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
        if b.len() < fixed {
            return Err(EntryError::BadSize);
        }
        let (caddr, vaddr, daddr) = if v6 {
            (v6_at(b, 24), v6_at(b, 40), v6_at(b, 56))
        } else {
            (v4_at(b, 24), v4_at(b, 28), v4_at(b, 32))
        };
        let mut c = SyncConn {
            protocol: b[field::PROTOCOL],
            flags: be32(b, field::FLAGS),
            state: get16(b, field::STATE),
            cport: get16(b, field::CPORT),
            vport: get16(b, field::VPORT),
            dport: get16(b, field::DPORT),
            fwmark: be32(b, field::FWMARK),
            timeout: be32(b, field::TIMEOUT),
            caddr,
            vaddr,
            daddr,
            seq: None,
        };
        let (mut pe_data, mut pe_name, mut unknown) = (false, false, false);
        let mut at = fixed;
        while at < b.len() {
            if at + 2 > b.len() {
                return Err(EntryError::BadOption);
            }
            let (ty, len) = (b[at], usize::from(b[at + 1]));
            at += 2;
            if len == 0 || at + len > b.len() {
                return Err(EntryError::BadOption);
            }
            let data = &b[at..at + len];
            match ty & !option::F_PARAM {
                option::SEQ_DATA => {
                    if len != SEQ_LEN || c.seq.is_some() {
                        return Err(EntryError::BadOption);
                    }
                    c.seq = Some(seq_at(data));
                }
                option::PE_DATA => {
                    if len > option::PE_DATA_MAX || pe_data {
                        return Err(EntryError::BadOption);
                    }
                    pe_data = true;
                }
                option::PE_NAME => {
                    if len > option::PE_NAME_MAX || pe_name {
                        return Err(EntryError::BadOption);
                    }
                    pe_name = true;
                }
                _ if ty & option::F_PARAM == 0 => unknown = true,
                _ => {}
            }
            at += len;
        }
        // The kernel reads every option before it judges an unknown
        // mandatory one (a later malformed one still ends the message).
        if unknown {
            return Err(EntryError::UnknownOption);
        }
        Ok(c)
    }

    /// Decodes one v0 entry (`b` starts at it; the sequence block follows
    /// when the flags say so). Returns the entry and its length.
    fn parse_v0(b: &[u8]) -> Result<(SyncConn, usize), EntryError> {
        if b.len() < V0_ENTRY_LEN {
            return Err(EntryError::Truncated);
        }
        let fl = u32::from(get16(b, field::V0_FLAGS));
        let (seq, len) = if fl & flags::SEQ_MASK != 0 {
            let s = b
                .get(V0_ENTRY_LEN..V0_ENTRY_LEN + SEQ_LEN)
                .ok_or(EntryError::Truncated)?;
            (Some(seq_at(s)), V0_ENTRY_LEN + SEQ_LEN)
        } else {
            (None, V0_ENTRY_LEN)
        };
        let a = |r: std::ops::Range<usize>| v4_at(b, r.start);
        Ok((
            SyncConn {
                protocol: b[field::V0_PROTOCOL],
                flags: fl,
                state: get16(b, field::V0_STATE),
                cport: get16(b, field::V0_CPORT),
                vport: get16(b, field::V0_VPORT),
                dport: get16(b, field::V0_DPORT),
                fwmark: 0,
                timeout: 0,
                caddr: a(field::V0_CADDR),
                vaddr: a(field::V0_VADDR),
                daddr: a(field::V0_DADDR),
                seq,
            },
            len,
        ))
    }
}

/// A read view of a sync message (the UDP payload).
#[derive(Debug, Clone)]
pub struct SyncMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncMessage<T> {
    /// Checks the length against the smallest header, then the size field
    /// against the datagram's length (the same field in v0 and v1).
    pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
        let b = buffer.as_ref();
        if b.len() < V0_HEADER_LEN {
            return Err(MessageError::Truncated);
        }
        if usize::from(get16(b, field::SIZE)) != b.len() {
            return Err(MessageError::BadSize);
        }
        Ok(SyncMessage { buffer })
    }

    /// v1 when `reserved`, `version` and `spare` say so; anything else is
    /// read as v0 (as the kernel does).
    pub fn version(&self) -> Version {
        let b = self.buffer.as_ref();
        if b.len() >= HEADER_LEN
            && b[field::RESERVED] == 0
            && b[field::VERSION] == VERSION
            && get16(b, field::SPARE) == 0
        {
            Version::V1
        } else {
            Version::V0
        }
    }

    /// The sender's SyncID.
    pub fn syncid(&self) -> u8 {
        self.buffer.as_ref()[field::SYNCID]
    }

    /// The size field (equal to the datagram's length).
    pub fn size(&self) -> u16 {
        get16(self.buffer.as_ref(), field::SIZE)
    }

    /// The number of entries the header announces.
    pub fn count(&self) -> u8 {
        let b = self.buffer.as_ref();
        match self.version() {
            Version::V1 => b[field::COUNT],
            Version::V0 => b[field::V0_COUNT],
        }
    }

    /// The entries in order. After an error that ends the message
    /// ([`EntryError::ends_message`]) the iterator stops.
    pub fn entries(&self) -> Entries<'_> {
        let version = self.version();
        let start = match version {
            Version::V1 => HEADER_LEN,
            Version::V0 => V0_HEADER_LEN,
        };
        Entries {
            buf: self.buffer.as_ref(),
            at: start,
            left: self.count(),
            version,
        }
    }
}

/// Iterator over the entries of a [`SyncMessage`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    buf: &'a [u8],
    at: usize,
    left: u8,
    version: Version,
}

impl Iterator for Entries<'_> {
    type Item = Result<SyncConn, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let rest = self.buf.get(self.at..).unwrap_or(&[]);
        let r = match self.version {
            Version::V0 => SyncConn::parse_v0(rest).map(|(c, len)| {
                self.at += len;
                c
            }),
            Version::V1 => self.next_v1(rest),
        };
        if let Err(e) = r {
            if e.ends_message() {
                self.left = 0;
            }
        }
        Some(r)
    }
}

impl Entries<'_> {
    fn next_v1(&mut self, rest: &[u8]) -> Result<SyncConn, EntryError> {
        if rest.len() < ENTRY_V4_LEN {
            return Err(EntryError::Truncated);
        }
        let vs = get16(rest, field::VER_SIZE);
        let size = usize::from(vs & SIZE_MASK);
        if size > rest.len() {
            return Err(EntryError::Truncated);
        }
        if vs >> 12 != 0 {
            return Err(EntryError::BadVersion);
        }
        // The next entry starts on a 4-byte boundary of the message.
        self.at += (size + 3) & !3;
        SyncConn::parse(&rest[..size])
    }
}

/// Why [`MessageBuilder::push`] did not add an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The message is full (length or 255 entries): send it and start a
    /// new one.
    #[error("sync message full")]
    Full,
    /// The entry cannot be expressed (see [`EmitError::MixedFamily`]).
    #[error("sync entry addresses of mixed families")]
    MixedFamily,
}

/// Builds a v1 message in a caller's buffer, whose length is the largest
/// message to send (`sync_maxlen`).
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: u8,
}

impl<'a> MessageBuilder<'a> {
    /// A message with no entries from `syncid`; `None` if `buf` cannot
    /// hold the header.
    pub fn new(buf: &'a mut [u8], syncid: u8) -> Option<MessageBuilder<'a>> {
        let h = buf.get_mut(..HEADER_LEN)?;
        h.copy_from_slice(&[0, syncid, 0, HEADER_LEN as u8, 0, VERSION, 0, 0]);
        Some(MessageBuilder {
            buf,
            len: HEADER_LEN,
            count: 0,
        })
    }

    /// Appends an entry (after zero padding to a 4-byte boundary).
    pub fn push(&mut self, c: &SyncConn) -> Result<(), PushError> {
        let len = c.entry_len().map_err(|_| PushError::MixedFamily)?;
        let pad = (4 - self.len % 4) % 4;
        let end = self.len + pad + len;
        if self.count == u8::MAX || end > self.buf.len() || end > usize::from(u16::MAX) {
            return Err(PushError::Full);
        }
        self.buf[self.len..self.len + pad].fill(0);
        c.emit(&mut self.buf[self.len + pad..end])
            .map_err(|_| PushError::Full)?;
        self.len = end;
        self.count += 1;
        self.buf[field::COUNT] = self.count;
        self.buf[field::SIZE..field::SIZE + 2].copy_from_slice(&(end as u16).to_be_bytes());
        Ok(())
    }

    pub fn count(&self) -> u8 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The message as it stands (header size and count are always current).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Empties the message (same SyncID) for reuse.
    pub fn clear(&mut self) {
        self.len = HEADER_LEN;
        self.count = 0;
        self.buf[field::COUNT] = 0;
        self.buf[field::SIZE..field::SIZE + 2].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
