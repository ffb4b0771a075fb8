//! Rhai binding for `gpu`. Examples in this file run with `LABHOST_FAKE_GPUS=2x24GiB`.
use rhai::plugin::*;
#[allow(unused_imports)]
use rhai::{Array, Map};

use crate::bridge::{decode, host_err, OrRhai, RhaiResult};
use crate::modules::gpu::ledger::{Ledger, ReserveOpts};
use crate::modules::gpu::select::SelectOpts;
use crate::util::Seconds;

pub fn module() -> Module {
    exported_module!(api)
}

/// `gpu::reserve` options besides the selection ones.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReserve {
    slots_per_gpu: Option<u32>,
    wait: Option<bool>,
    timeout: Option<Seconds>,
    grace: Option<Seconds>,
    holder: Option<String>,
}

const RESERVE_KEYS: &[&str] = &["slots_per_gpu", "wait", "timeout", "grace", "holder"];
const SELECT_KEYS: &[&str] = &[
    "order",
    "limit",
    "max_load",
    "max_memory",
    "min_free_memory",
    "exclude",
    "include_nan",
    "ignore_processes",
    "no_processes",
];

fn reserve_opts(ctx: &NativeCallContext, opts: Map) -> RhaiResult<ReserveOpts> {
    let what = "gpu::reserve options";
    let all: Vec<&str> = RESERVE_KEYS.iter().chain(SELECT_KEYS).copied().collect();
    if let Some(k) = opts.keys().find(|k| !all.contains(&k.as_str())) {
        let hint = match crate::bridge::decode::did_you_mean(k, &all) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("keys: {}", all.join(", ")),
        };
        return Err(host_err(
            ctx,
            "invalid_argument",
            format!("{what}: unknown key `{k}` ({hint})"),
        ));
    }
    let (mine, select): (Map, Map) = opts
        .into_iter()
        .partition(|(k, _)| RESERVE_KEYS.contains(&k.as_str()));
    let r: RawReserve = decode(ctx, what, mine.into())?;
    let mut o = ReserveOpts::default();
    if let Some(k) = r.slots_per_gpu {
        if k == 0 {
            return Err(host_err(
                ctx,
                "invalid_argument",
                format!("{what}: `slots_per_gpu` must be at least 1, got 0"),
            ));
        }
        o.slots_per_gpu = k;
    }
    if let Some(w) = r.wait {
        o.wait = w;
    }
    o.timeout = r.timeout.map(|t| t.0);
    if let Some(g) = r.grace {
        o.grace = g.0;
    }
    o.holder = r.holder;
    o.select = decode::<SelectOpts>(ctx, what, select.into())?;
    Ok(o)
}

fn reserve(ctx: &NativeCallContext, n: i64, opts: Map) -> RhaiResult<Lease> {
    let n = usize::try_from(n)
        .map_err(|_| host_err(ctx, "invalid_argument", format!("cannot reserve {n} GPUs")))?;
    let o = reserve_opts(ctx, opts)?;
    let ledger = Ledger::open().or_rhai(ctx)?;
    let cancel = crate::runtime::ctx().cancel.token();
    ledger.reserve(n, &o, &cancel).or_rhai(ctx)
}

pub type Lease = crate::modules::gpu::ledger::Lease;

#[export_module]
pub mod api {
    use crate::modules::gpu as m;
    use crate::modules::gpu::ledger::Ledger;
    use crate::modules::gpu::select::{select, SelectOpts};

    pub type GpuLease = super::Lease;

    /// A snapshot of every GPU: `#{provider, driver_version, cuda_version, error, devices}`;
    /// each device has `index, uuid, name, pci_bus_id, memory_total/used/free` (bytes),
    /// `utilization_gpu/memory` (%), `temperature` (°C), `power_draw/limit` (W), `processes`.
    /// Unsupported fields are `()`. With no driver, `devices` is empty and `error` says why.
    ///
    /// ```rhai
    /// let s = gpu::list();
    /// assert_eq(s.devices.len(), 2);
    /// assert_eq(s.devices[0].memory_total, 24 * 1024 * 1024 * 1024);
    /// assert(s.devices[1].uuid.starts_with("GPU-"));
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn list(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        crate::bridge::encode(&ctx, &m::snapshot())
    }

    /// Number of GPUs (0 without a driver; never an error).
    ///
    /// ```rhai
    /// assert_eq(gpu::count(), 2);
    /// ```
    #[rhai_fn(volatile)]
    pub fn count() -> i64 {
        m::snapshot().devices.len() as i64
    }

    /// True when at least one GPU can be used.
    ///
    /// ```rhai
    /// if gpu::available() { print("training on GPU"); } else { print("CPU only"); }
    /// ```
    #[rhai_fn(volatile)]
    pub fn available() -> bool {
        let s = m::snapshot();
        s.error.is_none() && !s.devices.is_empty()
    }

