"""Loads a labhost report in headless Chromium through the DevTools protocol and prints what a
user would see: console errors, the trial table's rows, the order of a column before and
after clicking its header; saves a screenshot. Usage: check_report.py CHROMIUM REPORT.html
COLUMN SCREENSHOT.png"""
import json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser

chromium, page, column, shot = sys.argv[1:5]
b = Browser(chromium)
call, js = b.call, b.js
try:
    call("Runtime.enable")
    call("Log.enable")
    call("Page.enable")
    call("Page.navigate", url="file://" + os.path.abspath(page))
    for _ in range(200):
        if js("document.readyState") == "complete":
            break
        time.sleep(0.05)
    time.sleep(0.3)
    errors = b.errors()
    print("errors", len(errors), [json.dumps(e)[:300] for e in errors])
    print("rows", js("document.querySelectorAll('#trials tbody tr').length"))
    col = js(f"[...document.querySelectorAll('#trials th')].findIndex(th => th.textContent === {json.dumps(column)})")
    values = f"[...document.querySelectorAll('#trials tbody tr')].map(tr => tr.children[{col}].textContent)"
    print("before", js(values))
    box = js(f"(() => {{ const r = document.querySelectorAll('#trials th')[{col}].getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
    for t in ["mousePressed", "mouseReleased"]:
        call("Input.dispatchMouseEvent", type=t, x=box[0], y=box[1], button="left", clickCount=1)
    print("after", js(values))
    print("curves", js("document.querySelector('#lh-curves .lh-chart').dataset.series"),
          "parallel", js("document.querySelector('#lh-parallel .lh-parallel').dataset.shown"),
          "axes", js("[...document.querySelectorAll('#lh-parallel .lh-axis')].map(a => a.dataset.name + ':' + a.dataset.scale).join(',')"),
          "canvases", js("document.querySelectorAll('#charts canvas').length"))
    b.screenshot(shot)
finally:
    b.close()
