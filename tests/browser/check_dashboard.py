"""Opens labhost's dashboard in headless Chromium through the DevTools protocol, as a user
would, and prints what they see. Usage: check_dashboard.py CHROMIUM BASE_URL RUN_ID
METRICS_FILE SHOTS_DIR

Prints: console errors, requests to anywhere but BASE_URL, the run page's live lag (how many
steps the page's `loss` was behind the job's metrics file, sampled every 50 ms while the job
runs) and its last step, then the runs table's rows before and after typing a filter."""
import json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser

chromium, base, run_id, metrics_file, shots = sys.argv[1:6]
b = Browser(chromium)
call, js = b.call, b.js
try:
    def load(url):
        call("Page.navigate", url=url)
        for _ in range(200):
            if js("document.readyState") == "complete" and js("location.href") != "about:blank":
                break
            time.sleep(0.05)

    def shot(name):
        b.screenshot(os.path.join(shots, name))

    def file_step():
        try:
            lines = [l for l in open(metrics_file).read().splitlines() if l.strip()]
            return json.loads(lines[-1])["step"] if lines else 0
        except (OSError, ValueError):
            return 0

    for d in ["Runtime", "Log", "Page", "Network"]:
        call(d + ".enable")
    load(f"{base}/runs/{run_id}")
    page_step = "(() => { const r = document.querySelector('#metrics tr[data-name=loss] .s'); return r ? Number(r.textContent) : 0; })()"
    lag, last = 0, 0
    deadline = time.time() + 20
    while time.time() < deadline:
        f = file_step()
        time.sleep(1.0)  # the page has 1 s to show what the file held
        p = js(page_step)
        lag = max(lag, f - p)
        last = p
        if js("document.getElementById('status').textContent") == "completed":
            break
    time.sleep(0.5)
    last = js(page_step)
    shot("dashboard-run.png")
    print("lag", lag)
    print("last", last)
    print("stdout_has_last_line", js("document.getElementById('stdout').textContent.includes('line 40')"))
    load(f"{base}/")
    before = js("document.querySelectorAll('#runs tbody tr').length")
    js("document.getElementById('filter').value = \"params.lr = '0.2'\"")
    js("document.querySelector('form').submit()")
    time.sleep(0.3)
    for _ in range(100):
        if js("document.readyState") == "complete" and "filter=" in js("location.href"):
            break
        time.sleep(0.05)
    after = js("document.querySelectorAll('#runs tbody tr').length")
    shot("dashboard-runs.png")
    print("rows", before, after)
    errors = b.errors()
    outside = sorted({e["params"]["request"]["url"] for e in b.events
                      if e.get("method") == "Network.requestWillBeSent"
                      and not e["params"]["request"]["url"].startswith(base)})
    print("errors", len(errors), [json.dumps(e)[:300] for e in errors])
    print("outside", outside)
finally:
    b.close()
