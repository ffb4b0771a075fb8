//! Distributed launch on this machine, as Azure ML launches a job with a `distribution:`:
//! one process per rank (`pytorch`, `mpi`: `process_count_per_instance × instance_count`;
//! `tensorflow`: `worker_count` workers and `parameter_server_count` parameter servers),
//! each with the environment Azure ML gives it (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `LOCAL_WORLD_SIZE`, `NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT`; `TF_CONFIG`;
//! `OMPI_COMM_WORLD_*`). The ranks are one job to the engine: they run under the job's
//! launcher process (`labhost launch`), in its containment; one rank failing stops the
//! others and the launcher exits with that rank's code.
use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::process;

/// How the ranks of a job are laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// `pytorch`, `mpi` or `tensorflow`.
    pub kind: String,
    /// Instances (Azure's nodes; here, groups of local ranks).
    pub nodes: u32,
    /// Processes per instance (pytorch, mpi); workers (tensorflow).
    pub per_node: u32,
    /// Parameter servers (tensorflow).
    pub ps: u32,
}

impl Layout {
    /// A job file's `distribution:` and `resources.instance_count`: `None` when the job is
    /// one process.
    pub fn of(distribution: Option<&Value>, resources: Option<&Value>) -> Option<Layout> {
        let d = distribution?.as_object()?;
        let n = |k: &str| d.get(k).and_then(Value::as_u64).map(|x| x as u32);
        let nodes = resources
            .and_then(|r| r.get("instance_count"))
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1) as u32;
        let kind = d.get("type").and_then(Value::as_str)?.to_string();
        let l = match kind.as_str() {
            "pytorch" | "mpi" => Layout {
                per_node: n("process_count_per_instance").unwrap_or(1).max(1),
                nodes,
                ps: 0,
                kind,
            },
            "tensorflow" => Layout {
                per_node: n("worker_count").unwrap_or(nodes).max(1),
                nodes: 1,
                ps: n("parameter_server_count").unwrap_or(0),
                kind,
            },
            _ => return None,
        };
        (l.ranks() > 1).then_some(l)
    }

    pub fn ranks(&self) -> u32 {
        self.nodes * self.per_node + self.ps
    }

    /// The environment of each rank, in rank order. `ports` gives free loopback ports: one
    /// for pytorch's rendezvous, one per task for tensorflow.
    pub fn envs(&self, ports: &[u16]) -> Vec<BTreeMap<String, String>> {
        let mut out = Vec::new();
        match self.kind.as_str() {
            "tensorflow" => {
                let addr = |i: usize| format!("127.0.0.1:{}", ports.get(i).copied().unwrap_or(0));
                let workers: Vec<String> = (0..self.per_node as usize).map(addr).collect();
                let ps: Vec<String> = (0..self.ps as usize)
                    .map(|i| addr(self.per_node as usize + i))
                    .collect();
                let mut cluster = json!({"worker": workers});
                if !ps.is_empty() {
                    cluster["ps"] = json!(ps);
                }
                for i in 0..self.per_node {
                    let tf = json!({"cluster": cluster, "task": {"type": "worker", "index": i}});
                    out.push(BTreeMap::from([("TF_CONFIG".to_string(), tf.to_string())]));
                }
                for i in 0..self.ps {
                    let tf = json!({"cluster": cluster, "task": {"type": "ps", "index": i}});
                    out.push(BTreeMap::from([("TF_CONFIG".to_string(), tf.to_string())]));
                }
            }
            _ => {
                let world = self.ranks();
                for r in 0..world {
                    let (node, local) = (r / self.per_node, r % self.per_node);
                    let mut e = BTreeMap::new();
                    let mut set = |k: &str, v: String| {
                        e.insert(k.to_string(), v);
                    };
                    set("RANK", r.to_string());
                    set("LOCAL_RANK", local.to_string());
                    set("WORLD_SIZE", world.to_string());
                    set("LOCAL_WORLD_SIZE", self.per_node.to_string());
                    set("NODE_RANK", node.to_string());
                    set("GROUP_RANK", node.to_string());
                    set("MASTER_ADDR", "127.0.0.1".into());
                    set(
                        "MASTER_PORT",
                        ports.first().copied().unwrap_or(0).to_string(),
                    );
                    if self.kind == "mpi" {
                        set("OMPI_COMM_WORLD_RANK", r.to_string());
                        set("OMPI_COMM_WORLD_SIZE", world.to_string());
                        set("OMPI_COMM_WORLD_LOCAL_RANK", local.to_string());
                        set("OMPI_COMM_WORLD_LOCAL_SIZE", self.per_node.to_string());
                        set("OMPI_COMM_WORLD_NODE_RANK", node.to_string());
                    }
                    out.push(e);
                }
            }
        }
        out
    }

    /// The arguments of `labhost launch` for this layout.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--kind".into(),
            self.kind.clone(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--per-node".into(),
            self.per_node.to_string(),
            "--ps".into(),
            self.ps.to_string(),
        ]
    }
}

