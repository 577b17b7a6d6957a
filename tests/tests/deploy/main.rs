//! deploy/: every artifact an operator installs Vigil with is checked here,
//! against the real binaries.
//!
//! - `systemd.rs`: the units pass `systemd-analyze verify` and a security
//!   exposure threshold, and their paths agree with the example configs.
//! - `examples.rs`: the example configs (API, DB, cache host; aggregator) pass
//!   `check-config` in the filesystem layout the units give them.
//! - `compose.rs`: compose.yml passes `docker compose config`; its certificate
//!   and setup scripts run for real (setup against PostgreSQL); its configs
//!   pass `check-config` in each container's filesystem.
//! - `k8s.rs`: every manifest parses; names, ports, mounts and security
//!   settings agree; the ConfigMaps' configs pass `check-config` in each
//!   pod's filesystem.
//! - `deb.rs`, `deb_install.rs`: the Debian packages cargo-deb builds from
//!   the tests' binaries hold what they should, their default configs pass
//!   `check-config` with certificates, and they install, upgrade, remove and
//!   purge on this machine (as root, which the test needs).
//!
//! A missing tool (systemd-analyze, docker compose, cargo-deb, dpkg) fails
//! with a message saying what to install; nothing is skipped.

mod compose;
mod compose_files;
mod deb;
mod deb_install;
mod deb_tools;
mod examples;
mod k8s;
mod k8s_files;
mod layout;
mod systemd;
