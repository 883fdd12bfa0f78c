//! SIGHUP: what of the config file can change while uvsd runs, and how.
//!
//! Reloaded, all or nothing: the routes and static neighbours (published
//! to every worker between two turns, see `dataplane::net::L3Cell`) and
//! the `control.rules` file, taken as the desired service table (see
//! `control::reload`: services that stay keep their connections and
//! counters). Everything is checked before anything is applied: the file
//! must parse and validate, the routes must fit the running ports, and the
//! rules must be accepted as a whole; the rules go first (they are the
//! only step that can still be refused), the routes last.
//!
//! Not reloaded: what the running process is built from (EAL arguments,
//! workers, ports, the control socket and its group). A change there is
//! reported in the log and waits for a restart; it is never half-applied.

use std::path::Path;

use dataplane::net::{L3Cell, L3Config, L3Routes};

use crate::config::{Config, Validated};
use crate::control_hook::UvsDirector;

/// Sections of `new` that differ from the running `old` and need a restart.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = vec![];
    if old.eal != new.eal {
        v.push("[eal]".to_string());
    }
    if old.workers != new.workers {
        v.push("[workers]".to_string());
    }
    if old.control.socket != new.control.socket {
        v.push("control.socket".to_string());
    }
    if old.control.group != new.control.group {
        v.push("control.group".to_string());
    }
    if old.ports != new.ports {
        v.push("[[port]]".to_string());
    }
    if old.announce != new.announce {
        v.push("[announce]".to_string());
    }
    v
}

/// The L3 tables of `new`'s routes and neighbours on the running ports
/// (`running` is the running L3 configuration); a route or neighbour that
/// does not fit them is an error.
pub fn routes_for(running: &L3Config, new: &Validated) -> Result<L3Routes, String> {
    let l3 = L3Config {
        interfaces: running.interfaces.clone(),
        routes: new.routes.clone(),
        neighbors: new.neighbors.clone(),
        forwarding: Default::default(),
    };
    let routes = l3.route_table().map_err(|e| e.to_string())?;
    Ok(L3Routes {
        routes,
        neighbors: new.neighbors.clone(),
    })
}

/// Reloads `path` into the running daemon; returns the lines to log. On
/// error nothing changed.
pub fn reload(
    path: &Path,
    running_cfg: &Config,
    running_l3: &L3Config,
    director: &UvsDirector,
    cell: &L3Cell,
) -> Result<Vec<String>, String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let l3 = routes_for(running_l3, &new)?;
    let mut log = vec![];
    if let Some(rules) = &new.raw.control.rules {
        let text = std::fs::read_to_string(rules)
            .map_err(|e| format!("control.rules {}: {e}", rules.display()))?;
        let summary = director.reload_rules(&text).map_err(|r| {
            format!(
                "control.rules {}: {}",
                rules.display(),
                r.message.trim_end().replace('\n', " ")
            )
        })?;
        log.push(format!("control.rules {}: {summary}", rules.display()));
    }
    log.push(format!(
        "{} route(s) and {} static neighbour(s) in effect",
        new.routes.len(),
        new.neighbors.len()
    ));
    cell.publish(l3);
    let restart = needs_restart(running_cfg, &new.raw);
    if !restart.is_empty() {
        log.push(format!(
            "{} changed: not applied, takes effect when uvsd is restarted",
            restart.join(", ")
        ));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[eal]
args = ["-l", "0-1", "--no-huge"]
[workers]
lcores = [1]
[[port]]
name = "a"
device = "net_tap0,iface=x"
addresses = ["198.18.0.1/24"]
"#;

    fn cfg(extra: &str) -> Validated {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml")).unwrap()
    }

    fn running_l3(v: &Validated) -> L3Config {
        v.l3(&[(
            0,
            dataplane::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
            1500,
        )])
    }

    #[test]
    fn routes_and_neighbours_reload_and_the_rest_is_reported() {
        let old = cfg("");
        let new = cfg(
            "[[route]]\nto = \"198.19.0.0/16\"\nvia = \"198.18.0.254\"\n[[neighbor]]\nip = \"198.18.0.254\"\nmac = \"02:00:00:00:00:fe\"\n",
        );
        let r = routes_for(&running_l3(&old), &new).unwrap();
        assert_eq!(r.neighbors.len(), 1);
        assert!(r.routes.next_hop("198.19.1.1".parse().unwrap()).is_some());
        assert!(needs_restart(&old.raw, &new.raw).is_empty());
        let mut ports = new.raw.clone();
        ports.ports[0].queues = 2;
        ports.workers.lcores = vec![1, 2];
        assert_eq!(
            needs_restart(&old.raw, &ports),
            vec!["[workers]".to_string(), "[[port]]".to_string()]
        );
    }

    #[test]
    fn a_route_off_the_running_ports_is_refused() {
        // The new file moves the port (a restart) and routes through the
        // new prefix: valid as a file, not for the running ports.
        let old = cfg("");
        let text = format!(
            "{}[[route]]\nto = \"198.19.0.0/16\"\nvia = \"198.20.0.254\"\n",
            BASE.replace("198.18.0.1/24", "198.20.0.1/24")
        );
        let new = Config::parse(&text, Path::new("t.toml")).unwrap();
        let e = routes_for(&running_l3(&old), &new).unwrap_err();
        assert!(e.contains("not on any port"), "{e}");
    }
}
