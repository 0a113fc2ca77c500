"""Take the README's screenshot of the replay page: Debian's headless Chromium (the browser test's driver)
opens the page, clicks the slider's rail at 45% of the day and then a vehicle, and saves the screen.

python docs/replay_screenshot.py day.html docs/replay_page.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from lastmile_env.replay_page import PAGE_ID
from tests.browser import Browser

page, out = Path(sys.argv[1]).resolve(), sys.argv[2]
with Browser(1400, 900) as browser:
    browser.open(page.as_uri())
    browser.evaluate(
        f"new Promise(r => (function w() {{ const gd = document.getElementById('{PAGE_ID}');"
        " gd._transitionData && gd._transitionData._frames.length ? r(1) : setTimeout(w, 50); })())"
    )
    left, top, width, height = browser.evaluate(
        f"(() => {{ const r = document.querySelector('#{PAGE_ID} .slider-rail-touch-rect')"
        ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    browser.click(left + 0.45 * width, top + height / 2)
    browser.evaluate("new Promise(r => setTimeout(r, 500))")
    # hover (and click) the vehicle of the right-hand panel farthest from other markers, to show its plan
    x, y = browser.evaluate(
        f"""(() => {{ const gd = document.getElementById('{PAGE_ID}'), fl = gd._fullLayout;
        const box = gd.getBoundingClientRect(), tr = gd._fullData[7], xa = fl.xaxis2, ya = fl.yaxis2;
        const px = Array.from(tr.x).map(v => box.left + xa._offset + xa.l2p(v));
        const py = Array.from(tr.y).map(v => box.top + ya._offset + ya.l2p(v));
        const ord = gd._fullData[6], ox = [], oy = [];
        Array.from(ord.x).forEach((v, k) => {{ if (v !== null) {{ ox.push(box.left + xa._offset + xa.l2p(v));
          oy.push(box.top + ya._offset + ya.l2p(ord.y[k])); }} }});
        let best = 0, room = -1;  // the vehicle farthest from any other marker
        for (let i = 0; i < px.length; i++) {{
          let near = Infinity;
          for (let j = 0; j < px.length; j++)
            if (j !== i) near = Math.min(near, Math.hypot(px[i] - px[j], py[i] - py[j]));
          for (let k = 0; k < ox.length; k++) near = Math.min(near, Math.hypot(px[i] - ox[k], py[i] - oy[k]));
          if (near > room) {{ room = near; best = i; }}
        }}
        return [px[best], py[best]]; }})()"""
    )
    browser.click(x, y)
    browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    browser.evaluate("new Promise(r => setTimeout(r, 300))")
    Path(out).write_bytes(browser.screenshot_png())
    if browser.console_errors:
        raise SystemExit(f"the page logged errors: {browser.console_errors}")
print(f"wrote {out}")
