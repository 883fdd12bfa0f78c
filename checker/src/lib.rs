//! uvs-keepalived: UVS's health checks, configured by an unchanged
//! keepalived.conf.
//!
//! keepalived drives kernel IPVS through netlink, so it cannot drive UVS.
//! This crate takes its place: [`conf`] reads the `virtual_server`,
//! `virtual_server_group` and `real_server` blocks with keepalived's
//! defaults and checks, [`state`] is keepalived's checker state machine,
//! real-server aggregation, quorum and sorry server as pure logic (tested
//! with a fake clock), [`probe`] runs TCP_CHECK, HTTP_GET, SSL_GET and
//! MISC_CHECK, [`director`] turns the state machine's actions into
//! ipvsadm commands on uvsd's control socket, and [`run`] ties them
//! together in the `uvs-keepalived` daemon.

pub mod conf;
pub mod state;
