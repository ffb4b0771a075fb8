//! Snapshot providers: NVML (the real thing) and the fake provider for tests and demos.
use std::path::PathBuf;
use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;
use serde::Deserialize;

use super::{Device, GpuProcess, Snapshot};
use crate::util::parse_bytes;

pub trait GpuProbe: Send + Sync {
    fn snapshot(&self) -> Snapshot;
}

/// The provider for this process: fake when `LABHOST_FAKE_GPUS` is set, else NVML.
pub fn current() -> &'static dyn GpuProbe {
    static P: OnceLock<Box<dyn GpuProbe>> = OnceLock::new();
    P.get_or_init(|| match crate::config::fake_gpus() {
        Some(spec) => Box::new(FakeProbe::new(&spec)),
        None => Box::new(NvmlProbe),
    })
    .as_ref()
}

/// NVML, initialised once per process (init costs ~250 symbol loads; with no driver it
/// fails in milliseconds and the box has 0 GPUs).
pub struct NvmlProbe;

fn nvml() -> &'static Result<Nvml, String> {
    static N: OnceLock<Result<Nvml, String>> = OnceLock::new();
    N.get_or_init(|| Nvml::init().map_err(|e| format!("NVML unavailable: {e}")))
}

fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl GpuProbe for NvmlProbe {
    fn snapshot(&self) -> Snapshot {
        let nvml = match nvml() {
            Ok(n) => n,
            Err(e) => return Snapshot::none("nvml", e.clone()),
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => return Snapshot::none("nvml", format!("cannot count devices: {e}")),
        };
        let mut devices = Vec::new();
        for i in 0..count {
            // Each field on its own: many are NotSupported on some boards (gpustat does the same).
            let Ok(d) = nvml.device_by_index(i) else {
                continue;
            };
            let mem = d.memory_info().ok();
            let util = d.utilization_rates().ok();
            let mut processes: Vec<GpuProcess> = d
                .running_compute_processes()
                .unwrap_or_default()
                .into_iter()
                .chain(d.running_graphics_processes().unwrap_or_default())
                .map(|p| GpuProcess {
                    pid: p.pid,
                    name: process_name(p.pid),
                    used_memory: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    },
                })
                .collect();
            processes.sort_by_key(|p| p.pid);
            processes.dedup_by_key(|p| p.pid);
            devices.push(Device {
                index: d.index().unwrap_or(i),
                uuid: d.uuid().unwrap_or_else(|_| format!("GPU-unknown-{i}")),
                name: d.name().unwrap_or_default(),
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                memory_total: mem.as_ref().map(|m| m.total).unwrap_or(0),
                memory_used: mem.as_ref().map(|m| m.used).unwrap_or(0),
                memory_free: mem.as_ref().map(|m| m.free).unwrap_or(0),
                utilization_gpu: util.as_ref().map(|u| u.gpu),
                utilization_memory: util.as_ref().map(|u| u.memory),
                temperature: d.temperature(TemperatureSensor::Gpu).ok(),
                power_draw: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                power_limit: d
                    .enforced_power_limit()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                processes,
            });
        }
        let cuda = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        });
        Snapshot {
            provider: "nvml".into(),
            driver_version: nvml.sys_driver_version().ok(),
            cuda_version: cuda,
            devices,
            error: None,
        }
    }
}