    /// One line on the GPU situation: how many, through which provider, or why there are none
    /// (no NVIDIA driver, NVML error, a bad `LABHOST_FAKE_GPUS`).
    ///
    /// ```rhai
    /// assert(gpu::status().starts_with("2 GPU(s)"));
    /// ```
    #[rhai_fn(volatile)]
    pub fn status() -> String {
        m::status(&m::snapshot())
    }

    /// Indices of usable GPUs with GPUtil `getAvailable` defaults (first, limit 1, max_load
    /// and max_memory 0.5), leaving out devices the ledger has fully reserved.
    ///
    /// ```rhai
    /// assert_eq(gpu::select(), [0]);
    /// ```
    #[rhai_fn(name = "select", return_raw, volatile)]
    pub fn select_default(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        select_with(ctx, Map::new())
    }

    /// Indices of usable GPUs. Options: `order` (`"first"`, `"last"`, `"random"`, `"load"`,
    /// `"memory"`), `limit`, `max_load`, `max_memory` (fractions; strict bounds), `min_free_memory`
    /// (bytes or `"10GiB"`), `exclude` (indices or UUIDs), `include_nan`, `ignore_processes`
    /// (names whose memory does not count), `no_processes`.
    ///
    /// ```rhai
    /// assert_eq(gpu::select(#{order: "last", limit: 2}), [1, 0]);
    /// assert_eq(gpu::select(#{exclude: [0], min_free_memory: "20GiB"}), [1]);
    /// assert_eq(gpu::select(#{min_free_memory: "30GiB"}), []);
    /// ```
    #[rhai_fn(name = "select", return_raw, volatile)]
    pub fn select_with(ctx: NativeCallContext, opts: Map) -> Result<Array, Box<EvalAltResult>> {
        let o: SelectOpts = crate::bridge::decode(&ctx, "gpu::select options", opts.into())?;
        let snap = m::snapshot();
        let holders = match Ledger::open() {
            Ok(l) => l.holders(),
            Err(_) => Vec::new(),
        };
        let view = m::select::LedgerView {
            full: m::ledger::busy_uuids(&holders),
            young: Default::default(),
        };
        let seed = std::process::id() as u64 ^ (m::ledger_seed());
        Ok(select(&snap, &view, &o, seed)
            .into_iter()
            .map(|i| Dynamic::from(i as i64))
            .collect())
    }

    /// Reserves `n` GPUs exclusively, waiting until they are free (see the options form).
    /// The lease is released when the script drops it, calls `release()`, exits or dies.
    ///
    /// ```rhai
    /// let lease = gpu::reserve(1);
    /// assert_eq(lease.indices, [0]);
    /// assert_eq(lease.env.CUDA_VISIBLE_DEVICES, "0");
    /// let second = gpu::reserve(1);       // GPU 0 is taken: the next one
    /// assert_eq(second.indices, [1]);
    /// lease.release();
    /// assert_eq(gpu::reserve(1).indices, [0]);
    /// ```
    #[rhai_fn(name = "reserve", return_raw, volatile)]
    pub fn reserve_n(ctx: NativeCallContext, n: i64) -> Result<GpuLease, Box<EvalAltResult>> {
        super::reserve(&ctx, n, Map::new())
    }

    /// Reserves `n` GPUs with options: the `gpu::select` criteria plus `slots_per_gpu` (jobs
    /// that may share a device; 1 = exclusive), `wait` (default true; false fails at once with
    /// `gpu.busy`), `timeout` (`gpu.timeout` says what it waited for and what the GPUs looked
    /// like), `grace` (how long after a job starts on a device before its memory reading is
    /// trusted; default 10s or `LABHOST_GPU_GRACE`), `holder` (a label shown by `labhost gpus`).
    /// Errors: `gpu.unavailable` (no GPUs), `gpu.unsatisfiable` (more than the machine has).
    ///
    /// ```rhai
    /// let a = gpu::reserve(1, #{slots_per_gpu: 2, grace: 0});
    /// let b = gpu::reserve(1, #{slots_per_gpu: 2, grace: 0});
    /// assert_eq(a.indices, b.indices);     // two jobs share one device
    /// let c = gpu::reserve(1);              // exclusive: the other device
    /// assert_eq(c.indices, [1]);
    /// let kinds = [];
    /// try { gpu::reserve(1, #{wait: false}); } catch (e) { kinds.push(e.kind); }
    /// try { gpu::reserve(1, #{timeout: "100ms"}); } catch (e) { kinds.push(e.kind); }
    /// try { gpu::reserve(3); } catch (e) { kinds.push(e.kind); }
    /// assert_eq(kinds, ["gpu.busy", "gpu.timeout", "gpu.unsatisfiable"]);
    /// ```
    #[rhai_fn(name = "reserve", return_raw, volatile)]
    pub fn reserve_with(
        ctx: NativeCallContext,
        n: i64,
        opts: Map,
    ) -> Result<GpuLease, Box<EvalAltResult>> {
        super::reserve(&ctx, n, opts)
    }

