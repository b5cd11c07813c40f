"""The web console's pieces without a cluster: the HTTP front (GET only, the bearer token,
unknown pages), the lag chart's SVG, value rendering (text, hex, cut), escaping, and
GetLagHistory's thinning of long series."""

from __future__ import annotations

from brook.services.coordinator import console
from brook.services.groups.service import thin
from brook.v1 import groups_pb2


async def test_get_only_token_and_unknown_pages() -> None:
    """Proves a POST is 405 naming GET, a missing or wrong token is 401, and an unknown
    path is 404, before any gRPC call."""
    front = console.Console("127.0.0.1:0", lambda: "127.0.0.1:1", token="s3cret")
    status, _, extra = await front._answer(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, extra) == (405, {"Allow": "GET"})
    status, _, _ = await front._answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 401
    wrong = b"GET / HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"
    assert (await front._answer(wrong))[0] == 401
    right = b"GET /nowhere HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"
    assert (await front._answer(right))[0] == 404
    assert (await front._answer(b"garbage\r\n\r\n"))[0] == 400


def test_lag_chart_draws_a_polyline_per_series_with_escaped_names() -> None:
    """Proves each series with points in the window is one polyline whose points lie in the
    plot, older points are left out, and labels are escaped."""
    now = 10_000_000
    series = [
        groups_pb2.LagSeries(
            topic="a<b", partition=0,
            points=[groups_pb2.LagSample(time_ms=now - 7_200_000, lag_records=5),
                    groups_pb2.LagSample(time_ms=now - 1_800_000, lag_records=50),
                    groups_pb2.LagSample(time_ms=now, lag_records=100)],
        ),
        groups_pb2.LagSeries(topic="t", partition=1),
    ]  # fmt: skip
    svg = console.lag_chart(series, now, 3_600_000)
    assert svg.startswith("<svg") and svg.count("<polyline") == 1
    assert "a&lt;b-0" in svg and "a<b" not in svg
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 2
    xs = [float(p.split(",")[0]) for p in points]
    ys = [float(p.split(",")[1]) for p in points]
    pad = console.CHART_PAD
    assert all(pad <= x <= console.CHART_W - pad for x in xs) and xs[0] < xs[1]
    assert ys[1] == pad  # the largest lag at the top


def test_values_as_text_or_hex_and_cut() -> None:
    """Proves values show as UTF-8 text (bad bytes replaced) or spaced hex, cut at
    VALUE_CHARS_MAX with the full size named."""
    assert console._show(b"hi\xff", "text") == "hi\ufffd"
    assert console._show(b"hi", "hex") == "68 69"
    long = console._show(b"x" * 5000, "text")
    assert len(long) < console.VALUE_CHARS_MAX + 40 and long.endswith("(5000 bytes)")
    assert console.esc("<a href='x'>&") == "&lt;a href=&#x27;x&#x27;&gt;&amp;"


def test_thin_keeps_the_ends_and_bounds_the_points() -> None:
    """Proves GetLagHistory's thinning keeps at most `most` points, evenly, first and last
    included, and leaves short series alone."""
    points = list(range(1000))
    thinned = thin(points, 240)
    assert len(thinned) == 240 and thinned[0] == 0 and thinned[-1] == 999
    assert thinned == sorted(set(thinned))
    assert thin(points[:10], 240) == points[:10]
    assert thin(points, 1) == [999]