impl Layout {
    /// The ranks as one POSIX `sh` script, for a job that runs in a container (whose image
    /// has no labhost): each rank `cmd` with its environment, in the background; the first
    /// rank to fail ends the script with its code (the container's main process: the others
    /// end with it), else 0 when all are done.
    pub fn container_script(&self, cmd: &str) -> LabResult<String> {
        let ports = free_ports(if self.kind == "tensorflow" {
            self.ranks() as usize
        } else {
            1
        })?;
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let envs = self.envs(&ports);
        let n = envs.len();
        let mut out = format!(
            "d=/tmp/labhost-ranks.$$; rm -rf \"$d\"; mkdir -p \"$d\"; cmd={}\n",
            q(cmd)
        );
        for (r, e) in envs.iter().enumerate() {
            let vars: Vec<String> = e.iter().map(|(k, v)| format!("{k}={}", q(v))).collect();
            out.push_str(&format!(
                "( export {}; sh -c \"$cmd\"; echo $? > \"$d/{r}\" ) &\n",
                vars.join(" ")
            ));
        }
        out.push_str(&format!(
            "while :; do n=0; for f in \"$d\"/*; do [ -e \"$f\" ] || continue; rc=$(cat \"$f\"); [ -n \"$rc\" ] || continue; if [ \"$rc\" != 0 ]; then echo \"labhost: rank ${{f##*/}} exited $rc\" >&2; exit \"$rc\"; fi; n=$((n+1)); done; [ \"$n\" = {n} ] && exit 0; sleep 0.1; done\n"
        ));
        Ok(out)
    }
}