/// Fake devices: `LABHOST_FAKE_GPUS=4x24GiB` (or `2x24GiB,1x80GiB`), or the path of a JSON or
/// YAML file re-read on every snapshot, so a test can change memory and load while hosts run:
///
/// ```yaml
/// driver_version: "550.54.15"
/// cuda_version: "12.4"
/// devices:
///   - {name: A100, memory_total: 80GiB, memory_used: 2GiB, utilization_gpu: 35}
///   - memory_total: 24GiB
///     processes: [{pid: 4242, name: Xorg, used_memory: 300MiB}]
/// ```
pub struct FakeProbe {
    spec: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_bytes(t).map_err(|e| e.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeProcess {
    pid: u32,
    #[serde(default)]
    name: String,
    used_memory: Option<Size>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeDevice {
    name: Option<String>,
    uuid: Option<String>,
    memory_total: Size,
    memory_used: Option<Size>,
    utilization_gpu: Option<u32>,
    utilization_memory: Option<u32>,
    temperature: Option<u32>,
    power_draw: Option<f64>,
    power_limit: Option<f64>,
    #[serde(default)]
    processes: Vec<FakeProcess>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeFile {
    driver_version: Option<String>,
    cuda_version: Option<String>,
    devices: Vec<FakeDevice>,
}

pub fn fake_uuid(i: usize) -> String {
    format!("GPU-fa4e0000-0000-4000-8000-{i:012}")
}

impl FakeProbe {
    pub fn new(spec: &str) -> Self {
        FakeProbe {
            spec: spec.trim().to_string(),
        }
    }

    fn parse_counts(&self) -> Result<Vec<FakeDevice>, String> {
        let mut out = Vec::new();
        for part in self.spec.split(',') {
            let (n, size) = part
                .trim()
                .split_once(['x', 'X'])
                .ok_or_else(|| format!("'{part}' is not COUNTxSIZE (e.g. 4x24GiB) nor a file"))?;
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("bad device count in '{part}'"))?;
            parse_bytes(size).map_err(|e| e.message)?;
            for _ in 0..n {
                out.push(FakeDevice {
                    name: Some(format!("Fake GPU {}", size.trim())),
                    uuid: None,
                    memory_total: Size::Text(size.trim().into()),
                    memory_used: None,
                    utilization_gpu: Some(0),
                    utilization_memory: Some(0),
                    temperature: Some(30),
                    power_draw: Some(25.0),
                    power_limit: Some(300.0),
                    processes: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    fn load(&self) -> Result<FakeFile, String> {
        let path = PathBuf::from(&self.spec);
        let looks_like_file = path.is_file()
            || [".json", ".yml", ".yaml"]
                .iter()
                .any(|x| self.spec.ends_with(x));
        if !looks_like_file {
            return Ok(FakeFile {
                driver_version: Some("fake".into()),
                cuda_version: Some("fake".into()),
                devices: self.parse_counts()?,
            });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl GpuProbe for FakeProbe {
    fn snapshot(&self) -> Snapshot {
        let provider = format!("fake:{}", self.spec);
        let FakeFile {
            driver_version: driver,
            cuda_version: cuda,
            devices: devs,
        } = match self.load() {
            Ok(x) => x,
            Err(e) => return Snapshot::none(&provider, format!("LABHOST_FAKE_GPUS: {e}")),
        };
        let mut devices = Vec::new();
        for (i, d) in devs.into_iter().enumerate() {
            let total = match d.memory_total.bytes() {
                Ok(b) => b,
                Err(e) => {
                    return Snapshot::none(&provider, format!("LABHOST_FAKE_GPUS device {i}: {e}"))
                }
            };
            let mut processes = Vec::new();
            for p in d.processes {
                let used = match p.used_memory.as_ref().map(Size::bytes).transpose() {
                    Ok(u) => u,
                    Err(e) => {
                        return Snapshot::none(
                            &provider,
                            format!("LABHOST_FAKE_GPUS device {i}: {e}"),
                        )
                    }
                };
                processes.push(GpuProcess {
                    pid: p.pid,
                    name: p.name,
                    used_memory: used,
                });
            }
            let used = match d.memory_used.as_ref().map(Size::bytes).transpose() {
                Ok(u) => u.unwrap_or_else(|| processes.iter().filter_map(|p| p.used_memory).sum()),
                Err(e) => {
                    return Snapshot::none(&provider, format!("LABHOST_FAKE_GPUS device {i}: {e}"))
                }
            };
            let used = used.min(total);
            devices.push(Device {
                index: i as u32,
                uuid: d.uuid.unwrap_or_else(|| fake_uuid(i)),
                name: d.name.unwrap_or_else(|| "Fake GPU".into()),
                pci_bus_id: format!("00000000:{:02X}:00.0", i + 1),
                memory_total: total,
                memory_used: used,
                memory_free: total - used,
                utilization_gpu: d.utilization_gpu.or(Some(0)),
                utilization_memory: d.utilization_memory.or(Some(0)),
                temperature: d.temperature,
                power_draw: d.power_draw,
                power_limit: d.power_limit,
                processes,
            });
        }
        Snapshot {
            provider,
            driver_version: driver,
            cuda_version: cuda,
            devices,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_spec_gives_identical_idle_devices() {
        let s = FakeProbe::new("2x24GiB,1x80GiB").snapshot();
        assert_eq!(s.error, None);
        assert_eq!(s.devices.len(), 3);
        assert_eq!(s.devices[2].memory_total, 80 << 30);
        assert_eq!(s.devices[1].uuid, fake_uuid(1));
        assert_eq!(s.devices[0].memory_free, 24 << 30);
    }

    #[test]
    fn file_spec_is_reread_and_errors_are_reported_not_fatal() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("gpus.yml");
        std::fs::write(
            &f,
            "devices:\n  - {memory_total: 16GiB, memory_used: 4GiB, utilization_gpu: 50}\n",
        )
        .unwrap();
        let p = FakeProbe::new(f.to_str().unwrap());
        assert_eq!(p.snapshot().devices[0].memory_used, 4 << 30);
        std::fs::write(&f, "devices:\n  - memory_total: 16GiB\n    processes: [{pid: 7, name: Xorg, used_memory: 1GiB}]\n").unwrap();
        let s = p.snapshot();
        assert_eq!(s.devices[0].memory_used, 1 << 30);
        assert_eq!(s.devices[0].processes[0].name, "Xorg");
        std::fs::write(&f, "devices: [{memory_total: lots}]").unwrap();
        let s = p.snapshot();
        assert!(s.devices.is_empty());
        assert!(s.error.unwrap().contains("invalid size 'lots'"));
        assert!(FakeProbe::new("four").snapshot().error.is_some());
    }
}
