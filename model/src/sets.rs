//! ipset-compatible sets, as configuration: the set types and their create
//! options ([`Header`]), the family-neutral element ([`Elem`]), the
//! operations ipset has on sets ([`SetOp`], [`Cmd`]) with the kernel's
//! refusals as libipset words them ([`SetError`]), and the checks an
//! element or an `add`'s options need against a set's header.
//!
//! Why in the model: `uvsset` (the ipset grammar) produces these operations
//! and the director's set store executes them; the store's sets are also
//! the structures workers look packets up in (one hash map per set, shared
//! with the snapshots until changed), so the store and the lookup stay in
//! the engine (`dataplane::sets`), which re-exports these names.

use std::net::{IpAddr, Ipv4Addr};

/// `expires` of an element without timeout.
pub const NO_EXPIRY: u32 = 0;

/// Address family of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }

    /// Host prefix length.
    #[inline]
    pub fn bits(self) -> u8 {
        match self {
            Family::Inet => 32,
            Family::Inet6 => 128,
        }
    }

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }
}

/// The set types UVS implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetKind {
    HashIp,
    HashNet,
    HashIpPort,
    HashNetPort,
    HashIpPortIp,
    HashIpPortNet,
    BitmapPort,
    ListSet,
}

impl SetKind {
    pub const ALL: [SetKind; 8] = [
        SetKind::HashIp,
        SetKind::HashNet,
        SetKind::HashIpPort,
        SetKind::HashNetPort,
        SetKind::HashIpPortIp,
        SetKind::HashIpPortNet,
        SetKind::BitmapPort,
        SetKind::ListSet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SetKind::HashIp => "hash:ip",
            SetKind::HashNet => "hash:net",
            SetKind::HashIpPort => "hash:ip,port",
            SetKind::HashNetPort => "hash:net,port",
            SetKind::HashIpPortIp => "hash:ip,port,ip",
            SetKind::HashIpPortNet => "hash:ip,port,net",
            SetKind::BitmapPort => "bitmap:port",
            SetKind::ListSet => "list:set",
        }
    }

    /// The type named `s` (ipset also accepts the old names `iphash`, ...).
    pub fn parse(s: &str) -> Option<SetKind> {
        let k = match s {
            "hash:ip" | "iphash" => SetKind::HashIp,
            "hash:net" | "nethash" => SetKind::HashNet,
            "hash:ip,port" | "ipporthash" => SetKind::HashIpPort,
            "hash:net,port" => SetKind::HashNetPort,
            "hash:ip,port,ip" | "ipportiphash" => SetKind::HashIpPortIp,
            "hash:ip,port,net" | "ipportnethash" => SetKind::HashIpPortNet,
            "bitmap:port" | "portmap" => SetKind::BitmapPort,
            "list:set" | "setlist" => SetKind::ListSet,
            _ => return None,
        };
        Some(k)
    }

    /// Number of dimensions (the `src,dst` flags it needs).
    #[inline]
    pub fn dims(self) -> usize {
        match self {
            SetKind::HashIp | SetKind::HashNet | SetKind::BitmapPort | SetKind::ListSet => 1,
            SetKind::HashIpPort | SetKind::HashNetPort => 2,
            SetKind::HashIpPortIp | SetKind::HashIpPortNet => 3,
        }
    }

    /// Whether the first address is a network (prefix length per element).
    #[inline]
    pub fn net_a(self) -> bool {
        matches!(self, SetKind::HashNet | SetKind::HashNetPort)
    }

    /// Whether the third dimension is a network.
    #[inline]
    pub fn net_b(self) -> bool {
        self == SetKind::HashIpPortNet
    }

    /// Whether elements may carry `nomatch`.
    #[inline]
    pub fn has_nomatch(self) -> bool {
        self.net_a() || self.net_b()
    }

    #[inline]
    pub fn has_port(self) -> bool {
        !matches!(
            self,
            SetKind::HashIp | SetKind::HashNet | SetKind::BitmapPort | SetKind::ListSet
        )
    }

    #[inline]
    pub fn has_b(self) -> bool {
        self.dims() == 3
    }

    #[inline]
    pub fn is_hash(self) -> bool {
        !matches!(self, SetKind::BitmapPort | SetKind::ListSet)
    }

    /// The kernel module revision `ipset list` shows (Linux 6.x).
    pub fn revision(self) -> u8 {
        match self {
            SetKind::HashIp => 6,
            SetKind::HashNet => 7,
            SetKind::HashIpPort => 6,
            SetKind::HashNetPort => 7,
            SetKind::HashIpPortIp => 5,
            SetKind::HashIpPortNet => 7,
            SetKind::BitmapPort => 3,
            SetKind::ListSet => 3,
        }
    }
}

