//! Faults: each test breaks one thing a production deployment will see
//! break, with the real pieces (QUIC, PostgreSQL, the binaries where a
//! process must die), and then counts in the database that no sample was
//! lost or stored twice: stored == sent, exactly.
//!
//! - `aggregator_kill.rs`: the aggregator `kill -9`ed mid-stream, restarted.
//! - `database.rs`: a private PostgreSQL stopped and started again: acks
//!   stop (agents spool), `/readyz` and the dashboard say so, then all is stored.
//! - `network.rs`: a UDP proxy between agent and aggregator drops, delays,
//!   duplicates and reorders datagrams, then cuts the link for a while.
//! - `agent_kill.rs`: the agent `kill -9`ed at random moments while it
//!   spools, restarted each time; every spooled batch arrives exactly once.
//! - `spool_full.rs`: a spool at its size cap, and a spool on a full disk
//!   (a tiny tmpfs): drops are counted and reported, the rest arrives.
//! - `clock.rs`: agents whose clock is an hour off: the documented rule
//!   decides what is stored, the skew is measured, exported and shown.
//! - `notify.rs`: a webhook receiver that hangs (and one that is dead)
//!   does not hold up ingest or rule evaluation.
//!
//! Tests that need more than the shared PostgreSQL fail with a message
//! saying what is missing (PostgreSQL's server binaries, the right to mount
//! a tmpfs); none is skipped.

mod agent_kill;
mod aggregator_kill;
mod clock;
mod database;
mod network;
mod notify;
mod spool_full;
