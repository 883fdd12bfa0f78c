//! The body of the `control` fuzz target: arbitrary bytes arriving on the
//! control socket. Why here and not in the target: a property test below
//! runs the same code on stable toolchains, so CI exercises it without
//! cargo-fuzz.
//!
//! The bytes are read as the server reads a connection (frames of
//! [`Request`]s, until the first bad frame), and every request decoded is
//! executed, in order, by one director with an empty configuration and no
//! workers, so later commands act on what earlier ones configured (a
//! restore, then a listing of it). The same bytes are then read as a
//! client reads [`Response`]s. Every message decoded must encode back to
//! the same message. Nothing may panic, and a frame's memory is bounded by
//! the bytes that arrived, not by the length it claims.
//!
//! Why each input's director starts on a copy of one empty store, made
//! once per thread: building the store (its packet index has 2 x 256
//! shards), compiling its first snapshot and dropping both was about a
//! fifth of an input's time, and as many edges again for libFuzzer to
//! collect. The copy is a fresh director's configuration in every part an
//! input can see or change (`ConfigStore::copy_without_workers`: values,
//! or parts copied on write; the statistics it shares with the original
//! belong to services, of which the empty store has none, and nothing
//! counts without workers), and the director's other state (rules,
//! resolvers, the dataplane's last snapshot) is new per input; so an
//! input's outcome does not depend on the inputs before it
//! (`an_input_starts_on_an_empty_director_whatever_ran_before`).

use dataplane::config::ConfigStore;

use crate::director::{Director, NoDataplane};
use crate::format::NoNames;
use crate::grammar::OfflineResolver;
use crate::proto::{read_frame, write_frame, Request, Response, MAX_REQUEST, MAX_RESPONSE};

thread_local! {
    /// The empty configuration every input starts on, its snapshot
    /// compiled once.
    static EMPTY: ConfigStore = {
        let store = ConfigStore::new();
        store.snapshot();
        store
    };
}

/// A director with an empty configuration, no workers and offline
/// resolvers, as `Director::with_resolvers` makes one, from a copy of
/// [`EMPTY`].
fn fresh_director() -> Director<NoDataplane> {
    Director::with_store(
        NoDataplane::default(),
        Box::new(NoNames),
        Box::new(OfflineResolver),
        EMPTY.with(ConfigStore::copy_without_workers),
    )
}

/// Runs `data` through the control socket's framing and the director;
/// returns how many requests succeeded (exit status 0), so the work cannot
/// be optimised away.
pub fn fuzz_control(data: &[u8]) -> usize {
    let director = fresh_director();
    let mut ok = 0;
    let mut r = data;
    while let Ok(req) = read_frame::<_, Request>(&mut r, MAX_REQUEST) {
        round_trip(&req);
        let resp = director.handle(&req.argv, req.stdin.as_deref());
        // ipvsadm's exit statuses: 0, 2 (usage) or 255 (refused); an error
        // always says why.
        assert!(matches!(resp.code, 0 | 2 | 255), "{resp:?}");
        assert!(resp.code == 0 || !resp.stderr.is_empty(), "{resp:?}");
        ok += usize::from(resp.code == 0);
    }
    let mut r = data;
    while let Ok(resp) = read_frame::<_, Response>(&mut r, MAX_RESPONSE) {
        round_trip(&resp);
    }
    ok
}

/// Encodes `msg` as a frame and decodes it again: the same message.
fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let mut buf = Vec::new();
    write_frame(&mut buf, msg).expect("a decoded message encodes");
    let back: T = read_frame(&mut &buf[..], usize::MAX).expect("an encoded frame decodes");
    assert_eq!(&back, msg);
}

