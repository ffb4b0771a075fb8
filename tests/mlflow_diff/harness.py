#!/usr/bin/env python3
"""The MLflow differential harness: each client script under cases/ runs against a real
`mlflow server` (sqlite store, artifacts served) and against `labhost track serve`, each
fresh; what readback.py reads back through MlflowClient afterwards (plus the script's own
"OBS <json>" lines and its exit status) must be equal, field by field, except for the
differences listed in differences.json with their reasons.

Usage: harness.py --mlflow PATH/TO/mlflow --labhost PATH/TO/labhost [--only NAME]... [--keep]
Prints one line per case and a diff for each failing one; exits 1 if any case differs."""
import argparse
import difflib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "diff-harness-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, log, what):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {open(log).read()[-3000:]}")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/health",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            if urllib.request.urlopen(req, timeout=1).status == 200:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not start: {open(log).read()[-3000:]}")


class Server:
    def __init__(self, kind, args, root):
        self.dir = os.path.join(root, kind)
        os.makedirs(self.dir)
        self.port = free_port()
        self.log = os.path.join(self.dir, "server.log")
        if kind == "mlflow":
            if args.template and os.path.exists(args.template):
                shutil.copy(args.template, os.path.join(self.dir, "mlflow.db"))
            cmd = [args.mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri",
                   f"sqlite:///{self.dir}/mlflow.db", "--artifacts-destination",
                   os.path.join(self.dir, "art")]
            env = dict(os.environ)
        else:
            cmd = [args.labhost, "track", "serve", "--port", str(self.port), "--token", TOKEN]
            env = dict(os.environ, LABHOST_HOME=os.path.join(self.dir, ".labhost"))
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(self.port, self.proc, self.log, kind)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        self.proc.wait()


