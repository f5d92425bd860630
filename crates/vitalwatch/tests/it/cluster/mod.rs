//! The scale-out topologies of issue 14 as real processes (tests/it/support/cluster.rs):
//! PostgreSQL primary + synchronous standby, three `vitalwatch serve` nodes, HAProxy in front
//! of their embedded brokers (topology A) or Mosquitto with a `$share` group (topology B).
//!
//! - `topologies`: a simulated fleet through each topology, every reading stored once, the
//!   same answers from every node;
//! - `crashes`: SIGKILL of a random node at random moments mid-flood, and a rolling restart
//!   (SIGTERM, one node at a time): Jepsen's lost/duplicated/recovered/unexpected;
//! - `failover`: the primary stopped mid-flood and the standby promoted: ingest resumes on
//!   its own, nothing acknowledged is lost;
//! - `outages`: the balancer restarted mid-flood (A); in B a node SIGKILLed and the broker
//!   restarted (SIGTERM, then SIGKILL); one node's path to the database cut and restored;
//! - `scenario`: a deteriorating scenario patient while the node holding its device is
//!   SIGKILLed five times: its alerts are `vitalwatch evaluate`'s.
//!
//! The tests run one at a time (`support::cluster::exclusive`).

mod crashes;
mod failover;
mod fleet;
mod outages;
mod scenario;
mod topologies;
