//! The GPU ledger across real processes, on fake GPUs (and on real ones where a GPU exists).
use std::collections::HashMap;
use std::process::{Child, Stdio};

use crate::util::TestCmd;

const HOLDER: &str = r#"
let log = ARGS[0];
let me = ARGS[1];
let cycles = parse_int(ARGS[2]);
for i in 0..cycles {
    let lease = gpu::reserve(1, #{timeout: "120s"});
    let dev = lease.indices[0];
    fs::append(log, `start ${dev} ${me} ${time::unix()}` + "\n");
    time::sleep(0.001);
    fs::append(log, `stop ${dev} ${me} ${time::unix()}` + "\n");
    lease.release();
}
"#;

/// 16 processes × 500 reserve/release cycles on 4 one-slot GPUs: the shared log (appends are
/// atomic and ordered) must show, per device, strictly alternating start/stop of one holder.
#[test]
fn sixteen_processes_never_overlap_on_a_slot() {
    let t = TestCmd::new()
        .file("holder.rhai", HOLDER)
        .env("LABHOST_FAKE_GPUS", "4x24GiB");
    let log = t.path().join("events.log");
    let children: Vec<Child> = (0..16)
        .map(|i| {
            let mut c = t.command();
            c.args([
                "run",
                "holder.rhai",
                log.to_str().unwrap(),
                &format!("p{i}"),
                "500",
            ]);
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "holder failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut holder: HashMap<&str, Option<&str>> = HashMap::new();
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (ev, dev, who) = (f[0], f[1], f[2]);
        let cur = holder.entry(dev).or_insert(None);
        match ev {
            "start" => {
                assert!(
                    cur.is_none(),
                    "overlap on GPU {dev}: {who} started while {cur:?} held it (line {lines})"
                );
                *cur = Some(who);
                *per_device.entry(dev).or_default() += 1;
            }
            "stop" => {
                assert_eq!(
                    *cur,
                    Some(who),
                    "GPU {dev}: {who} stopped a slot it did not hold (line {lines})"
                );
                *cur = None;
            }
            _ => panic!("bad line {line}"),
        }
        lines += 1;
    }
    assert_eq!(lines, 16 * 500 * 2);
    assert!(holder.values().all(|h| h.is_none()));
    assert_eq!(
        per_device.len(),
        4,
        "not every GPU was used: {per_device:?}"
    );
}

/// A holder killed with SIGKILL mid-lease leaves nothing booked: the slot is free at once
/// (a non-waiting reservation succeeds), and a waiter that queued before the kill gets it.
#[test]
fn kill_9_frees_the_slots_at_once() {
    let t = TestCmd::new()
        .file(
            "hold.rhai",
            "let l = gpu::reserve(4);\nprint(\"held\");\ntime::sleep(\"1h\");",
        )
        .file(
            "waiter.rhai",
            "print(\"waiting\");\nlet l = gpu::reserve(2, #{timeout: \"60s\"});\nprint(l.indices);",
        )
        .file(
            "now.rhai",
            "print(gpu::reserve(4, #{wait: false}).indices);",
        )
        .env("LABHOST_FAKE_GPUS", "4x24GiB");
    let mut holder = t.spawn(["run", "hold.rhai"]);
    holder.expect_line("held");
    // While held, nothing is free.
    let (code, _, stderr) = t.spawn(["run", "now.rhai"]).finish();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("gpu.busy"), "{stderr}");
    let mut waiter = t.spawn(["run", "waiter.rhai"]);
    waiter.expect_line("waiting");
    holder.signal(libc::SIGKILL);
    holder.finish();
    // The dying holder's locks drop one by one; the waiter takes the first two that are free.
    let got: Vec<u32> = serde_json::from_str(&waiter.line()).unwrap();
    assert_eq!(got.len(), 2);
    assert_ne!(got[0], got[1]);
    assert_eq!(waiter.finish().0, Some(0));
    // The waiter has exited too: all four are free for a non-waiting request.
    let (code, out, stderr) = t.spawn(["run", "now.rhai"]).finish();
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "[0, 1, 2, 3]\n"),
        "{stderr}"
    );
}