/// One request frame, as uvsadm writes it (seeds and tests).
pub fn request_frame(argv: &[&str], stdin: Option<&str>) -> Vec<u8> {
    let req = Request {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: stdin.map(str::to_string),
        tool: Default::default(),
    };
    let mut buf = Vec::new();
    write_frame(&mut buf, &req).expect("a Vec takes any frame");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn session() -> Vec<u8> {
        let mut data = request_frame(&["-A", "-t", "198.18.0.100:80", "-s", "rr"], None);
        data.extend(request_frame(
            &["-a", "-t", "198.18.0.100:80", "-r", "198.18.1.11:80", "-m"],
            None,
        ));
        data.extend(request_frame(
            &["-R"],
            Some("-A -u 198.18.0.100:53 -s wlc\n-a -u 198.18.0.100:53 -r 198.18.1.12:53 -g\n"),
        ));
        data.extend(request_frame(&["-L", "-n"], None));
        data
    }

    /// What a director shows of its state, command by command.
    fn listings(d: &Director<NoDataplane>) -> Vec<crate::proto::Response> {
        [
            &["-S", "-n"][..],
            &["-L", "-n", "--stats"],
            &["-L", "--timeout"],
        ]
        .iter()
        .map(|a| d.handle(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), None))
        .collect()
    }

    /// Each input's director starts on a copy of one empty store: whatever
    /// an input configured, the next one's director shows what a new
    /// director shows. (Sync daemons are the data plane's, new per input;
    /// `NoDataplane` has none.)
    #[test]
    fn an_input_starts_on_an_empty_director_whatever_ran_before() {
        let new = Director::with_resolvers(
            NoDataplane::default(),
            Box::new(NoNames),
            Box::new(OfflineResolver),
        );
        let expect = listings(&new);
        let mut data = session();
        for (argv, stdin) in [
            (&["--set", "5", "6", "7"][..], None),
            (&["-A", "-f", "7", "-s", "sh", "-p", "60"], None),
            (
                &["-a", "-f", "7", "-r", "198.18.1.20", "-i", "-w", "3"],
                None,
            ),
            (&["-Z"], None),
            (&["-R"], Some("-A -t [2001:db8::1]:443 -s mh\n")),
            (&["-D", "-t", "198.18.0.100:80"], None),
        ] {
            data.extend(request_frame(argv, stdin));
        }
        assert_eq!(fuzz_control(&data), 10);
        // The listings see what such an input does to a director.
        let changed = fresh_director();
        let mut r = &data[..];
        while let Ok(req) = read_frame::<_, Request>(&mut r, MAX_REQUEST) {
            changed.handle(&req.argv, req.stdin.as_deref());
        }
        let seen = listings(&changed);
        for (i, (a, b)) in seen.iter().zip(&expect).enumerate() {
            assert_ne!(a, b, "listing {i} does not show the input");
        }
        let next = fresh_director();
        assert_eq!(listings(&next), expect);
        assert_eq!(
            next.snapshot().generation,
            new.snapshot().generation,
            "the copy's generation"
        );
    }

    #[test]
    fn a_valid_session_runs_every_command() {
        assert_eq!(fuzz_control(&session()), 4);
    }

    #[test]
    fn a_refused_command_is_counted_out_and_the_rest_still_runs() {
        let mut data = request_frame(&["-a", "-t", "198.18.0.100:80", "-r", "198.18.1.11"], None);
        data.extend(session());
        // The first -a names a service that does not exist yet.
        assert_eq!(fuzz_control(&data), 4);
    }

    #[test]
    fn reading_stops_at_a_truncated_frame() {
        let mut data = session();
        // A frame that claims the largest request but carries two bytes.
        data.extend((MAX_REQUEST as u32).to_be_bytes());
        data.extend(b"{}");
        assert_eq!(fuzz_control(&data), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn control_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = fuzz_control(&data);
        }

        #[test]
        fn control_never_panics_on_a_mutated_session(
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        ) {
            let mut data = session();
            for (at, v) in edits {
                let at = usize::from(at) % data.len();
                data[at] = v;
            }
            let _ = fuzz_control(&data);
        }
    }
}
