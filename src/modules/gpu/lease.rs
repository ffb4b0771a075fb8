//! A reservation held by this process: its devices, the lock files that make it, and what
//! a child or a container gets from it (env, Docker device requests).
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeasedDevice {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// Sharing slot (1..=k), or 0 for exclusive use.
    pub slot: u32,
}

/// Docker Engine API `DeviceRequest` for the leased devices (shared with the docker module).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceRequest {
    pub driver: String,
    pub count: i64,
    #[serde(rename = "DeviceIDs")]
    pub device_ids: Vec<String>,
    pub capabilities: Vec<Vec<String>>,
}

impl DeviceRequest {
    pub fn for_uuids(uuids: Vec<String>) -> Self {
        DeviceRequest {
            driver: "nvidia".into(),
            count: 0,
            device_ids: uuids,
            capabilities: vec![vec!["gpu".into()]],
        }
    }
}

pub(super) struct LeaseInner {
    pub(super) devices: Vec<LeasedDevice>,
    pub(super) files: Mutex<Vec<File>>,
}

/// A reservation. Dropping the last clone releases it; so does the holder's death.
#[derive(Clone)]
pub struct Lease {
    pub(super) inner: Arc<LeaseInner>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuLease({:?}, held: {})",
            self.indices(),
            self.is_held()
        )
    }
}

impl Lease {
    /// The lock files' fds: a process that keeps them open holds the reservation with this
    /// process (the job engine gives them to a job's processes).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.inner
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|f| f.as_raw_fd())
            .collect()
    }

    pub fn devices(&self) -> &[LeasedDevice] {
        &self.inner.devices
    }

    pub fn indices(&self) -> Vec<u32> {
        self.inner.devices.iter().map(|d| d.index).collect()
    }

    pub fn uuids(&self) -> Vec<String> {
        self.inner.devices.iter().map(|d| d.uuid.clone()).collect()
    }

    pub fn is_held(&self) -> bool {
        !self
            .inner
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            || self.inner.devices.is_empty()
    }

    /// Releases now (closing the lock files); later calls do nothing.
    pub fn release(&self) {
        self.inner
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Environment for a child: devices by NVML index in PCI bus order — the order CUDA uses
    /// under `CUDA_DEVICE_ORDER=PCI_BUS_ID` — plus their UUIDs in `LABHOST_GPU_UUIDS`.
    /// Indices, not UUIDs, in `CUDA_VISIBLE_DEVICES`: many training scripts parse it as a list
    /// of integers; the PCI_BUS_ID order makes the indices mean the same devices as NVML's.
    pub fn env(&self) -> BTreeMap<String, String> {
        let join = |v: Vec<String>| v.join(",");
        BTreeMap::from([
            ("CUDA_DEVICE_ORDER".to_string(), "PCI_BUS_ID".to_string()),
            (
                "CUDA_VISIBLE_DEVICES".to_string(),
                join(self.indices().iter().map(|i| i.to_string()).collect()),
            ),
            ("LABHOST_GPU_UUIDS".to_string(), join(self.uuids())),
        ])
    }

    pub fn device_request(&self) -> DeviceRequest {
        DeviceRequest::for_uuids(self.uuids())
    }
}
