//! The local executor: the job host of this process (claims, workers, orphan re-queue), the
//! job supervisor process that is the parent of its jobs and outlives it (`shim`: GPU leases,
//! records the ends when the host died), the code that runs one attempt (`supervisor`:
//! process group, logs, metrics, timeout, cancel), and the vfork-style spawn under it. No presentation here: progress bars and
//! tables live with the callers.
//!
//! Modules reach it through the items re-exported here, never through its submodules.
mod docker_run;
pub mod job_host;
mod joblog;
mod metrics;
pub mod mlflow;
pub mod shim;
pub mod supervisor;
mod workdir;

pub use job_host::{
    at_exit, carried_on, ended_count, get as job_host, job_host_alive, recover_orphans,
    store_failure, wait_for_end, AtExit, JobHost,
};
pub use mlflow::dashboard_url;
pub use mlflow::ui::assets::inline_head as chart_scripts;
pub use mlflow::ui::cron::lend as lend_cron_status;
pub use shim::supervisor_alive;
pub use supervisor::{launch_for, Launch};
