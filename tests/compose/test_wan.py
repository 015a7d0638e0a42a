"""ops/wan.py's pure parts: tc rates, the commands for a link, the drain against the link."""

from __future__ import annotations

import pytest

from ops import wan


def test_rates_in_tc_spelling():
    assert wan.rate_bps("20mbit") == 20e6 and wan.rate_bps("512kbit") == 512e3 and wan.rate_bps("1gbit") == 1e9
    for bad in ("20", "20mbps", "-1mbit", "0mbit", "fast"):
        with pytest.raises(ValueError):
            wan.rate_bps(bad)
    assert wan.loss_pct("0.1%") == 0.1 and wan.loss_pct("2") == 2.0
    with pytest.raises(ValueError):
        wan.loss_pct("100%")


def test_netem_at_the_root_and_tbf_below_it_or_tbf_alone_for_a_rate():
    full = wan.Link(50, "20mbit", 0.1).tc_commands("eth1")
    assert full[0][:9] == ["tc", "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "netem"]
    assert "50ms" in full[0] and "0.1%" in full[0]
    assert full[1][5:10] == ["parent", "1:1", "handle", "10:", "tbf"] and "20mbit" in full[1]
    rate_only = wan.Link(0, "20mbit", 0).tc_commands("eth1")
    assert len(rate_only) == 1 and rate_only[0][5:9] == ["root", "handle", "1:", "tbf"]
    assert not wan.Link().shaped and wan.Link(loss=0.1).needs_netem


def test_the_drain_as_a_fraction_of_the_link():
    # 20 Mbit/s = 2.5 MB/s; 250 B per reading on the wire -> 10,000 readings/s.
    fig = wan.link_figures(wan.Link(50, "20mbit", 0.1), sent_bytes=25_000_000, delivered=100_000, drain_s=12.5)
    assert fig["wire_bytes_per_reading"] == 250.0 and fig["binding_limit_rate"] == 10_000.0
    assert fig["delivered_rate"] == 8_000.0 and fig["fraction_of_limit"] == 0.8
    text = "\n".join(wan.render(fig))
    assert "20 Mbit/s" in text and "0.80 of the limit" in text and "250 B/reading" in text
    # No drain measured: the link is described, no made-up figures.
    assert "binding_limit" not in wan.link_figures(wan.Link(0, "20mbit"), None, 0, None)
