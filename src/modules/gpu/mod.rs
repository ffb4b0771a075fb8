//! `gpu`: NVML snapshots, GPUtil-compatible selection, and a crash-proof cross-process
//! reservation ledger.
//!
//! - [`probe`]: where snapshots come from — NVML (initialised once) or the fake provider
//!   (`LABHOST_FAKE_GPUS=4x24GiB`, or a JSON/YAML file a test can rewrite while hosts run).
//! - [`select`]: a pure function over a snapshot (GPUtil `getAvailable` semantics).
//! - [`ledger`]: reservations as exclusive `flock`s on `<state>/gpu/<uuid>.<slot>.lock`; the
//!   kernel drops them when the holder dies, so a `kill -9` never leaves a GPU booked.
mod lease;
pub mod ledger;
pub mod probe;
pub mod rhai;
pub mod select;
mod watch;

use serde::{Deserialize, Serialize};

/// One process using a GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    /// Process name (`/proc/<pid>/comm`), `""` if unknown.
    #[serde(default)]
    pub name: String,
    /// Bytes of GPU memory the process uses, when the driver reports it.
    #[serde(default)]
    pub used_memory: Option<u64>,
}

/// One device as seen at one moment. Fields the device does not support are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// NVML index: PCI bus order, the order CUDA uses with `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
    pub index: u32,
    /// `GPU-xxxxxxxx-…`: the stable identity; the ledger pins devices by it.
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub pci_bus_id: String,
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_free: u64,
    /// Percent of time a kernel ran over the last sample period (GPU "load").
    pub utilization_gpu: Option<u32>,
    pub utilization_memory: Option<u32>,
    /// °C.
    pub temperature: Option<u32>,
    /// Watts.
    pub power_draw: Option<f64>,
    pub power_limit: Option<f64>,
    pub processes: Vec<GpuProcess>,
}

impl Device {
    /// GPUtil `load`: utilization / 100; NaN when unsupported.
    pub fn load(&self) -> f64 {
        self.utilization_gpu
            .map(|u| f64::from(u) / 100.0)
            .unwrap_or(f64::NAN)
    }

    /// GPUtil `memoryUtil`: used / total; NaN when total is 0.
    pub fn memory_util(&self) -> f64 {
        if self.memory_total == 0 {
            f64::NAN
        } else {
            self.memory_used as f64 / self.memory_total as f64
        }
    }
}

/// All devices at one moment, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `nvml`, `fake:<spec>` or `none`.
    pub provider: String,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub devices: Vec<Device>,
    /// Why there are no GPUs (no driver, NVML error, bad fake spec), if so.
    pub error: Option<String>,
}

impl Snapshot {
    pub fn none(provider: &str, error: String) -> Self {
        Snapshot {
            provider: provider.into(),
            driver_version: None,
            cuda_version: None,
            devices: Vec::new(),
            error: Some(error),
        }
    }
}

/// A seed for random ordering.
pub fn ledger_seed() -> u64 {
    crate::clock::unix_nanos() as u64
}

/// A snapshot from the configured provider (fake if `LABHOST_FAKE_GPUS` is set, else NVML).
pub fn snapshot() -> Snapshot {
    probe::current().snapshot()
}

/// One line saying whether GPUs are usable and, if not, why.
pub fn status(s: &Snapshot) -> String {
    match (&s.error, s.devices.len()) {
        (Some(e), _) => format!("no GPUs ({}): {e}", s.provider),
        (None, 0) => format!("no GPUs ({}): the driver reports 0 devices", s.provider),
        (None, n) => format!(
            "{n} GPU(s) via {}, driver {}, CUDA {}",
            s.provider,
            s.driver_version.as_deref().unwrap_or("?"),
            s.cuda_version.as_deref().unwrap_or("?")
        ),
    }
}
