"""The Azure ML differential test: every job file under cases/ goes through Microsoft's
azure-ai-ml (`MLClient.jobs.create_or_update`, offline, over a recording transport) and
through `labhost submit` (over HTTP to the same fake); the bodies each would send to Azure ML
are compared field by field, after normalising what is generated (job names, code and
anonymous asset ids). A difference not listed in differences.json fails the run.

    python harness.py LABHOST_BINARY [CASE ...]     exit 0: no unexplained difference
"""
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import warnings

import fake_arm

HERE = pathlib.Path(__file__).resolve().parent


LAST = {}  # the last fake of each side (for debugging a refusal)


def sdk_requests(case: pathlib.Path, work: pathlib.Path):
    """What azure-ai-ml sends for `case`: the fake's log, or an error string."""
    import requests
    from azure.core.credentials import AccessToken, AccessTokenInfo
    from azure.core.pipeline._tools import is_rest
    from azure.core.pipeline.transport import RequestsTransport, RequestsTransportResponse
    from azure.core.rest._requests_basic import RestRequestsTransportResponse
    from azure.ai.ml import MLClient, load_job

    fake = fake_arm.Fake()
    LAST["sdk"] = fake

    # A JWT-shaped token: the SDK reads the user's oid/tid from it for user_identity jobs.
    def b64(d):
        import base64
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    def token(scope):
        return ".".join([b64({"alg": "none", "typ": "JWT"}),
                         b64({"oid": "00000000-0000-0000-0000-0000000000aa", "tid": fake_arm.TENANT,
                              "aud": scope.removesuffix("/.default"),
                              "upn": "diff@example.com", "exp": 9999999999}), "sig"])

    class Cred:
        def get_token(self, *scopes, **kw):
            return AccessToken(token(scopes[0]), 9999999999)

        def get_token_info(self, *scopes, options=None):
            return AccessTokenInfo(token(scopes[0]), 9999999999)

    def send(self, request, **kw):
        # Every azure-core client the SDK makes (ARM, blob storage) comes here.
        body = request.content if request.content is not None else b""
        if isinstance(body, str):
            body = body.encode()
        status, out = fake.handle(request.method, request.url, body if isinstance(body, bytes) else b"")
        r = requests.Response()
        r.status_code = status
        r.raw = io.BytesIO(json.dumps(out).encode() if out else b"")
        r.headers["Content-Type"] = "application/json"
        r.request = requests.Request(request.method, request.url).prepare()
        if is_rest(request):
            resp = RestRequestsTransportResponse(request=request, internal_response=r)
            resp.read()
            return resp
        return RequestsTransportResponse(request, r)

    RequestsTransport.send = send

    cwd = os.getcwd()
    os.chdir(work)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ml = MLClient(Cred(), fake_arm.SUB, fake_arm.RG, fake_arm.WS)
            job = load_job(case)
            ml.jobs.create_or_update(job)
    except Exception as e:  # the SDK refusing a file is a result too
        lines = [l.strip() for l in f"{type(e).__name__}: {e}".splitlines() if l.strip()]
        return " ".join(lines)[:400]
    finally:
        os.chdir(cwd)
    return fake.log


