//! The application's own commands on DPDK's telemetry socket
//! (`/var/run/dpdk/<prefix>/dpdk_telemetry.v2`), beside DPDK's `/ethdev/...`
//! and `/eal/...`, so `dpdk-telemetry.py` shows them.
//!
//! Why a registry in Rust: DPDK 22.11's callback type carries no user
//! pointer, only the command's name. One `extern "C"` function answers every
//! command registered here and looks the name up in [`HANDLERS`]; a handler
//! is a Rust closure that builds a [`TelDict`] of plain values, so no
//! handler touches `rte_tel_data` or anything unsafe.
//!
//! Threads: DPDK runs callbacks on its telemetry thread. Handlers run with
//! the registry's lock held, so [`unregister_all`] waits for a running one
//! to finish and no handler runs after it returns: the daemon calls it
//! before the objects the handlers read (ports, counters) are dropped. DPDK
//! 22.11 cannot remove a command; after [`unregister_all`] its commands
//! answer with an error (the client sees `null`).
//!
//! Limits of the telemetry format, enforced here: names are alphanumeric,
//! `_` or `/`; a dict holds at most 256 entries (`RTE_TEL_MAX_DICT_ENTRIES`),
//! an array 512; one level of nesting (a dict or array inside the top
//! dict); strings are cut at 127 bytes.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;

use super::{DpdkError, Eal};

/// A value in a telemetry answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelValue {
    U64(u64),
    Str(String),
    /// An array of numbers (one level deep only).
    U64s(Vec<u64>),
    /// An array of strings (one level deep only).
    Strs(Vec<String>),
    /// A dict of numbers and strings (one level deep only: nested
    /// containers inside it are left out).
    Dict(TelDict),
}

/// A dict answer: names and values, in order.
pub type TelDict = Vec<(String, TelValue)>;

/// Answers one command: `params` is what follows the comma (`""` when
/// none). `Err` makes the client see `null`.
pub type Handler = Box<dyn Fn(&str) -> Result<TelDict, String> + Send>;

const MAX_DICT: usize = dpdk_sys::RTE_TEL_MAX_DICT_ENTRIES as usize;
const MAX_ARRAY: usize = dpdk_sys::RTE_TEL_MAX_ARRAY_ENTRIES as usize;
const MAX_STRING: usize = dpdk_sys::RTE_TEL_MAX_STRING_LEN as usize - 1;

/// Registered commands and their handlers.
static HANDLERS: Mutex<Vec<(CString, Handler)>> = Mutex::new(Vec::new());

/// Whether `name` may be a command or a dict key.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STRING
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
}

/// Registers `cmd` (e.g. `/uvs/counters`) with its help text. EAL must be
/// running (the telemetry socket is part of it).
pub fn register(_eal: &Eal, cmd: &str, help: &str, handler: Handler) -> Result<(), DpdkError> {
    let fail = |reason: String| DpdkError::Call {
        what: format!("rte_telemetry_register_cmd {cmd}"),
        reason,
    };
    if !cmd.starts_with('/') || !valid_name(cmd) {
        return Err(fail(
            "a command is / followed by letters, digits, _ or /".into(),
        ));
    }
    let c_cmd = CString::new(cmd).map_err(|_| DpdkError::Nul(cmd.into()))?;
    let c_help = CString::new(help).map_err(|_| DpdkError::Nul(help.into()))?;
    let mut g = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = g.iter_mut().find(|(c, _)| c.as_c_str() == c_cmd.as_c_str()) {
        // Registered before (and maybe emptied by unregister_all): DPDK
        // already knows the name; only the handler changes.
        slot.1 = handler;
        return Ok(());
    }
    // SAFETY: both strings are NUL-terminated and live for the call (DPDK
    // copies them into its table); `dispatch` matches `telemetry_cb` and,
    // being a plain function, lives for the whole process.
    let rc = unsafe {
        dpdk_sys::rte_telemetry_register_cmd(c_cmd.as_ptr(), Some(dispatch), c_help.as_ptr())
    };
    if rc != 0 {
        return Err(fail(super::strerror(-rc)));
    }
    g.push((c_cmd, handler));
    Ok(())
}

/// Drops every handler (waiting for a running one); the commands then
/// answer with an error.
pub fn unregister_all() {
    let mut g = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
    for (_, h) in g.iter_mut() {
        *h = Box::new(|_| Err("uvsd is stopping".into()));
    }
}

