"""A recorded day (or two policies' records of the same day, side by side) as one interactive HTML page.

Built with plotly, which ships plotly.js inside its Python package: the page embeds it
(``include_plotlyjs=True``) and loads nothing from the network. It shows the road map (longitude/latitude
for a real OSM map, km otherwise), the orders coloured by state, the vehicles moving along their legs, a time
slider with a play button (one plotly frame per ``step_min``), a hover on an order with its promised and
actual times and on a vehicle with what it does and its next stops; clicking a point pins that text in a
panel under the map. Two records share the slider, so both policies are seen at the same minute.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lastmile_env.render import _MODE_STYLES, _ORDER_STYLES, _vehicle_colours
from lastmile_env.replay import ORDER_STATES, ReplayError, Timeline
from lastmile_env.replay_video import frame_times

PAGE_ID = "lastmile-replay"  # the plot's div id (the browser test finds the figure by it)
INFO_ID = "lastmile-info"  # the panel that shows the last clicked vehicle or order
_UNSEEN = "#ffffff"  # the colour of an order not arrived yet (it is not drawn: no coordinates)
_STATE_COLOUR = {key: colour for _, key, _, colour, _ in _ORDER_STYLES} | {"failed": "#8c564b"}
_STATE_LABEL = {key: label for label, key, _, _, _ in _ORDER_STYLES} | {"failed": "failed (brought back)"}
_PLOTLY_SYMBOL = {"^": "triangle-up", "D": "diamond", "*": "star"}
# Traces of each panel, in this order: roads, centers, orders, vehicles, then the legend entries.
_ROADS, _CENTERS, _ORDERS, _VEHICLES = range(4)
_PER_PANEL = 4
_JUMP = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
_PLAY = {"frame": {"duration": 150, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
_PAUSE = {"mode": "immediate", "frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}}

# Pins the hover text of a clicked point under the map (plotly's own click event; no other script).
_CLICK_SCRIPT = """
var gd = document.getElementById('{plot_id}');
var info = document.createElement('pre');
info.id = 'INFO_ID';
// a fixed height: a longer text must not reflow the page (and move the plot under the pointer)
info.style.cssText = 'font: 13px monospace; margin: 4px 16px; white-space: pre-wrap; height: 16em;'
  + ' overflow: auto;';
info.textContent = 'Click a vehicle to see its plan, or an order to see its promised and actual times.';
gd.parentNode.appendChild(info);
gd.on('plotly_click', function (event) {
  var point = event.points[0];
  var text = Array.isArray(point.data.text) ? point.data.text[point.pointNumber] : point.data.text;
  if (text) { info.textContent = String(text).replace(/<br>/g, '\\n'); }
});
""".replace("INFO_ID", INFO_ID)


def _coordinates(record: dict[str, Any]) -> tuple[Any, str, str, float]:
    """A function from km to plotted coordinates, the axis titles and the y/x pixel ratio of one unit:
    longitude/latitude for a map with a lon/lat projection (a real OSM map), km otherwise."""
    projection = record["map"].get("lonlat_projection")
    if not projection:
        return (lambda xy: np.asarray(xy, dtype=float)), "x (km)", "y (km)", 1.0
    kx, ky = float(projection["km_per_deg_lon"]), float(projection["km_per_deg_lat"])
    lon0, lat0 = float(projection["lon0"]), float(projection["lat0"])

    def to_lonlat(xy: Any) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return np.column_stack([xy[:, 0] / kx + lon0, xy[:, 1] / ky + lat0])

    return to_lonlat, "longitude", "latitude", ky / kx


def _order_texts(timeline: Timeline) -> list[str]:
    """Each order's hover text: what it is, when it arrived, was promised, was due and was served."""
    orders = timeline.record["orders"]
    clock = timeline.clock
    texts = []
    for o in range(timeline.n_orders):

        def at(column: str, o: int = o) -> str:
            value = orders[column][o]
            return "-" if value is None or isinstance(value, str) else clock(float(value))

        kind = "return" if orders["is_return"][o] else orders["option"][o].replace("_", " ")
        vehicle = orders["vehicle"][o]
        texts.append(
            f"order {o} ({kind}, size {orders['size'][o]})<br>arrived {at('arrival_min')}, "
            f"due {at('due_min')}<br>promised {at('promised_eta_min')}<br>served {at('served_min')}"
            f" ({orders['status'][o]}{f', vehicle {vehicle}' if vehicle >= 0 else ''})"
        )
    return texts


