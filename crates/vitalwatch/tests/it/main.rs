//! Integration tests: the real `vitalwatch` binary, real sockets, real `curl` and `sqlite3`.

mod alerts;
mod cli;
mod durability;
mod hostile;
mod jepsen;
mod model;
mod mqtt;
mod registry;
mod seed;
mod sim;
mod support;