    /// Slots held right now, by any process: `#{uuid, slot, pid, job, since, slots}` each.
    ///
    /// ```rhai
    /// let lease = gpu::reserve(1, #{holder: "exp-42"});
    /// let h = gpu::holders();
    /// assert_eq(h.len(), 1);
    /// assert_eq(h[0].job, "exp-42");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn holders(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let l = Ledger::open().or_rhai(&ctx)?;
        l.holders()
            .iter()
            .map(|h| crate::bridge::encode(&ctx, h))
            .collect()
    }

    /// The leased devices: `#{index, uuid, name, slot}` each (slot 0 = exclusive).
    ///
    /// ```rhai
    /// let lease = gpu::reserve(1);
    /// assert_eq(lease.devices[0].slot, 0);
    /// ```
    #[rhai_fn(get = "devices", pure, return_raw)]
    pub fn devices(
        ctx: NativeCallContext,
        lease: &mut GpuLease,
    ) -> Result<Array, Box<EvalAltResult>> {
        lease
            .devices()
            .iter()
            .map(|d| crate::bridge::encode(&ctx, d))
            .collect()
    }

    /// NVML indices of the leased devices.
    ///
    /// ```rhai
    /// assert_eq(gpu::reserve(2).indices, [0, 1]);
    /// ```
    #[rhai_fn(get = "indices", pure)]
    pub fn indices(lease: &mut GpuLease) -> Array {
        lease
            .indices()
            .into_iter()
            .map(|i| Dynamic::from(i as i64))
            .collect()
    }

    /// UUIDs of the leased devices.
    ///
    /// ```rhai
    /// assert(gpu::reserve(1).uuids[0].starts_with("GPU-"));
    /// ```
    #[rhai_fn(get = "uuids", pure)]
    pub fn uuids(lease: &mut GpuLease) -> Array {
        lease.uuids().into_iter().map(Dynamic::from).collect()
    }

    /// Environment for a child process: `CUDA_DEVICE_ORDER=PCI_BUS_ID`,
    /// `CUDA_VISIBLE_DEVICES` (NVML indices, which mean the same devices under PCI_BUS_ID
    /// order) and `LABHOST_GPU_UUIDS`.
    ///
    /// ```rhai
    /// let lease = gpu::reserve(2);
    /// let r = sh::run("echo $CUDA_DEVICE_ORDER $CUDA_VISIBLE_DEVICES", #{env: lease.env});
    /// assert_eq(r.stdout, "PCI_BUS_ID 0,1\n");
    /// ```
    #[rhai_fn(get = "env", pure)]
    pub fn env(lease: &mut GpuLease) -> Map {
        lease
            .env()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    /// The Docker Engine `DeviceRequest` for the leased devices (by UUID).
    ///
    /// ```rhai
    /// let r = gpu::reserve(1).docker_device_request;
    /// assert_eq(r.Driver, "nvidia");
    /// assert_eq(r.Capabilities, [["gpu"]]);
    /// ```
    #[rhai_fn(get = "docker_device_request", pure, return_raw)]
    pub fn docker_device_request(
        ctx: NativeCallContext,
        lease: &mut GpuLease,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        crate::bridge::encode(&ctx, &lease.device_request())
    }

    /// True until the lease is released.
    ///
    /// ```rhai
    /// let lease = gpu::reserve(1);
    /// assert(lease.held);
    /// lease.release();
    /// assert(!lease.held);
    /// ```
    #[rhai_fn(get = "held", pure)]
    pub fn held(lease: &mut GpuLease) -> bool {
        lease.is_held()
    }

    /// Releases the lease now (the slot is free for others at once). Releasing twice is fine.
    ///
    /// ```rhai
    /// let lease = gpu::reserve(2);
    /// lease.release();
    /// lease.release();
    /// assert_eq(gpu::reserve(2, #{wait: false}).indices, [0, 1]);
    /// ```
    #[rhai_fn(global, pure)]
    pub fn release(lease: &mut GpuLease) {
        lease.release()
    }

    /// `GpuLease([0, 1], held: true)`.
    ///
    /// ```rhai
    /// assert_eq(gpu::reserve(1).to_string(), "GpuLease([0], held: true)");
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(lease: &mut GpuLease) -> String {
        format!("{lease:?}")
    }
}