def _vehicle_texts(timeline: Timeline, t_min: float) -> list[str]:
    """Each vehicle's hover text at ``t_min``: what it does and its next stops until it is back home."""
    fleet = timeline.record["vehicles"]
    texts = []
    for v in range(timeline.n_vehicles):
        at = timeline.vehicle_at(v, t_min)
        plan = "<br>".join(at.next_stops) if at.next_stops else "(nothing planned)"
        kind = fleet["type_name"][v]
        kind += "" if kind == fleet["mode_name"][v] else f", {fleet['mode_name'][v]}"
        texts.append(f"vehicle {v} ({kind}) at {timeline.clock(t_min)}: {at.doing}<br>plan:<br>{plan}")
    return texts


def _orders_at(addresses: np.ndarray, states: list[str | None]) -> dict[str, Any]:
    """The orders trace at one minute: an order not arrived yet has no coordinates (so it is neither drawn
    nor hovered), the others their state's colour."""
    x = [None if s is None else float(xy[0]) for xy, s in zip(addresses, states, strict=True)]
    y = [None if s is None else float(xy[1]) for xy, s in zip(addresses, states, strict=True)]
    return {"x": x, "y": y, "marker": {"color": [_UNSEEN if s is None else _STATE_COLOUR[s] for s in states]}}


def _headline(record: dict[str, Any], timeline: Timeline, t_min: float) -> str:
    totals = timeline.totals(t_min)
    rate = totals["on_time_rate"]
    rate_text = "-" if math.isnan(rate) else f"{100 * rate:.1f}%"
    return (
        f"<b>{record.get('policy') or 'policy'}</b>  {timeline.clock(t_min)}  on time {rate_text}  "
        f"delivered {totals['on_time'] + totals['late']:.0f}/{totals['arrived']:.0f}  "
        f"cost {totals['cost']:,.1f}"
    )


