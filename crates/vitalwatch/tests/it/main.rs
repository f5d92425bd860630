//! Integration tests: the real `vitalwatch` binary, real sockets, real `curl` and `sqlite3`.

mod alerts;
mod audit;
mod bench;
mod cli;
mod dashboard;
mod deploy;
mod durability;
mod external;
mod fhir;
mod hostile;
mod jepsen;
mod logs;
mod model;
mod mqtt;
mod mqtt_conformance;
mod ops;
mod ops_ready;
mod registry;
mod security;
mod seed;
mod sim;
mod store_conformance;
mod support;
mod tidy;
mod tls_scan;
