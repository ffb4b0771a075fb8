"""Loads a labhost report in headless Chromium through the DevTools protocol and prints what a
user would see: console errors, the trial table's rows, the order of a column before and
after clicking its header; saves a screenshot. Usage: check_report.py CHROMIUM REPORT.html
COLUMN SCREENSHOT.png"""
import base64, json, os, subprocess, sys, tempfile, time, urllib.request

import websocket  # websocket-client

chromium, page, column, shot = sys.argv[1:5]
profile = tempfile.mkdtemp()
proc = subprocess.Popen(
    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     "--user-data-dir=" + profile, "--remote-debugging-port=0", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    port_file = os.path.join(profile, "DevToolsActivePort")
    for _ in range(200):
        if os.path.exists(port_file) and open(port_file).read().strip():
            break
        time.sleep(0.05)
    port = open(port_file).read().split()[0]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
    ws = websocket.create_connection(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
    n = [0]
    events = []

    def call(method, **params):
        n[0] += 1
        ws.send(json.dumps({"id": n[0], "method": method, "params": params}))
        while True:
            m = json.loads(ws.recv())
            if m.get("id") == n[0]:
                if "error" in m:
                    raise RuntimeError(m["error"])
                return m.get("result", {})
            events.append(m)

    def js(expr):
        r = call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    call("Runtime.enable")
    call("Log.enable")
    call("Page.enable")
    call("Page.navigate", url="file://" + os.path.abspath(page))
    for _ in range(200):
        if js("document.readyState") == "complete":
            break
        time.sleep(0.05)
    time.sleep(0.3)
    call("Runtime.evaluate", expression="0")  # drain events
    errors = [e for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")]
    print("errors", len(errors), [json.dumps(e)[:300] for e in errors])
    print("rows", js("document.querySelectorAll('#trials tbody tr').length"))
    col = js(f"[...document.querySelectorAll('#trials th')].findIndex(th => th.textContent === {json.dumps(column)})")
    values = f"[...document.querySelectorAll('#trials tbody tr')].map(tr => tr.children[{col}].textContent)"
    print("before", js(values))
    box = js(f"(() => {{ const r = document.querySelectorAll('#trials th')[{col}].getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
    for t in ["mousePressed", "mouseReleased"]:
        call("Input.dispatchMouseEvent", type=t, x=box[0], y=box[1], button="left", clickCount=1)
    print("after", js(values))
    print("curves", js("document.querySelectorAll('#curves polyline').length"), "parallel", js("document.querySelectorAll('#parallel polyline').length"))
    data = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
    open(shot, "wb").write(base64.b64decode(data))
finally:
    proc.kill()