/// A set's create options (what `list` shows in `Header:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: SetKind,
    pub family: Family,
    pub hashsize: u32,
    pub maxelem: u32,
    /// `hash:ip` only: stored addresses are masked to this prefix.
    pub netmask: Option<u8>,
    /// Default timeout of elements; `Some` makes the set a timeout set.
    pub timeout: Option<u32>,
    pub counters: bool,
    pub comment: bool,
    pub forceadd: bool,
    pub bucketsize: u32,
    pub initval: u32,
    /// `bitmap:port`: first and last port.
    pub range: (u16, u16),
    /// `list:set`: `size` (kept for display).
    pub size: u32,
}

impl Header {
    pub fn new(kind: SetKind) -> Header {
        Header {
            kind,
            family: Family::Inet,
            hashsize: 1024,
            maxelem: 65536,
            netmask: None,
            timeout: None,
            counters: false,
            comment: false,
            forceadd: false,
            bucketsize: 12,
            initval: 0,
            range: (0, 0),
            size: 8,
        }
    }

    /// The prefix length stored for a host of this set.
    #[inline]
    pub fn host_cidr(&self) -> u8 {
        self.netmask.unwrap_or(self.family.bits())
    }
}

/// One element of a hash or bitmap set, family-neutral (what the control
/// plane adds, deletes, lists). Fields a type does not use are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Elem {
    pub a: IpAddr,
    pub ca: u8,
    pub proto: u8,
    pub port: u16,
    pub b: IpAddr,
    pub cb: u8,
}

impl Elem {
    pub fn new(a: IpAddr, ca: u8) -> Elem {
        Elem {
            a,
            ca,
            proto: 0,
            port: 0,
            b: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            cb: 0,
        }
    }
}

/// The kernel's default limit on the number of sets (`max_sets`).
pub const MAX_SETS: usize = 256;

/// Longest set name (IPSET_MAXNAMELEN - 1).
pub const MAX_NAME: usize = 31;

/// What a refused set command prints after `ipset v7.x: `: the kernel's
/// errors as libipset words them (lib/errcode.c).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("The set with the given name does not exist")]
    NoSet,
    #[error("Set cannot be created: set with the same name already exists")]
    Exists,
    #[error("Kernel error received: maximal number of sets reached, cannot create more.")]
    MaxSets,
    #[error("Set cannot be destroyed: it is in use by a kernel component")]
    Busy,
    #[error("Set cannot be renamed: a set with the new name already exists")]
    RenameExists,
    #[error("Set cannot be renamed: it is in use by another system")]
    RenameReferenced,
    #[error("Sets cannot be swapped: the second set does not exist")]
    SwapNoSecond,
    #[error("The sets cannot be swapped: their type does not match")]
    SwapType,
    #[error("Element cannot be added to the set: it's already added")]
    ElemExists,
    #[error("Element cannot be deleted from the set: it's not added")]
    ElemMissing,
    #[error("Hash is full, cannot add more elements")]
    HashFull,
    #[error("Element is out of the range of the set")]
    OutOfRange,
    #[error("Timeout cannot be used: set was created without timeout support")]
    NoTimeout,
    #[error("Packet/byte counters cannot be used: set was created without counter support")]
    NoCounters,
    #[error("Comment cannot be used: set was created without comment support")]
    NoComment,
    #[error("An IPv4 address is expected, but not received")]
    WantIpv4,
    #[error("An IPv6 address is expected, but not received")]
    WantIpv6,
    #[error("Set to be added/deleted/tested as element does not exist.")]
    MemberMissing,
    #[error("Sets with list:set type cannot be added to the set.")]
    Loop,
    #[error("The set to which you referred with 'before' or 'after' does not exist.")]
    NameRef,
    #[error("The set to which you referred with 'before' or 'after' is not added to the set.")]
    RefNotMember,
    #[error("The set is full, more elements cannot be added.")]
    ListFull,
    /// Anything else, worded by the caller.
    #[error("{0}")]
    Other(String),
}