def build_figure(records: list[dict[str, Any]], step_min: float = 5.0) -> Any:
    """The plotly figure of one record, or of two records of the same day side by side."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise ReplayError("the interactive page needs plotly: pip install 'lastmile[replay]'") from None

    if not 1 <= len(records) <= 2:
        raise ReplayError(f"a page shows one or two records, got {len(records)}")
    if len(records) == 2:
        a, b = records
        if (a.get("scenario"), a.get("seed")) != (b.get("scenario"), b.get("seed")):
            raise ReplayError(
                f"the two records are not the same day: scenario {a.get('scenario')!r} seed {a.get('seed')} "
                f"vs scenario {b.get('scenario')!r} seed {b.get('seed')}"
            )
    timelines = [Timeline(r) for r in records]
    end = max(t.end_min for t in timelines)
    times = frame_times(timelines[0], step_min)
    while times[-1] < end:  # the longer day of the two
        times.append(min(times[-1] + step_min, end))
    fig = make_subplots(rows=1, cols=len(records), horizontal_spacing=0.04)
    headlines: list[dict[str, Any]] = []
    for col, (record, timeline) in enumerate(zip(records, timelines, strict=True), start=1):
        to_xy, x_title, y_title, ratio = _coordinates(record)
        node_xy = to_xy(timeline.node_xy)
        road_x: list[float | None] = []
        road_y: list[float | None] = []
        for i, j in record["map"]["roads"]:
            road_x += [float(node_xy[i, 0]), float(node_xy[j, 0]), None]
            road_y += [float(node_xy[i, 1]), float(node_xy[j, 1]), None]
        fig.add_trace(
            go.Scatter(
                x=road_x, y=road_y, mode="lines", line={"color": "#d0d0d0", "width": 1},
                hoverinfo="skip", showlegend=False, name="roads",
            ),
            row=1, col=col,
        )  # fmt: skip
        centers = to_xy(timeline.key_xy[: timeline.n_centers])
        fig.add_trace(
            go.Scatter(
                x=centers[:, 0], y=centers[:, 1], mode="markers", name="center",
                marker={"symbol": "square", "size": 16, "color": "black"}, hoverinfo="name",
                showlegend=col == 1,
            ),
            row=1, col=col,
        )  # fmt: skip
        first = _orders_at(to_xy(timeline.address_xy), timeline.order_states(times[0]))
        fig.add_trace(
            go.Scatter(
                x=first["x"], y=first["y"], mode="markers", name="orders", showlegend=False,
                marker={"size": 8, **first["marker"]},
                text=_order_texts(timeline), hoverinfo="text",
            ),
            row=1, col=col,
        )  # fmt: skip
        colours = _vehicle_colours(timeline.n_vehicles)
        fig.add_trace(
            go.Scatter(
                x=to_xy(timeline.vehicle_xy(times[0]))[:, 0], y=to_xy(timeline.vehicle_xy(times[0]))[:, 1],
                mode="markers", name="vehicles", showlegend=False, hoverinfo="text",
                text=_vehicle_texts(timeline, times[0]),
                marker={
                    "size": 15, "line": {"width": 1, "color": "black"},
                    "symbol": [_PLOTLY_SYMBOL[_MODE_STYLES[m][1]] for m in timeline.modes],
                    "color": [
                        f"rgb({round(255 * r)},{round(255 * g)},{round(255 * b)})"
                        for r, g, b, _ in colours
                    ],
                },
            ),
            row=1, col=col,
        )  # fmt: skip
        axis = "" if col == 1 else str(col)
        # Fixed ranges (the whole map): the view must not move as orders appear while the slider moves.
        low, high = node_xy.min(axis=0), node_xy.max(axis=0)
        pad = 0.04 * (high - low) + 1e-6
        fig.update_xaxes(
            title_text=x_title, row=1, col=col, showgrid=False, zeroline=False,
            range=[float(low[0] - pad[0]), float(high[0] + pad[0])],
        )  # fmt: skip
        fig.update_yaxes(
            title_text=y_title if col == 1 else None, row=1, col=col, showgrid=False, zeroline=False,
            scaleanchor=f"x{axis}", scaleratio=ratio, range=[float(low[1] - pad[1]), float(high[1] + pad[1])],
        )  # fmt: skip
        headlines.append(
            {
                "text": _headline(record, timeline, times[0]),
                "xref": f"x{axis} domain",
                "yref": f"y{axis} domain",
                "x": 0.0,
                "y": 1.06,
                "showarrow": False,
                "xanchor": "left",
                "font": {"family": "monospace", "size": 13},
            }
        )
    for state in ORDER_STATES:  # the legend of the order colours (empty traces)
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=_STATE_LABEL[state],
                marker={"size": 8, "color": _STATE_COLOUR[state]}, hoverinfo="skip",
            )
        )  # fmt: skip

    dynamic = [p * _PER_PANEL + k for p in range(len(records)) for k in (_ORDERS, _VEHICLES)]
    frames = []
    for t in times:
        data: list[dict[str, Any]] = []
        annotations = []
        for record, timeline, headline in zip(records, timelines, headlines, strict=True):
            to_xy = _coordinates(record)[0]
            xy = to_xy(timeline.vehicle_xy(t))
            data.append(_orders_at(to_xy(timeline.address_xy), timeline.order_states(t)))
            data.append({"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "text": _vehicle_texts(timeline, t)})
            annotations.append({**headline, "text": _headline(record, timeline, t)})
        frames.append(go.Frame(name=f"{t:g}", data=data, traces=dynamic, layout={"annotations": annotations}))
    fig.frames = frames

    clock = timelines[0].clock
    steps = [
        {
            "label": clock(t),
            "method": "animate",
            "args": [
                [f"{t:g}"],
                {
                    "mode": "immediate",
                    "frame": {"duration": 0, "redraw": True},
                    "transition": {"duration": 0},
                },
            ],
        }
        for t in times
    ]
    fig.update_layout(
        annotations=headlines,
        sliders=[
            {"active": 0, "steps": steps, "currentvalue": {"prefix": "time "}, "pad": {"t": 40}}
            | {"x": 0.1, "len": 0.9}
        ],
        updatemenus=[
            {
                "type": "buttons", "direction": "left", "x": 0.0, "y": 0, "xanchor": "left", "yanchor": "top",
                "pad": {"t": 48},
                "buttons": [
                    {"label": "play", "method": "animate", "args": [None, _PLAY]},
                    {"label": "pause", "method": "animate", "args": [[None], _PAUSE]},
                ],
            }
        ],
        legend={"orientation": "h", "y": 1.12, "x": 0.0},
        margin={"l": 60, "r": 20, "t": 110, "b": 40},
        plot_bgcolor="white",
        hovermode="closest",
        hoverlabel={"font": {"family": "monospace"}},
    )  # fmt: skip
    return fig


def write_page(
    records: list[dict[str, Any]], out: str | Path, step_min: float = 5.0, height_px: int = 760
) -> Path:
    """Write the page of one or two records as one self-contained HTML file (plotly.js embedded)."""
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ReplayError(f"cannot write a page as {path.name!r}: use .html")
    fig = build_figure(records, step_min)
    html = fig.to_html(
        include_plotlyjs=True,
        full_html=True,
        auto_play=False,
        div_id=PAGE_ID,
        default_height=f"{height_px}px",
        post_script=_CLICK_SCRIPT,
        config={"displaylogo": False, "responsive": True},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
