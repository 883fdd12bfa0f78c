//! Interface names for `-i` and `-o`: what an iptables interface name
//! means on the director.
//!
//! Why these names: an operator writing rules for an appliance thinks in
//! the names its configuration and its shell show. A uvsd port answers to
//! its `[[port]] name` and, when it has one, to the name of its kernel
//! interface (`kernel = "..."`, the interface `ip link` shows); a VLAN of
//! the port answers to `NAME.VID` for each of those names, as Linux names
//! VLAN sub-interfaces (`eth0.100`). A name ending in `+` matches every
//! interface whose name starts with what precedes it (`+` alone: all), as
//! in iptables. The names are resolved to interface ids when the rules are
//! compiled, so a packet pays one comparison per named interface.

/// The director's interfaces: id (the stack's interface id, a DPDK port id
/// or a VLAN's id) and the names it answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    list: Vec<(u16, Vec<String>)>,
}

/// Whether interface name `name` matches the `-i`/`-o` argument `pattern`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

impl Interfaces {
    /// Adds interface `id` with its names (a port: its name and kernel
    /// name; a VLAN: `NAME.VID` for each).
    pub fn add(&mut self, id: u16, names: Vec<String>) {
        self.list.push((id, names));
    }

    /// A port and its VLANs: `name`, `kernel` (if any), and for each
    /// `(vlan id, vid)` the names with `.VID` appended.
    pub fn add_port(&mut self, id: u16, name: &str, kernel: Option<&str>, vlans: &[(u16, u16)]) {
        let names: Vec<String> = std::iter::once(name)
            .chain(kernel)
            .map(String::from)
            .collect();
        for (vlan_id, vid) in vlans {
            self.add(
                *vlan_id,
                names.iter().map(|n| format!("{n}.{vid}")).collect(),
            );
        }
        self.add(id, names);
    }

    /// The ids of the interfaces `pattern` matches, ascending, no repeats.
    pub fn ids(&self, pattern: &str) -> Vec<u16> {
        let mut ids: Vec<u16> = self
            .list
            .iter()
            .filter(|(_, names)| names.iter().any(|n| name_matches(pattern, n)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lab() -> Interfaces {
        let mut i = Interfaces::default();
        i.add_port(0, "client", None, &[]);
        i.add_port(1, "server", Some("uvs-k1"), &[(0x9064, 100)]);
        i
    }

    #[test]
    fn a_port_answers_to_its_name_and_its_kernel_name() {
        let i = lab();
        assert_eq!(i.ids("client"), [0]);
        assert_eq!(i.ids("server"), [1]);
        assert_eq!(i.ids("uvs-k1"), [1]);
        assert!(i.ids("clien").is_empty(), "names match whole");
        assert!(i.ids("eth0").is_empty());
    }

    #[test]
    fn a_vlan_answers_to_its_ports_names_with_the_vid() {
        let i = lab();
        assert_eq!(i.ids("server.100"), [0x9064]);
        assert_eq!(i.ids("uvs-k1.100"), [0x9064]);
        assert!(i.ids("server.10").is_empty());
    }

    #[test]
    fn plus_matches_by_prefix() {
        let i = lab();
        assert_eq!(i.ids("+"), [0, 1, 0x9064]);
        assert_eq!(i.ids("serv+"), [1, 0x9064]);
        assert_eq!(i.ids("server.+"), [0x9064]);
        assert_eq!(i.ids("uvs-+"), [1, 0x9064]);
        assert!(i.ids("x+").is_empty());
    }

    proptest! {
        /// `P+` matches exactly the names starting with P; a name without
        /// `+` matches only itself.
        #[test]
        fn wildcard_is_a_prefix_test(p in "[a-c.]{0,3}", n in "[a-c.]{0,4}") {
            prop_assert_eq!(name_matches(&format!("{p}+"), &n), n.starts_with(&p));
            prop_assert_eq!(name_matches(&p, &n), p == n);
        }
    }
}