def labhost_requests(binary: str, case: pathlib.Path, work: pathlib.Path):
    fake = fake_arm.Fake()
    srv, url = fake_arm.serve(fake)
    try:
        settings = work / "diff-settings.yml"
        settings.write_text(
            "variables:\n"
            f"  subscription_id: {fake_arm.SUB}\n  resource_group: {fake_arm.RG}\n"
            f"  workspace_name: {fake_arm.WS}\n  tenant_id: {fake_arm.TENANT}\n"
            "  application_id: 11111111-2222-3333-4444-555555555555\n"
            f"  arm_url: {url}\n  authority_url: {url}\n  blob_url: {url}/blob/{{account}}\n"
            f"  imds_url: {url}/imds-not-here\n"
        )
        env = dict(os.environ, APPLICATION_KEY="fake-secret", LABHOST_STATE=str(work / ".labhost"),
                   NO_COLOR="1", GIT_CEILING_DIRECTORIES=str(work.parent))
        p = subprocess.run([binary, "submit", str(case), "--settings", str(settings)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            return "labhost: " + (lines[0] if lines else f"exit {p.returncode}")
        return fake.log
    finally:
        srv.shutdown()


PROVENANCE_TAGS = set()  # filled from differences.json


def normalise(v):
    """Generated ids → placeholders; nulls dropped (ARM's PUT reads null and absent alike)."""
    ws = fake_arm.WS_PATH
    if isinstance(v, dict):
        return {k: normalise(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [normalise(x) for x in v]
    if isinstance(v, str) and v.startswith("azureml:" + ws):
        return "azureml:" + normalise(v[len("azureml:"):])
    if isinstance(v, str):
        if "/LocalUpload/" in v:
            return "<datastore>/LocalUpload/" + v.split("/LocalUpload/", 1)[1]
        if v.startswith(ws + "/codes/"):
            return "<code version>"
        if v.startswith(ws + "/environments/CliV2AnonymousEnvironment/versions/"):
            return "<anonymous environment " + v.rsplit("/", 1)[1][:12] + ">"
        if v.startswith(ws + "/components/azureml_anonymous/versions/"):
            return "<anonymous component>"
    return v


def sent(log):
    """What a side sent that Azure ML keeps: the job, and the environments, components and
    data it registered (by kind, in order)."""
    out = {"job": None, "environments": [], "components": [], "data": []}
    for r in log:
        if r["method"] != "PUT" or not r["path"].startswith(fake_arm.WS_PATH):
            continue
        rest = r["path"][len(fake_arm.WS_PATH):]
        kind = rest.split("/")[1]
        body = normalise(r["body"])
        if kind == "jobs":
            props = body.get("properties", {})
            if props.get("displayName") == r["path"].rsplit("/", 1)[1]:
                props["displayName"] = "<the job name>"
            tags = body.get("properties", {}).get("tags")
            if isinstance(tags, dict):
                for k in PROVENANCE_TAGS:
                    tags.pop(k, None)
            out["job"] = body
        elif kind in out:
            out[kind].append(body)
    return out


def diff(a, b, path=""):
    """Field-by-field differences: (path, sdk value, labhost value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in a:
                out.append((p, "<absent>", b[k]))
            elif k not in b:
                out.append((p, a[k], "<absent>"))
            else:
                out += diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, a, b)]


def explained(known, case, path):
    import fnmatch
    for k in known:
        p = k["path"]
        if fnmatch.fnmatch(case, k["case"]) and (p == "" or path == p or path.startswith(p + ".") or path.startswith(p + "[")):
            return k
    return None


def compare(name, a, b, known, open_work):
    """(unexplained, explained, open) differences of one case."""
    if isinstance(a, str) or isinstance(b, str):
        if isinstance(a, str) and isinstance(b, str):
            return [], [], []  # both refuse the file
        d = [("<accepted>", a if isinstance(a, str) else "accepted", b if isinstance(b, str) else "accepted")]
    else:
        d = diff(sent(a), sent(b))
    un, ex, op = [], [], []
    for p, x, y in d:
        (ex if explained(known, name, p) else op if explained(open_work, name, p) else un).append((p, x, y))
    return un, ex, op


def main():
    binary = str(pathlib.Path(sys.argv[1]).resolve())
    verbose = "-v" in sys.argv
    cases = [c for c in sys.argv[2:] if c != "-v"] or sorted(p.name for p in (HERE / "cases").glob("*.yml"))
    known = json.loads((HERE / "differences.json").read_text())
    PROVENANCE_TAGS.update(known["labhost_run_tags"]["tags"])
    total_un = total_open = 0
    for name in cases:
        with tempfile.TemporaryDirectory() as t:
            # Both sides see the same copy, in a folder named as the default experiment.
            work = pathlib.Path(t) / "diff-experiment"
            shutil.copytree(HERE / "cases", work)
            case = work / name
            a = sdk_requests(case, work)
            b = labhost_requests(binary, case, work)
        un, ex, op = compare(name, a, b, known["differences"], known["open"])
        total_un += len(un)
        total_open += len(op)
        state = "refused by both" if isinstance(a, str) and isinstance(b, str) else "same"
        print(f"{name}: {len(un)} unexplained, {len(ex)} explained, {len(op)} open"
              + ("" if un or ex or op else f" ({state})"))
        shown = un + (ex + op if verbose else [])
        for p, x, y in shown:
            tag = "  " if (p, x, y) in un else "  (explained) " if (p, x, y) in ex else "  (open) "
            print(f"{tag}{p}:\n      sdk:     {json.dumps(x)[:600]}\n      labhost: {json.dumps(y)[:600]}")
    print(f"{len(cases)} cases: {total_un} unexplained differences, {total_open} open (differences.json)")
    sys.exit(1 if total_un else 0)


if __name__ == "__main__":
    main()