#[test]
fn gpus_command_shows_devices_and_holders() {
    let t = TestCmd::new()
        .file("hold.rhai", "let l = gpu::reserve(1, #{holder: \"exp-7\"});\nprint(\"held\");\ntime::sleep(\"1h\");")
        .env("LABHOST_FAKE_GPUS", "2x24GiB");
    let mut holder = t.spawn(["run", "hold.rhai"]);
    holder.expect_line("held");
    let pid = holder.child.id();
    let (code, text, _) = t.spawn(["gpus"]).finish();
    assert_eq!(code, Some(0));
    assert!(text.contains("2 GPU(s) via fake:2x24GiB"), "{text}");
    let row0 = text
        .lines()
        .find(|l| l.trim_start().starts_with("0 "))
        .unwrap();
    assert!(row0.contains(&format!("pid {pid} job exp-7")), "{text}");
    let row1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(row1.trim_end().ends_with('-'), "{text}");
    let (_, json, _) = t.spawn(["gpus", "--json"]).finish();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["snapshot"]["devices"].as_array().unwrap().len(), 2);
    assert_eq!(v["holders"][0]["job"], "exp-7");
    assert_eq!(v["holders"][0]["pid"], pid);
    holder.signal(libc::SIGKILL);
    holder.finish();
}

#[test]
fn no_gpus_is_a_clear_state_not_a_crash() {
    // No driver on CI machines: NVML init fails fast and the box has 0 GPUs.
    let o = TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "")
        .script("print(gpu::count());\nprint(gpu::available());\ntry { gpu::reserve(1) } catch (e) { print(e.kind) }")
        .run();
    if std::path::Path::new("/dev/nvidiactl").exists() {
        return; // a real GPU box: covered by the needs-GPU tests
    }
    o.success().stdout_is("0\nfalse\ngpu.unavailable\n");
    TestCmd::new()
        .args(["gpus"])
        .run()
        .success()
        .stdout_has("no GPUs (nvml)");
    TestCmd::new()
        .env("LABHOST_FAKE_GPUS", "lots")
        .args(["gpus"])
        .run()
        .success()
        .stdout_has("no GPUs (fake:lots): LABHOST_FAKE_GPUS: 'lots' is not COUNTxSIZE");
}

/// A reservation that needs free memory waits while the (fake) device is full and goes
/// ahead as soon as the device file says the memory was freed.
#[test]
fn a_waiting_reservation_sees_memory_freed_while_it_waits() {
    let t = TestCmd::new()
        .file("gpus.yml", "devices:\n  - {memory_total: 24GiB, memory_used: 20GiB}\n")
        .file(
            "want.rhai",
            "print(\"waiting\");\nlet l = gpu::reserve(1, #{min_free_memory: \"10GiB\", wait: false, timeout: \"60s\"});",
        )
        .file(
            "wait.rhai",
            "print(\"waiting\");\nprint(gpu::reserve(1, #{min_free_memory: \"10GiB\", timeout: \"60s\"}).indices);",
        );
    let spec = t.path().join("gpus.yml");
    let t = t.env("LABHOST_FAKE_GPUS", spec.to_str().unwrap());
    // Not enough free memory: a non-waiting request says so.
    let (code, _, stderr) = t.spawn(["run", "want.rhai"]).finish();
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("GPU0 24.0GiB: memory 83% used >= 50%"),
        "{stderr}"
    );
    let mut w = t.spawn(["run", "wait.rhai"]);
    w.expect_line("waiting");
    assert!(w.is_running());
    // Replaced atomically, as a device's state changes: the waiting reader polls the file
    // and must never see it half-written (std::fs::write truncates first).
    let tmp = spec.with_extension("tmp");
    std::fs::write(
        &tmp,
        "devices:\n  - {memory_total: 24GiB, memory_used: 1GiB}\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &spec).unwrap();
    let (code, out, err) = w.finish();
    assert_eq!((code, out.as_str()), (Some(0), "[0]\n"), "{err}");
}