/// Per-element options of `add` (and of restore's `add` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddOpts {
    pub timeout: Option<u32>,
    pub nomatch: bool,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub comment: Option<String>,
}

/// What an add/del/test names, already checked against the set's type
/// (ranges expanded into elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Elems(Vec<Elem>),
    /// A `list:set` member, optionally `before`/`after` another member
    /// (`true` = before).
    Member {
        name: String,
        at: Option<(bool, String)>,
    },
}

/// One set command, as ipset's grammar produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    Create {
        name: String,
        header: Header,
    },
    Add {
        name: String,
        entry: Entry,
        opts: AddOpts,
    },
    Del {
        name: String,
        entry: Entry,
    },
    Destroy(Option<String>),
    Flush(Option<String>),
    Rename(String, String),
    Swap(String, String),
}

/// A set command ready to run: a change, or a test (which changes nothing
/// and answers whether the entry is in the set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Change(SetOp),
    Test {
        name: String,
        entry: Entry,
        nomatch: bool,
    },
}

/// Which of ipset's element commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adt {
    Add,
    Del,
    Test,
}

impl Adt {
    /// The command's name, as ipset's messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Adt::Add => "add",
            Adt::Del => "del",
            Adt::Test => "test",
        }
    }
}

/// An `add`, `del` or `test` as typed: the set's name, the entry and the
/// words after it. Why not an [`Entry`] at once: an entry's syntax depends
/// on the type of the set it names (`198.18.0.0/24` is one element of a
/// `hash:net` and 256 of a `hash:ip`; a `list:set` entry is a set's name,
/// `before`/`after` only exist there, `nomatch` only where the type has
/// it), and the type is known only against the current sets.
/// [`TypedAdt::resolve`] turns it into the [`Cmd`] it stands for once the
/// set's header is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedAdt {
    pub adt: Adt,
    pub name: String,
    pub text: String,
    pub args: Vec<String>,
}

impl TypedAdt {
    /// The command this stands for in a set with `header`: `read` is the
    /// grammar's entry syntax (it reads [`TypedAdt::text`] and
    /// [`TypedAdt::args`] for that header, with the grammar's own errors).
    pub fn resolve<E>(
        &self,
        header: &Header,
        read: impl FnOnce(&TypedAdt, &Header) -> Result<(Entry, AddOpts), E>,
    ) -> Result<Cmd, E> {
        let (entry, opts) = read(self, header)?;
        let name = self.name.clone();
        Ok(match self.adt {
            Adt::Add => Cmd::Change(SetOp::Add { name, entry, opts }),
            Adt::Del => Cmd::Change(SetOp::Del { name, entry }),
            Adt::Test => Cmd::Test {
                name,
                entry,
                nomatch: opts.nomatch,
            },
        })
    }
}

/// A set command as a grammar produces it: ready to run, or an element
/// command that is read against its set's type first ([`TypedAdt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Ready(Cmd),
    Typed(TypedAdt),
}

impl Parsed {
    /// A change, ready to run.
    pub fn change(op: SetOp) -> Parsed {
        Parsed::Ready(Cmd::Change(op))
    }
}

/// Where a restore stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError {
    pub line: usize,
    pub error: SetError,
}

/// Checks an element's family and range against the set.
pub fn check_elem(h: &Header, e: &Elem) -> Result<(), SetError> {
    if h.kind == SetKind::BitmapPort {
        if e.port < h.range.0 || e.port > h.range.1 {
            return Err(SetError::OutOfRange);
        }
        return Ok(());
    }
    let fam_ok = Family::of(e.a) == h.family && (!h.kind.has_b() || Family::of(e.b) == h.family);
    if !fam_ok {
        return Err(match h.family {
            Family::Inet => SetError::WantIpv4,
            Family::Inet6 => SetError::WantIpv6,
        });
    }
    Ok(())
}

