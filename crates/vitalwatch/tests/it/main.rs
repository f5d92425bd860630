//! Integration tests: the real `vitalwatch` binary, real sockets, real `curl` and `sqlite3`.

mod cli;
mod dashboard;
mod durability;
mod hostile;
mod registry;
mod seed;
mod support;