#[test]
fn bad_requests_are_clear_errors() {
    let run = |s: &str| {
        TestCmd::new()
            .env("LABHOST_FAKE_GPUS", "2x24GiB")
            .script(s)
            .run()
    };
    run("gpu::reserve(-1);")
        .code(1)
        .stderr_has("error[invalid_argument]: cannot reserve -1 GPUs");
    run("gpu::reserve(1, #{slots_per_gpu: 0});")
        .code(1)
        .stderr_has("`slots_per_gpu` must be at least 1, got 0");
    run("gpu::reserve(1, #{max_lod: 0.5});")
        .code(1)
        .stderr_has("unknown key `max_lod` (did you mean `max_load`?)");
    run("gpu::select(#{order: \"fastest\"});")
        .code(1)
        .stderr_has("`order` must be one of \"first\", \"last\", \"random\", \"load\", \"memory\", got \"fastest\"");
    run("gpu::reserve(1, #{min_free_memory: \"lots\"});")
        .code(1)
        .stderr_has("invalid size 'lots'");
}

fn nvidia_smi(query: &str) -> Vec<Vec<String>> {
    let o = std::process::Command::new("nvidia-smi")
        .args([
            format!("--query-gpu={query}"),
            "--format=csv,noheader,nounits".to_string(),
        ])
        .output()
        .expect("nvidia-smi");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split(", ").map(|s| s.trim().to_string()).collect())
        .collect()
}

#[test]
#[ignore = "needs GPU"]
fn real_snapshot_agrees_with_nvidia_smi() {
    let o = TestCmd::new().args(["gpus", "--json"]).run();
    o.success();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let devs = v["snapshot"]["devices"].as_array().unwrap().clone();
    let smi = nvidia_smi("index,uuid,name,memory.total");
    assert_eq!(devs.len(), smi.len());
    for (d, row) in devs.iter().zip(&smi) {
        assert_eq!(d["index"].to_string(), row[0]);
        assert_eq!(d["uuid"], row[1]);
        assert_eq!(d["name"], row[2]);
        // nvidia-smi reports MiB.
        assert_eq!(
            d["memory_total"].as_u64().unwrap() / (1 << 20),
            row[3].parse::<u64>().unwrap()
        );
    }
}

#[test]
#[ignore = "needs GPU"]
fn a_child_sees_the_reserved_device() {
    let o = TestCmd::new()
        .script("let l = gpu::reserve(1, #{max_load: 1.0, max_memory: 1.0});\nprint(sh::run(\"echo $CUDA_DEVICE_ORDER $CUDA_VISIBLE_DEVICES $LABHOST_GPU_UUIDS\", #{env: l.env}).stdout.trim());")
        .run();
    o.success();
    let f: Vec<&str> = o.stdout.split_whitespace().collect();
    assert_eq!(f[0], "PCI_BUS_ID");
    let smi = nvidia_smi("index,uuid");
    let row = smi
        .iter()
        .find(|r| r[0] == f[1])
        .expect("index known to nvidia-smi");
    assert_eq!(
        row[1], f[2],
        "CUDA_VISIBLE_DEVICES index and UUID name different devices"
    );
}

/// A reserved GPU reaches a container by UUID (the NVIDIA runtime injects nvidia-smi).
/// Needs a GPU machine with a Docker engine, the NVIDIA container toolkit and an image
/// (`DOCKER_IMAGE_NAME`, e.g. any CUDA base image).
#[test]
#[ignore = "needs GPU"]
fn gpu_passthrough_into_a_container() {
    let o = TestCmd::new()
        .script(
            r#"
            let lease = gpu::reserve(1, #{max_load: 1.0, max_memory: 1.0});
            let r = docker::run(#{command: "nvidia-smi -L", gpus: lease, prefix: ""});
            assert_eq(r.exit_code, 0);
            print(lease.uuids[0]);
            "#,
        )
        .env(
            "DOCKER_IMAGE_NAME",
            &std::env::var("DOCKER_IMAGE_NAME")
                .unwrap_or_else(|_| "nvidia/cuda:12.4.1-base-ubuntu22.04".into()),
        )
        .run();
    o.success();
    let uuid = o.stdout.lines().last().unwrap();
    let listed: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with("GPU ")).collect();
    assert_eq!(listed.len(), 1, "{}", o.stdout);
    assert!(listed[0].contains(uuid), "{}", o.stdout);
}
