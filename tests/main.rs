//! The one integration test binary: every test runs the built `labhost` binary.
mod util;

mod architecture;
mod azure;
pub mod azure_fake;
mod bad_input;
mod cli;
mod config;
mod cron;
mod diagnostics;
mod docker;
pub mod examples;
mod gpu;
mod jobs;
mod lifecycle;
mod mlflow;
mod modules;
mod projects;
mod repl;
mod report;
mod sweep;
mod ui;