/// The one callback DPDK calls for every command registered here.
unsafe extern "C" fn dispatch(
    cmd: *const c_char,
    params: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    if cmd.is_null() || d.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: the telemetry library passes the NUL-terminated command it
    // matched against its table, valid for the duration of the call.
    let cmd = unsafe { CStr::from_ptr(cmd) };
    let params = if params.is_null() {
        String::new()
    } else {
        // SAFETY: as above; params is the NUL-terminated rest of the request.
        unsafe { CStr::from_ptr(params) }
            .to_string_lossy()
            .into_owned()
    };
    let g = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
    let Some((_, h)) = g.iter().find(|(c, _)| c.as_c_str() == cmd) else {
        return -libc::ENOENT;
    };
    // A panic must not unwind into C.
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&params)));
    match answer {
        Ok(Ok(dict)) => {
            // SAFETY: `d` is the telemetry library's output object for this
            // call, not shared with any other thread while we fill it.
            unsafe { fill_dict(d, &dict, true) };
            0
        }
        _ => -libc::EINVAL,
    }
}

/// Cuts a string at `MAX_STRING` bytes (on a character boundary) and
/// removes NUL bytes.
fn c_text(s: &str) -> CString {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    CString::new(s[..end].replace('\0', "")).unwrap_or_default()
}

/// Fills `d` as a dict; nested containers only when `nest`.
///
/// # Safety
/// `d` must be a valid `rte_tel_data` owned by the caller for the call.
unsafe fn fill_dict(d: *mut dpdk_sys::rte_tel_data, dict: &TelDict, nest: bool) {
    // SAFETY: `d` is valid (contract of this function).
    unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
    for (name, v) in dict.iter().filter(|(n, _)| valid_name(n)).take(MAX_DICT) {
        let n = c_text(name);
        match v {
            TelValue::U64(x) => {
                // SAFETY: valid dict and NUL-terminated name.
                unsafe { dpdk_sys::rte_tel_data_add_dict_u64(d, n.as_ptr(), *x) };
            }
            TelValue::Str(s) => {
                let s = c_text(s);
                // SAFETY: valid dict, NUL-terminated name and value (copied).
                unsafe { dpdk_sys::rte_tel_data_add_dict_string(d, n.as_ptr(), s.as_ptr()) };
            }
            _ if !nest => {}
            container => {
                // SAFETY: a fresh object from the telemetry library or null.
                let c = unsafe { dpdk_sys::rte_tel_data_alloc() };
                if c.is_null() {
                    continue;
                }
                // SAFETY: `c` is ours until handed over below.
                unsafe { fill_container(c, container) };
                // SAFETY: `d` is a dict; keep = 0 hands `c` to the library,
                // which frees it with `d`. On failure it is ours to free.
                let rc = unsafe { dpdk_sys::rte_tel_data_add_dict_container(d, n.as_ptr(), c, 0) };
                if rc != 0 {
                    // SAFETY: not handed over, allocated by rte_tel_data_alloc.
                    unsafe { dpdk_sys::rte_tel_data_free(c) };
                }
            }
        }
    }
}

/// Fills a freshly allocated container with an array or a flat dict.
///
/// # Safety
/// `c` must be a valid `rte_tel_data` owned by the caller.
unsafe fn fill_container(c: *mut dpdk_sys::rte_tel_data, v: &TelValue) {
    match v {
        TelValue::U64s(xs) => {
            // SAFETY: valid container (contract of this function).
            unsafe {
                dpdk_sys::rte_tel_data_start_array(c, dpdk_sys::rte_tel_value_type_RTE_TEL_U64_VAL)
            };
            for x in xs.iter().take(MAX_ARRAY) {
                // SAFETY: a started u64 array.
                unsafe { dpdk_sys::rte_tel_data_add_array_u64(c, *x) };
            }
        }
        TelValue::Strs(ss) => {
            // SAFETY: valid container.
            unsafe {
                dpdk_sys::rte_tel_data_start_array(
                    c,
                    dpdk_sys::rte_tel_value_type_RTE_TEL_STRING_VAL,
                )
            };
            for s in ss.iter().take(MAX_ARRAY) {
                let s = c_text(s);
                // SAFETY: a started string array; the string is copied.
                unsafe { dpdk_sys::rte_tel_data_add_array_string(c, s.as_ptr()) };
            }
        }
        TelValue::Dict(dict) => {
            // SAFETY: valid container; no further nesting.
            unsafe { fill_dict(c, dict, false) };
        }
        TelValue::U64(_) | TelValue::Str(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_telemetry_alphabet() {
        assert!(valid_name("/uvs/counters"));
        assert!(valid_name("drop_no_route"));
        assert!(!valid_name("198.18.0.1:80"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(200)));
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        let s = "é".repeat(100);
        let c = c_text(&s);
        assert!(c.as_bytes().len() <= MAX_STRING);
        assert!(std::str::from_utf8(c.as_bytes()).is_ok());
        assert_eq!(c_text("a\0b").as_bytes(), b"ab");
    }
}
