//! GPU selection: a pure function over a snapshot and the ledger's view, with GPUtil's
//! `getAvailable` semantics (strict `load < max_load`, `memory_util < max_memory`, NaN
//! excluded unless `include_nan`, order then limit) plus what GPUtil lacks: a free-memory
//! floor, processes to ignore (a desktop compositor), "no processes at all", and the ledger.
use std::collections::HashSet;

use serde::{Deserialize, Deserializer};

use super::{Device, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Lowest index first (GPUtil default).
    #[default]
    First,
    Last,
    Random,
    /// Least loaded first; NaN last.
    Load,
    /// Lowest memory utilisation first; NaN last.
    Memory,
}

/// Sizes as bytes (`1073741824`) or text (`"10GiB"`).
pub fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<crate::util::Bytes>::deserialize(d)?.map(|b| b.0))
}

/// Device ids given as an index (`0`) or a UUID (`"GPU-…"`).
pub fn de_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<crate::util::DeviceId>::deserialize(d)?
        .into_iter()
        .map(|i| i.0)
        .collect())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectOpts {
    pub order: Order,
    /// How many devices at most (GPUtil default 1).
    pub limit: usize,
    /// Strict upper bound on load (utilization / 100). GPUtil default 0.5; nussl uses 0.05.
    pub max_load: f64,
    /// Strict upper bound on memory used / total. GPUtil default 0.5; nussl uses 0.05.
    pub max_memory: f64,
    /// At least this much free memory (bytes or `"10GiB"`).
    #[serde(deserialize_with = "de_opt_bytes")]
    pub min_free_memory: Option<u64>,
    /// Devices never to pick, by index or UUID.
    #[serde(deserialize_with = "de_ids")]
    pub exclude: Vec<String>,
    /// Treat unsupported (NaN) load or memory as acceptable.
    pub include_nan: bool,
    /// Process names whose memory does not count as used (e.g. `Xorg`, `gnome-shell`).
    pub ignore_processes: Vec<String>,
    /// Only devices with no processes besides ignored ones.
    pub no_processes: bool,
}

impl Default for SelectOpts {
    fn default() -> Self {
        SelectOpts {
            order: Order::First,
            limit: 1,
            max_load: 0.5,
            max_memory: 0.5,
            min_free_memory: None,
            exclude: Vec::new(),
            include_nan: false,
            ignore_processes: Vec::new(),
            no_processes: false,
        }
    }
}

impl SelectOpts {
    /// Whether any criterion reads memory (then a device a job just started on is not judged
    /// until the grace period has passed: the job may not have allocated yet).
    pub fn reads_memory(&self) -> bool {
        self.min_free_memory.is_some() || self.max_memory < 1.0
    }
}

/// What the ledger says about devices (by UUID).
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    /// Every slot is held.
    pub full: HashSet<String>,
    /// A slot was taken less than the grace period ago: NVML memory is not trusted yet.
    pub young: HashSet<String>,
}

/// Why a device was not picked (for timeout messages and `labhost gpus`).
pub fn reject_reason(d: &Device, view: &LedgerView, o: &SelectOpts) -> Option<String> {
    if o.exclude
        .iter()
        .any(|e| *e == d.index.to_string() || *e == d.uuid)
    {
        return Some("excluded".into());
    }
    if view.full.contains(&d.uuid) {
        return Some("all slots reserved".into());
    }
    if o.reads_memory() && view.young.contains(&d.uuid) {
        return Some("a job started on it within the grace period".into());
    }
    let ignored: u64 = d
        .processes
        .iter()
        .filter(|p| o.ignore_processes.contains(&p.name))
        .filter_map(|p| p.used_memory)
        .sum();
    let used = d.memory_used.saturating_sub(ignored);
    if o.no_processes {
        if let Some(p) = d
            .processes
            .iter()
            .find(|p| !o.ignore_processes.contains(&p.name))
        {
            return Some(format!("process {} ({}) is running on it", p.pid, p.name));
        }
    }
    let load = d.load();
    if load.is_nan() && !o.include_nan {
        return Some("load unknown".into());
    }
    if !load.is_nan() && load >= o.max_load {
        return Some(format!(
            "load {:.0}% >= {:.0}%",
            load * 100.0,
            o.max_load * 100.0
        ));
    }
    let mem = if d.memory_total == 0 {
        f64::NAN
    } else {
        used as f64 / d.memory_total as f64
    };
    if mem.is_nan() && !o.include_nan {
        return Some("memory unknown".into());
    }
    if !mem.is_nan() && mem >= o.max_memory {
        return Some(format!(
            "memory {:.0}% used >= {:.0}%",
            mem * 100.0,
            o.max_memory * 100.0
        ));
    }
    if let Some(min) = o.min_free_memory {
        let free = d.memory_total.saturating_sub(used);
        if free < min {
            return Some(format!(
                "{} free < {}",
                crate::util::format_bytes(free),
                crate::util::format_bytes(min)
            ));
        }
    }
    None
}

