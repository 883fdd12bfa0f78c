//! The kernel side of a `net_tap` port gets a MAC address of its own.
//!
//! Why: net_tap 22.11 gives the kernel-side interface the port's own MAC
//! (`pmd->eth_addr`, from its `mac=` devarg, random otherwise; and
//! `rte_eth_dev_default_mac_addr_set` rewrites both together). It has no
//! devarg for a distinct kernel-side address. Put that interface into a
//! Linux bridge and the bridge learns the director's MAC as one of its own
//! ports' addresses: frames the real servers send to the director (NAT
//! replies, ARP replies) are delivered to the bridge itself and never reach
//! uvsd. Two ends of one Ethernet link with one address is simply wrong, so
//! after the port has started the kernel side gets [`kernel_side_mac`] of
//! the port's MAC. Set-up only; nothing here runs on the packet path.
//!
//! The same ioctl sets the MTU of the kernel interface behind a net_pcap
//! port ([`set_kernel_mtu`]): that driver has no MTU setter, yet the kernel
//! drops frames larger than the interface's MTU in both directions.

use std::ffi::CStr;

use super::DpdkError;

/// The kernel-side address for a port whose MAC is `port`: the same bytes
/// with the locally administered bit set and bit 2 of the first octet
/// flipped, so it is unicast, locally administered, deterministic (tests
/// and `ip link` show the same address at every start) and never equal to
/// the port's.
pub fn kernel_side_mac(port: [u8; 6]) -> [u8; 6] {
    let mut m = port;
    m[0] = ((m[0] | 0x02) ^ 0x04) & !0x01;
    m
}

/// The `iface=` devarg of a net_tap device spec (`net_tap0,iface=uvs-c`).
pub fn iface_devarg(spec: &str) -> Option<&str> {
    spec.split(',')
        .skip(1)
        .find_map(|kv| kv.trim().strip_prefix("iface="))
        .filter(|v| !v.is_empty())
}

/// The kernel's name of interface `if_index`.
pub fn if_name(if_index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname may write; it
    // returns NULL or a pointer into buf, NUL-terminated.
    let p = unsafe { libc::if_indextoname(if_index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: p points into buf and is NUL-terminated (checked non-NULL).
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Sets the hardware address of the kernel interface `name`
/// (`SIOCSIFHWADDR`; TAP devices allow it while up).
pub fn set_kernel_mac(name: &str, mac: [u8; 6]) -> Result<(), DpdkError> {
    let mut hw = libc::sockaddr {
        sa_family: libc::ARPHRD_ETHER,
        sa_data: [0; 14],
    };
    for (d, s) in hw.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    if_ioctl(
        name,
        &format!("setting the MAC of kernel interface {name}"),
        libc::SIOCSIFHWADDR,
        |ifr| ifr.ifr_ifru.ifru_hwaddr = hw,
    )
}

/// Sets the MTU of the kernel interface `name` (`SIOCSIFMTU`), for a port
/// whose driver has no MTU setter of its own but sends and receives
/// through that interface (net_pcap `iface=`): the kernel drops frames
/// larger than the interface's MTU both ways.
pub fn set_kernel_mtu(name: &str, mtu: u16) -> Result<(), DpdkError> {
    if_ioctl(
        name,
        &format!("setting MTU {mtu} on kernel interface {name}"),
        libc::SIOCSIFMTU,
        |ifr| ifr.ifr_ifru.ifru_mtu = libc::c_int::from(mtu),
    )
}

/// One `ioctl` that sets something of interface `name` through an
/// `ifreq` that `fill` completes.
fn if_ioctl(
    name: &str,
    what: &str,
    request: libc::c_ulong,
    fill: impl FnOnce(&mut libc::ifreq),
) -> Result<(), DpdkError> {
    let fail = |reason: String| DpdkError::Call {
        what: what.to_string(),
        reason,
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IF_NAMESIZE || bytes.contains(&0) {
        return Err(fail("not an interface name".into()));
    }
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    fill(&mut ifr);
    // SAFETY: plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: fd is an open socket; ifr is a valid, NUL-terminated ifreq
    // that outlives the call, of the kind `request` reads.
    let rc = unsafe { libc::ioctl(fd, request, &ifr) };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(fail(e.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_side_differs_and_stays_local_unicast() {
        for port in [
            [0x02, 0, 0, 0, 0, 1],
            [0x02, 0x64, 0x74, 0x61, 0x70, 0x00],
            [0x06, 0, 0, 0, 0, 1],
            [0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
        ] {
            let k = kernel_side_mac(port);
            assert_ne!(k, port);
            assert_eq!(k[0] & 0x01, 0, "unicast");
            assert_eq!(k[0] & 0x02, 0x02, "locally administered");
            assert_eq!(k[1..], port[1..]);
            assert_eq!(kernel_side_mac(port), k, "deterministic");
        }
        assert_eq!(
            kernel_side_mac([0x02, 0, 0, 0, 0, 1]),
            [0x06, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn iface_devarg_is_found_anywhere_after_the_name() {
        assert_eq!(iface_devarg("net_tap0,iface=uvs-c"), Some("uvs-c"));
        assert_eq!(iface_devarg("net_tap1,mac=fixed, iface=dmb"), Some("dmb"));
        assert_eq!(iface_devarg("net_tap0"), None);
        assert_eq!(iface_devarg("net_tap0,iface="), None);
        assert_eq!(iface_devarg("iface=x"), None);
    }
}
