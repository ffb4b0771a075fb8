//! The local job engine. This first slice is the state store every later part builds on:
//! runs (jobs, sweeps, trials, folds) with parent/child links, params, tags, metric
//! histories, dependencies, retries and an event log of every transition, in one SQLite
//! database (WAL) under the state directory, safe for several labhost processes at once.
pub mod cli;
pub mod host;
pub mod pipeline;
pub mod spawn;
pub mod store;
pub mod supervisor;
