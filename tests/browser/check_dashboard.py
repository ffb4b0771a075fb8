"""Opens labhost's dashboard in headless Chromium through the DevTools protocol, as a user
would, and prints what they see.

Usage: check_dashboard.py run CHROMIUM BASE_URL RUN_ID METRICS_FILE SHOTS_DIR
Prints: the run page's live lag (how many steps the page's `loss` — its chart and its table —
was behind the job's metrics file, 1 s after each look at the file) and its last step,
whether the log-y switch made the chart's y axis logarithmic, then the runs table's rows
before and after typing a filter, the compare page, the run's files (a CSV's table rows, an
image's width); console errors and requests to anywhere but BASE_URL.

Usage: check_dashboard.py sweep CHROMIUM BASE_URL PAGE SHOTS_DIR
(PAGE: a running sweep's page.) Prints: the parallel coordinates' axes and their scales, the
trials the objective chart showed at first and after it grew (the page is never reloaded),
the progress line then, and the sweep's status after its cancel button was pressed."""
import json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser

mode = sys.argv[1]
if mode == "run":
    chromium, base, run_id, metrics_file, shots = sys.argv[2:7]
else:
    chromium, base, sweep_page, shots = sys.argv[2:6]
b = Browser(chromium)
call, js = b.call, b.js
try:
    def load(url):
        call("Page.navigate", url=url)
        # Until the new page is there: the old one also reads "complete" at first.
        for _ in range(200):
            href = js("location.href")
            if js("document.readyState") == "complete" and href != "about:blank" and href.split("?")[0] == url.split("?")[0]:
                break
            time.sleep(0.05)

    def arrive(part):
        """Waits until the page navigated to (a URL holding `part`) has loaded."""
        for _ in range(100):
            time.sleep(0.05)
            if part in js("location.href") and js("document.readyState") == "complete":
                break

    def shot(name):
        b.screenshot(os.path.join(shots, name))

    def file_step():
        try:
            lines = [l for l in open(metrics_file).read().splitlines() if l.strip()]
            return json.loads(lines[-1])["step"] if lines else 0
        except (OSError, ValueError):
            return 0

    if mode == "run":
        for d in ["Runtime", "Log", "Page", "Network"]:
            call(d + ".enable")
        load(f"{base}/runs/{run_id}")
        # The slower of the two: the metrics table and the chart (its last point's step).
        page_step = ("(() => { const r = document.querySelector('#metrics tr[data-name=loss] .s'); "
                     "const c = window.lhCharts && window.lhCharts.loss; "
                     "return Math.min(r ? Number(r.textContent) : 0, c ? (c.last('loss') || 0) : 0); })()")
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
        js("(() => { const c = document.querySelector('.lh-chart[data-name=loss] .lh-log'); c.checked = true; c.dispatchEvent(new Event('change')); })()")
        print("log_y", js("document.querySelector('.lh-chart[data-name=loss]').dataset.log"),
              js("document.querySelector('.lh-chart[data-name=loss]').dataset.points"))
        shot("dashboard-run.png")
        print("lag", lag)
        print("last", last)
        print("stdout_has_last_line", js("document.getElementById('stdout').textContent.includes('line 40')"))
        load(f"{base}/")
        before = js("document.querySelectorAll('#runs tbody tr').length")
        js("document.getElementById('filter').value = \"params.lr = '0.2'\"")
        js("document.querySelector('form').submit()")
        time.sleep(0.3)
        arrive("filter=")
        after = js("document.querySelectorAll('#runs tbody tr').length")
        shot("dashboard-runs.png")
        print("rows", before, after)
        # The column chooser: only params.lr.
        load(f"{base}/")
        js("document.querySelectorAll('#columns .col').forEach(c => { c.checked = c.value === 'params.lr'; })")
        js("document.getElementById('show-columns').click()")
        arrive("columns=")
        print("columns", js("[...document.querySelectorAll('#runs thead th')].slice(7).map(t => t.textContent).join(',')"))
        # Compare: tick both runs of the first page, press the button.
        load(f"{base}/")
        js("document.querySelectorAll('#runs .pick').forEach(c => { c.checked = true; c.dispatchEvent(new Event('change', {bubbles: true})); })")
        js("document.getElementById('compare-selected').click()")
        arrive("/compare")
        for _ in range(60):
            if js("document.querySelectorAll('#charts .lh-chart').length") > 0:
                break
            time.sleep(0.05)
        print("compare", js("document.querySelector('#compare tr[data-key=\"params.lr\"]').className"),
              js("document.querySelector('#charts .lh-chart[data-name=loss]') ? document.querySelector('#charts .lh-chart[data-name=loss]').dataset.series : 'none'"))
        shot("dashboard-compare.png")
        load(f"{base}/experiments")
        shot("dashboard-experiments.png")
        load(f"{base}/queue")
        time.sleep(0.6)  # its first event
        shot("dashboard-queue.png")
        load(f"{base}/cron")
        shot("dashboard-cron.png")
        # The run's files: a CSV previewed as a table, an image drawn.
        load(f"{base}/runs/{run_id.split('?')[0]}/files/outputs/scores.csv")
        rows = js("document.querySelectorAll('#preview tr').length")
        shot("dashboard-file-csv.png")
        load(f"{base}/runs/{run_id.split('?')[0]}/files/outputs/plot.svg")
        for _ in range(60):
            if js("(() => { const i = document.getElementById('preview'); return !i || i.complete; })()"):
                break
            time.sleep(0.05)
        print("files", rows, js("(() => { const i = document.getElementById('preview'); return i ? i.naturalWidth : document.body.innerText.slice(0, 300); })()"))
        shot("dashboard-file-image.png")
    else:
        for d in ["Runtime", "Log", "Page", "Network"]:
            call(d + ".enable")
        load(sweep_page)
        trials = "(() => { const o = document.getElementById('lh-objective'); return o ? Number(o.dataset.trials) : -1; })()"
        for _ in range(100):
            if js(trials) >= 0:
                break
            time.sleep(0.05)
        first = js(trials)
        print("axes", js("[...document.querySelectorAll('#lh-parallel .lh-axis')].map(a => a.dataset.name + ':' + a.dataset.scale).join(',')"))
        deadline = time.time() + 30
        while time.time() < deadline and js(trials) < first + 2:
            time.sleep(0.1)
        print("trials", first, js(trials))
        print("progress", js("document.getElementById('progress').textContent"))
        print("limits", js("document.getElementById('limits').textContent"))
        shot("dashboard-sweep.png")
        js("document.getElementById('cancel').click()")
        deadline = time.time() + 15
        status = ""
        while time.time() < deadline:
            time.sleep(0.2)
            try:
                status = js("document.getElementById('status').textContent")
            except Exception:
                continue
            if status == "cancelled":
                break
        print("status", status)
    errors = b.errors()
    outside = sorted({e["params"]["request"]["url"] for e in b.events
                      if e.get("method") == "Network.requestWillBeSent"
                      and not e["params"]["request"]["url"].startswith(base)})
    print("errors", len(errors), [json.dumps(e)[:300] for e in errors])
    print("outside", outside)
finally:
    b.close()