fn nan_last(x: f64) -> f64 {
    if x.is_nan() {
        f64::INFINITY
    } else {
        x
    }
}

/// Indices of the devices that qualify, in the requested order, at most `limit`.
pub fn select(s: &Snapshot, view: &LedgerView, o: &SelectOpts, seed: u64) -> Vec<u32> {
    let mut ok: Vec<&Device> = s
        .devices
        .iter()
        .filter(|d| reject_reason(d, view, o).is_none())
        .collect();
    ok.sort_by_key(|d| d.index);
    match o.order {
        Order::First => {}
        Order::Last => ok.reverse(),
        Order::Load => ok.sort_by(|a, b| nan_last(a.load()).total_cmp(&nan_last(b.load()))),
        Order::Memory => {
            ok.sort_by(|a, b| nan_last(a.memory_util()).total_cmp(&nan_last(b.memory_util())))
        }
        Order::Random => {
            // xorshift64*: enough to spread jobs; no cryptographic needs here.
            let mut x = seed | 1;
            for i in (1..ok.len()).rev() {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let j = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
                ok.swap(i, j);
            }
        }
    }
    ok.into_iter().take(o.limit).map(|d| d.index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::gpu::GpuProcess;

    /// (index, load %, memory used of 100) — like GPUtil's test fixtures.
    fn snap(devs: &[(u32, Option<u32>, u64)]) -> Snapshot {
        Snapshot {
            provider: "test".into(),
            driver_version: None,
            cuda_version: None,
            error: None,
            devices: devs
                .iter()
                .map(|&(i, load, used)| Device {
                    index: i,
                    uuid: format!("GPU-{i}"),
                    name: "t".into(),
                    pci_bus_id: String::new(),
                    memory_total: 100,
                    memory_used: used,
                    memory_free: 100 - used,
                    utilization_gpu: load,
                    utilization_memory: None,
                    temperature: None,
                    power_draw: None,
                    power_limit: None,
                    processes: Vec::new(),
                })
                .collect(),
        }
    }

    fn pick(s: &Snapshot, o: SelectOpts) -> Vec<u32> {
        select(s, &LedgerView::default(), &o, 42)
    }

    #[test]
    fn gputil_get_available_table() {
        let s = snap(&[
            (0, Some(10), 80),
            (1, Some(60), 10),
            (2, Some(5), 20),
            (3, Some(0), 49),
            (4, None, 0),
        ]);
        let all = SelectOpts {
            limit: 10,
            ..Default::default()
        };
        // (options, expected) — strict bounds, NaN excluded, order then limit.
        let table: Vec<(SelectOpts, Vec<u32>)> = vec![
            (SelectOpts::default(), vec![2]),
            (all.clone(), vec![2, 3]),
            (
                SelectOpts {
                    order: Order::Last,
                    ..all.clone()
                },
                vec![3, 2],
            ),
            (
                SelectOpts {
                    order: Order::Load,
                    ..all.clone()
                },
                vec![3, 2],
            ),
            (
                SelectOpts {
                    order: Order::Memory,
                    ..all.clone()
                },
                vec![2, 3],
            ),
            (
                SelectOpts {
                    max_memory: 0.49,
                    ..all.clone()
                },
                vec![2],
            ),
            (
                SelectOpts {
                    max_load: 1.0,
                    max_memory: 1.0,
                    ..all.clone()
                },
                vec![0, 1, 2, 3],
            ),
            (
                SelectOpts {
                    include_nan: true,
                    ..all.clone()
                },
                vec![2, 3, 4],
            ),
            (
                SelectOpts {
                    include_nan: true,
                    order: Order::Load,
                    ..all.clone()
                },
                vec![3, 2, 4],
            ),
            (
                SelectOpts {
                    exclude: vec!["2".into()],
                    ..all.clone()
                },
                vec![3],
            ),
            (
                SelectOpts {
                    exclude: vec!["GPU-3".into()],
                    ..all.clone()
                },
                vec![2],
            ),
            (
                SelectOpts {
                    max_load: 0.05,
                    max_memory: 0.05,
                    ..all.clone()
                },
                vec![],
            ),
            (
                SelectOpts {
                    min_free_memory: Some(60),
                    max_memory: 1.0,
                    ..all.clone()
                },
                vec![2],
            ),
            (
                SelectOpts {
                    min_free_memory: Some(60),
                    max_memory: 1.0,
                    max_load: 1.0,
                    ..all.clone()
                },
                vec![1, 2],
            ),
        ];
        for (i, (o, want)) in table.into_iter().enumerate() {
            assert_eq!(pick(&s, o), want, "row {i}");
        }
    }

    #[test]
    fn random_order_is_a_permutation_of_the_available_set() {
        let s = snap(&[
            (0, Some(0), 0),
            (1, Some(0), 0),
            (2, Some(0), 0),
            (3, Some(90), 0),
        ]);
        let o = SelectOpts {
            order: Order::Random,
            limit: 10,
            ..Default::default()
        };
        let mut seen = HashSet::new();
        for seed in 0..50 {
            let mut v = select(&s, &LedgerView::default(), &o, seed);
            seen.insert(v.clone());
            v.sort();
            assert_eq!(v, vec![0, 1, 2]);
        }
        assert!(seen.len() > 1, "random order never varied");
    }

    #[test]
    fn ignored_processes_do_not_count_and_no_processes_means_none() {
        let mut s = snap(&[(0, Some(0), 60), (1, Some(0), 0)]);
        s.devices[0].processes = vec![GpuProcess {
            pid: 10,
            name: "Xorg".into(),
            used_memory: Some(55),
        }];
        s.devices[1].processes = vec![GpuProcess {
            pid: 11,
            name: "python".into(),
            used_memory: None,
        }];
        let all = SelectOpts {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(pick(&s, all.clone()), vec![1]);
        let ign = SelectOpts {
            ignore_processes: vec!["Xorg".into()],
            ..all.clone()
        };
        assert_eq!(pick(&s, ign.clone()), vec![0, 1]);
        assert_eq!(
            pick(
                &s,
                SelectOpts {
                    no_processes: true,
                    ..ign
                }
            ),
            vec![0]
        );
    }

    #[test]
    fn ledger_full_and_young_devices_are_skipped() {
        let s = snap(&[(0, Some(0), 0), (1, Some(0), 0), (2, Some(0), 0)]);
        let view = LedgerView {
            full: ["GPU-0".to_string()].into(),
            young: ["GPU-1".to_string()].into(),
        };
        let all = SelectOpts {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(select(&s, &view, &all, 1), vec![2]);
        // Without memory criteria a young device is fine: only memory readings are untrusted.
        let no_mem = SelectOpts {
            max_memory: 1.0,
            ..all
        };
        assert_eq!(select(&s, &view, &no_mem, 1), vec![1, 2]);
        assert_eq!(
            reject_reason(&s.devices[1], &view, &SelectOpts::default()).unwrap(),
            "a job started on it within the grace period"
        );
    }
}