def run_case(args, case, kind, root):
    server = Server(kind, args, root)
    try:
        work = os.path.join(root, "mlflow_diff_work", kind)
        os.makedirs(work)
        env = dict(os.environ, MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_TOKEN=TOKEN,
                   PYTHONHASHSEED="0", MPLBACKEND="Agg", GIT_DIR="/nonexistent",
                   SOURCE_DATE_EPOCH="0", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
                   MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
        for k in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            env.pop(k, None)
        script = os.path.join(HERE, "cases", case)
        shutil.copy(script, os.path.join(work, case))
        out = os.path.join(root, f"{kind}.out")
        p = subprocess.run([args.python, case], cwd=work, env=env, stdout=open(out, "w"),
                           stderr=subprocess.PIPE, text=True, timeout=300)
        rb = subprocess.run([args.python, os.path.join(HERE, "readback.py"), out], cwd=work,
                            env=env, capture_output=True, text=True, timeout=300)
        if rb.returncode != 0:
            return {"readback_failed": rb.stderr[-2000:]}, p.stderr
        doc = json.loads(rb.stdout)
        doc["exit"] = p.returncode
        with open(os.path.join(root, f"{kind}.json"), "w") as f:
            f.write(rb.stdout)
        return doc, p.stderr
    finally:
        server.stop()


def run_as_job(args, case, root):
    """The case as a labhost job (the host's own endpoint, MLFLOW_RUN_ID of the job's run):
    its exit status and its "OBS" lines, which must equal those against mlflow server."""
    work = os.path.join(root, "mlflow_diff_work", "job")
    os.makedirs(work)
    shutil.copy(os.path.join(HERE, "cases", case), os.path.join(work, case))
    # The job's experiment is the one the script sets (as a job YAML's experiment_name).
    m = re.search(r'set_experiment\("([^"]+)"\)', open(os.path.join(work, case)).read())
    exp = f', experiment: "{m.group(1)}"' if m else ""
    open(os.path.join(work, "job.rhai"), "w").write(
        'let j = jobs::submit(#{command: "%s %s", name: "case"%s});\n'
        'print(j.wait());\nprint(fs::read(j.run_dir + "/stdout.log"));\n'
        % (args.python, case, exp))
    env = dict(os.environ, LABHOST_HOME=os.path.join(work, ".labhost"), PYTHONHASHSEED="0",
               MPLBACKEND="Agg", GIT_DIR="/nonexistent", MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
               MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_RUN_ID",
              "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(k, None)
    p = subprocess.run([args.labhost, "-q", "run", "job.rhai"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    lines = p.stdout.splitlines()
    status = lines[0] if lines else f"labhost exited {p.returncode}: {p.stderr[-1500:]}"
    obs = [json.loads(l[4:]) for l in lines if l.startswith("OBS ")]
    err = ""
    if status != "completed":
        logs = os.path.join(work, ".labhost")
        err = subprocess.run(["sh", "-c", f"cat {logs}/runs/*/stderr.log | tail -30"],
                             capture_output=True, text=True).stdout
    return {"status": status, "observations": obs}, err


def flat(x, path=""):
    """{"a.b[0]": leaf} for a diff that names every differing field."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(flat(v, f"{path}.{k}" if path else str(k)))
        return out or {path: {}}
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(flat(v, f"{path}[{i}]"))
        return out or {path: []}
    return {path: x}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlflow", required=True)
    ap.add_argument("--labhost", required=True)
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--job", action="store_true", help="also run each case as a labhost job")
    args = ap.parse_args()
    args.mlflow, args.labhost = os.path.abspath(args.mlflow), os.path.abspath(args.labhost)
    args.python = os.path.join(os.path.dirname(args.mlflow), "python")
    known = json.load(open(os.path.join(HERE, "differences.json")))
    cases = sorted(f for f in os.listdir(os.path.join(HERE, "cases")) if f.endswith(".py"))
    if args.only:
        cases = [c for c in cases if any(o in c for o in args.only)]
    top = tempfile.mkdtemp(prefix="mlflow-diff-")
    # A migrated empty mlflow database, made once and copied for each case.
    args.template = None
    t = Server("mlflow", args, os.path.join(top, "template"))
    t.stop()
    args.template = os.path.join(t.dir, "mlflow.db")
    failed = []
    for case in cases:
        root = os.path.join(top, case[:-3])
        os.makedirs(root)
        t0 = time.time()
        ref, ref_err = run_case(args, case, "mlflow", root)
        got, got_err = run_case(args, case, "labhost", root)
        a, b = flat(ref), flat(got)
        job_err = ""
        if args.job:
            job, job_err = run_as_job(args, case, root)
            a.update(flat({"status": "completed", "observations": ref.get("observations")}, "as_job"))
            b.update(flat(job, "as_job"))
        allowed = {d["path"] for d in known if d["case"] in (case[:-3], "*")}
        diffs = []
        # A case that fails against the real server proves nothing: it is a broken case.
        if ref.get("exit") != 0 or "readback_failed" in ref:
            diffs.append(f"  the case itself fails against mlflow server (exit {ref.get('exit')}): "
                         f"{ref.get('readback_failed') or ref_err[-1500:]}")
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<absent>") != b.get(k, "<absent>") and not any(
                    k == p or k.startswith(p + ".") or k.startswith(p + "[") for p in allowed):
                diffs.append(f"  {k}: mlflow={json.dumps(a.get(k, '<absent>'))[:300]} "
                             f"labhost={json.dumps(b.get(k, '<absent>'))[:300]}")
        status = "ok" if not diffs else f"{len(diffs)} difference(s)"
        print(f"{case[:-3]:40} {status} ({time.time() - t0:.1f} s)", flush=True)
        if diffs:
            failed.append(case)
            print("\n".join(diffs[:80]))
            if job_err:
                print("  job stderr:", job_err[-1500:])
            if ref.get("exit") or got.get("exit"):
                print("  mlflow stderr:", ref_err[-1500:], "\n  labhost stderr:", got_err[-1500:])
    if not args.keep:
        shutil.rmtree(top, ignore_errors=True)
    else:
        print("kept", top)
    print(f"{len(cases) - len(failed)} of {len(cases)} cases read back the same")
    sys.exit(1 if failed else 0)


main()