/// Checks an `add`'s options against the set's create options: timeout,
/// counters and comment need the set to support them, `nomatch` a type
/// that has it.
pub fn check_opts(h: &Header, opts: &AddOpts) -> Result<(), SetError> {
    if opts.timeout.is_some() && h.timeout.is_none() {
        return Err(SetError::NoTimeout);
    }
    if (opts.packets.is_some() || opts.bytes.is_some()) && !h.counters {
        return Err(SetError::NoCounters);
    }
    if opts.comment.is_some() && !h.comment {
        return Err(SetError::NoComment);
    }
    if opts.nomatch && !h.kind.has_nomatch() && h.kind != SetKind::ListSet {
        return Err(SetError::Other(
            "nomatch parameter is not allowed with this set type".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn elements_of_the_other_family_or_out_of_range_are_refused() {
        let v4 = Header::new(SetKind::HashIp);
        let a4 = Elem::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 32);
        let a6 = Elem::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128);
        assert_eq!(check_elem(&v4, &a4), Ok(()));
        assert_eq!(check_elem(&v4, &a6), Err(SetError::WantIpv4));
        let v6 = Header {
            family: Family::Inet6,
            ..Header::new(SetKind::HashNet)
        };
        assert_eq!(check_elem(&v6, &a4), Err(SetError::WantIpv6));
        let ports = Header {
            range: (1000, 2000),
            ..Header::new(SetKind::BitmapPort)
        };
        let mut p = a4;
        p.port = 2001;
        assert_eq!(check_elem(&ports, &p), Err(SetError::OutOfRange));
        p.port = 2000;
        assert_eq!(check_elem(&ports, &p), Ok(()));
    }

    #[test]
    fn add_options_need_the_create_options_that_allow_them() {
        let plain = Header::new(SetKind::HashIp);
        let with = |o: AddOpts| check_opts(&plain, &o);
        assert_eq!(with(AddOpts::default()), Ok(()));
        let timeout = AddOpts {
            timeout: Some(5),
            ..AddOpts::default()
        };
        assert_eq!(with(timeout.clone()), Err(SetError::NoTimeout));
        let counted = AddOpts {
            bytes: Some(1),
            ..AddOpts::default()
        };
        assert_eq!(with(counted), Err(SetError::NoCounters));
        let comment = AddOpts {
            comment: Some("x".into()),
            ..AddOpts::default()
        };
        assert_eq!(with(comment), Err(SetError::NoComment));
        let nomatch = AddOpts {
            nomatch: true,
            ..AddOpts::default()
        };
        assert!(matches!(with(nomatch.clone()), Err(SetError::Other(_))));
        assert_eq!(check_opts(&Header::new(SetKind::HashNet), &nomatch), Ok(()));
        let timed = Header {
            timeout: Some(0),
            ..plain
        };
        assert_eq!(check_opts(&timed, &timeout), Ok(()));
    }

    #[test]
    fn a_typed_element_command_becomes_the_change_or_test_it_stands_for() {
        let typed = |adt| TypedAdt {
            adt,
            name: "s".into(),
            text: "198.18.0.1".into(),
            args: vec!["nomatch".into()],
        };
        let h = Header::new(SetKind::HashNet);
        let elem = Elem::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 32);
        let read = |t: &TypedAdt, hd: &Header| -> Result<(Entry, AddOpts), String> {
            assert_eq!((t.text.as_str(), hd.kind), ("198.18.0.1", SetKind::HashNet));
            let opts = AddOpts {
                nomatch: t.args.iter().any(|a| a == "nomatch"),
                ..AddOpts::default()
            };
            Ok((Entry::Elems(vec![elem]), opts))
        };
        let entry = Entry::Elems(vec![elem]);
        let opts = AddOpts {
            nomatch: true,
            ..AddOpts::default()
        };
        assert_eq!(
            typed(Adt::Add).resolve(&h, read),
            Ok(Cmd::Change(SetOp::Add {
                name: "s".into(),
                entry: entry.clone(),
                opts
            }))
        );
        assert_eq!(
            typed(Adt::Del).resolve(&h, read),
            Ok(Cmd::Change(SetOp::Del {
                name: "s".into(),
                entry: entry.clone()
            }))
        );
        assert_eq!(
            typed(Adt::Test).resolve(&h, read),
            Ok(Cmd::Test {
                name: "s".into(),
                entry,
                nomatch: true
            })
        );
        let refused = typed(Adt::Add).resolve(&h, |_, _| Err::<(Entry, AddOpts), _>("bad"));
        assert_eq!(refused, Err("bad"));
    }
}
