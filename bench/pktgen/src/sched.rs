//! How much of the window the generator and the peer actually ran.
//!
//! Why: the machine's CPUs are shared, and a busy-polling process that is
//! descheduled looks exactly like a slow forwarder. The kernel's
//! `/proc/.../schedstat` gives, per thread, nanoseconds on a CPU and
//! nanoseconds waiting for one; over the window, a share of CPU time well
//! below 1 (or a large wait) means the figure measures the neighbours, not
//! the forwarder, and the result says so instead of guessing.

use std::collections::HashMap;

/// CPU and run-queue wait nanoseconds of one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub cpu_ns: u64,
    pub wait_ns: u64,
}

/// Parses a `schedstat` line: `cpu_ns wait_ns timeslices`.
pub fn parse(line: &str) -> Option<Times> {
    let mut it = line.split_whitespace().map(str::parse::<u64>);
    Some(Times {
        cpu_ns: it.next()?.ok()?,
        wait_ns: it.next()?.ok()?,
    })
}

/// The calling thread's times.
pub fn this_thread() -> Option<Times> {
    parse(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// Every thread of process `pid`, by thread id.
pub fn threads(pid: u32) -> HashMap<u32, Times> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        if let Some(t) = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .as_deref()
            .and_then(parse)
        {
            out.insert(tid, t);
        }
    }
    out
}

/// The busiest thread's progress between two snapshots (the poll-mode
/// lcore of a DPDK process): the one with the largest CPU time delta.
pub fn busiest(before: &HashMap<u32, Times>, after: &HashMap<u32, Times>) -> Option<Times> {
    after
        .iter()
        .filter_map(|(tid, a)| {
            let b = before.get(tid)?;
            Some(Times {
                cpu_ns: a.cpu_ns.saturating_sub(b.cpu_ns),
                wait_ns: a.wait_ns.saturating_sub(b.wait_ns),
            })
        })
        .max_by_key(|t| t.cpu_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schedstat_lines() {
        assert_eq!(
            parse("123456 789 12\n"),
            Some(Times {
                cpu_ns: 123456,
                wait_ns: 789
            })
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("12 x 3"), None);
    }

    #[test]
    fn busiest_thread_is_the_one_with_most_cpu_delta() {
        let t = |c, w| Times {
            cpu_ns: c,
            wait_ns: w,
        };
        let before = HashMap::from([(1, t(100, 0)), (2, t(1000, 50)), (3, t(0, 0))]);
        let after = HashMap::from([(1, t(300, 0)), (2, t(5000, 80)), (4, t(9999, 0))]);
        assert_eq!(busiest(&before, &after), Some(t(4000, 30)));
        assert_eq!(busiest(&HashMap::new(), &after), None);
    }

    #[test]
    fn this_thread_runs() {
        let a = this_thread().expect("schedstat is readable on Linux");
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(this_thread().unwrap().cpu_ns > a.cpu_ns);
    }
}