/// `n` free loopback ports (bound, read, released).
fn free_ports(n: usize) -> LabResult<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| LabError::new("jobs.launch", format!("no free port: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| LabError::new("jobs.launch", format!("no free port: {e}")))
}

/// `CUDA_VISIBLE_DEVICES` shared out: rank `r` of `n` gets its own slice when the devices
/// divide evenly among the ranks (a GPU per process), else all of them.
fn devices_for(all: &str, r: usize, n: usize) -> String {
    let ids: Vec<&str> = all.split(',').filter(|s| !s.is_empty()).collect();
    if ids.is_empty() || n == 0 || !ids.len().is_multiple_of(n) {
        return all.to_string();
    }
    let k = ids.len() / n;
    ids[r * k..(r + 1) * k].join(",")
}

/// Runs `argv` once per rank, each with its environment over this process's, and waits:
/// the first rank to fail stops the others (their groups get the grace); returns that
/// rank's exit code, else 0.
pub fn run(layout: &Layout, argv: &[String]) -> LabResult<i32> {
    let ports = free_ports(if layout.kind == "tensorflow" {
        layout.ranks() as usize
    } else {
        1
    })?;
    let envs = layout.envs(&ports);
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let gpus = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    // Spawned inside the runtime (the exit watch registers with its reactor), on this
    // thread (the ranks' death signal follows it).
    crate::runtime::block_on(async move {
        let mut children = Vec::new();
        for (r, e) in envs.iter().enumerate() {
            let mut env: BTreeMap<String, String> = std::env::vars().collect();
            env.extend(e.clone());
            if let Some(all) = &gpus {
                env.insert(
                    "CUDA_VISIBLE_DEVICES".into(),
                    devices_for(all, r, envs.len()),
                );
            }
            let program = process::Program::new(&argv, &env, None)
                .map_err(|e| LabError::new("jobs.launch", format!("cannot start rank {r}: {e}")))?;
            let child = process::spawn(&program, &process::Io::stdio([0, 1, 2])).map_err(|e| {
                LabError::new("jobs.launch", format!("cannot start rank {r}: {e:?}"))
            })?;
            children.push(child);
        }
        use futures_util::StreamExt;
        let mut ended = vec![false; children.len()];
        let mut waits: futures_util::stream::FuturesUnordered<_> = children
            .iter_mut()
            .enumerate()
            .map(|(r, c)| async move { (r, c.wait().await) })
            .collect();
        let mut failed: Option<i32> = None;
        let mut first_failed: Option<usize> = None;
        while let Some((r, status)) = waits.next().await {
            ended[r] = true;
            let code = status
                .ok()
                .and_then(process::exit_code)
                .map_or(1, |c| i32::try_from(c).unwrap_or(1));
            if code != 0 {
                eprintln!("labhost launch: rank {r} exited {code}; stopping the other ranks");
                failed = Some(code);
                first_failed = Some(r);
                break;
            }
        }
        drop(waits);
        if let Some(code) = failed {
            // The others at once, each with the grace.
            let stops = children
                .iter_mut()
                .zip(&ended)
                .filter(|(_, done)| !**done)
                .map(|(c, _)| c.stop(process::grace()));
            futures_util::future::join_all(stops).await;
            // Last, after whatever the other ranks said as they went: the job's cause (the
            // failed trial's reason quotes the last stderr line).
            if let Some(r) = first_failed {
                eprintln!(
                    "labhost launch: rank {r} exited {code} first; the other ranks were stopped"
                );
            }
            return Ok(code);
        }
        Ok(0)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_ranks_get_azures_variables() {
        let l = Layout::of(
            Some(&json!({"type": "pytorch", "process_count_per_instance": 2})),
            Some(&json!({"instance_count": 2})),
        )
        .unwrap();
        let e = l.envs(&[29500]);
        assert_eq!(e.len(), 4);
        assert_eq!(e[3]["RANK"], "3");
        assert_eq!(e[3]["LOCAL_RANK"], "1");
        assert_eq!(e[3]["NODE_RANK"], "1");
        assert_eq!(e[3]["WORLD_SIZE"], "4");
        assert_eq!(e[3]["LOCAL_WORLD_SIZE"], "2");
        assert_eq!(e[0]["MASTER_PORT"], "29500");
        // One process is no distribution.
        assert!(Layout::of(Some(&json!({"type": "pytorch"})), None).is_none());
    }

    #[test]
    fn tensorflow_tasks_get_tf_config_and_mpi_ranks_ompi() {
        let l = Layout::of(
            Some(&json!({"type": "tensorflow", "worker_count": 2, "parameter_server_count": 1})),
            None,
        )
        .unwrap();
        let e = l.envs(&[1, 2, 3]);
        let tf: Value = serde_json::from_str(&e[2]["TF_CONFIG"]).unwrap();
        assert_eq!(
            tf,
            json!({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"], "ps": ["127.0.0.1:3"]}, "task": {"type": "ps", "index": 0}})
        );
        let m = Layout::of(
            Some(&json!({"type": "mpi", "process_count_per_instance": 3})),
            None,
        )
        .unwrap();
        assert_eq!(m.envs(&[5])[2]["OMPI_COMM_WORLD_RANK"], "2");
        assert_eq!(m.envs(&[5])[2]["OMPI_COMM_WORLD_SIZE"], "3");
    }

    #[test]
    fn gpus_are_shared_out_when_they_divide() {
        assert_eq!(devices_for("0,1,2,3", 1, 2), "2,3");
        assert_eq!(devices_for("0,1,2", 1, 2), "0,1,2");
    }
}
