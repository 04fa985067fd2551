"""bench/gateway_tunnel.py's pure parts, on made-up windows: the paced sender's
schedule (on a made-up clock) and its check, the sweep's search for the best rate at
<= 1 % loss (climb, back off, halve the gap, stop at the sender's ceiling), the
figures a sweep gives (the best held rate's CPU, who limited it), the ratio to
wireguard-go within each repetition, and the tables, the TCP part's too. The
benchmark itself never runs in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from hostfwd.paced_send import MAX_BURST, Pacer, check, read_frames, slots, write_frames
from hostfwd.report import summarize_entries
from hostfwd.tunnel_measure import sweep_figures
from hostfwd.tunnel_report import (
    key_of,
    limit_cell,
    print_table,
    print_tcp_table,
    ratios,
    tcp_key_of,
    verdicts,
)
from hostfwd.tunnel_sweep import Plan, Step, best, first_failed, next_rate


class FakeClock:
    """A monotonic clock in ns that each send advances by ``send_ns`` and each sleep
    by what was asked plus ``overshoot_ns``; ``stall_at``: the clock jumps by
    ``stall_ns`` once, when that many frames have gone (the sender preempted)."""

    def __init__(self, send_ns: int, overshoot_ns: int = 15_000) -> None:
        self.now, self.send_ns, self.overshoot_ns = 0, send_ns, overshoot_ns
        self.sent: list[int] = []  # each frame's send time
        self.stall_at, self.stall_ns = -1, 0

    def clock(self) -> int:
        self.now += 50  # a clock read costs something too
        return self.now

    def sleep(self, s: float) -> None:
        self.now += round(s * 1e9) + self.overshoot_ns

    def send(self, frame: bytes) -> None:
        if len(self.sent) == self.stall_at:
            self.now += self.stall_ns
        self.sent.append(self.now)
        self.now += self.send_ns


def pace(rate: int, fake: FakeClock, secs: float = 0.2) -> dict:
    pacer = Pacer(rate, round(secs * 1e9))
    pacer.run(fake.send, [b"a", b"b"], 0, fake.clock, fake.sleep)
    return pacer.report()


def test_the_sender_sends_each_frame_at_its_due_time_one_per_wake_up() -> None:
    for rate in (5_000, 60_000):
        fake = FakeClock(send_ns=5_000)
        r = pace(rate, fake)
        assert abs(r["sent"] - rate * 0.2) <= 1 and r["missed"] == 0
        assert r["bursts"] == {"1": r["sent"]}
        gaps = [b - a for a, b in zip(fake.sent, fake.sent[1:], strict=False)]
        period = 1e9 / rate
        assert all(abs(g - period) < 1_000 for g in gaps)  # within a us of the period
        assert r["gap_us"]["p50"] == int(period // 1000)
        assert check(r, rate) is None


def test_a_late_sender_catches_up_a_few_frames_at_a_time_and_skips_the_rest() -> None:
    assert slots(0, 10_000) == (1, 0)
    assert slots(25_000, 10_000) == (3, 0)  # three frames were due
    assert slots(100_000, 10_000) == (MAX_BURST, 11 - MAX_BURST)
    fake = FakeClock(send_ns=5_000)
    fake.stall_at, fake.stall_ns = 1000, 2_000_000  # 2 ms preempted at 50k pps: 100 slots
    r = pace(50_000, fake)
    assert max(int(n) for n in r["bursts"]) == MAX_BURST
    # the 100 frames due in the stall: the latest MAX_BURST sent at once, the rest skipped
    assert r["missed"] == 100 - MAX_BURST
    assert r["sent"] + r["missed"] == 10_000
    assert r["gap_us"]["max"] == 2000  # the stall, in the histogram's last bucket
    assert check(r, 50_000) is None  # 0.96 % of the schedule missed: still paced


def test_a_sender_slower_than_the_rate_is_refused() -> None:
    r = pace(60_000, FakeClock(send_ns=20_000))  # 50k pps at most
    assert r["missed"] > 0.1 * (r["sent"] + r["missed"])
    assert 49_000 < r["achieved_pps"] < 50_100
    reason = check(r, 60_000)
    assert reason is not None and "fell behind" in reason
    assert check({**r, "sent": 0, "missed": 0}, 60_000) == "the sender sent nothing"


def test_frames_are_read_back_as_written(tmp_path: Path) -> None:
    frames = [b"\x00" * 1454, b"abc", bytes(range(256))]
    assert read_frames(write_frames(tmp_path / "f", frames)) == frames


def run_sweep(plan: Plan, capacity: float, ceiling: float = 1e9) -> list[Step]:
    """The search against a made-up tunnel delivering up to ``capacity`` pps, fed by
    a sender that can pace at most ``ceiling`` (above it, the window is refused)."""
    steps: list[Step] = []
    while (rate := next_rate(plan, steps)) is not None:
        offered = min(rate, ceiling)
        paced = offered >= 0.99 * rate
        steps.append(Step(rate, offered, min(offered, capacity), paced))
    return steps


def test_the_sweep_climbs_then_halves_the_gap_to_the_first_rate_that_lost() -> None:
    plan = Plan(start=10_000, factor=2.0, refine=1.1, max_steps=10)
    steps = run_sweep(plan, capacity=33_000)
    rates = [s.rate for s in steps]
    assert rates[:3] == [10_000, 20_000, 40_000]  # 40k loses 17.5 %: the climb ends
    # then geometric midpoints between the best that held and the lowest that lost
    assert rates[3] == round((20_000 * 40_000) ** 0.5)  # 28284: held
    assert rates[4] == round((28_284 * 40_000) ** 0.5)  # 33636: lost 1.9 %
    assert all(s.ok == (s.rate <= 33_333) for s in steps)  # 1 % of loss allowed
    held = best(steps)
    assert held is not None and 30_000 < held.delivered_pps <= 33_000
    # done once the rate that lost is within 10 % of one that held
    low = max(s.rate for s in steps if s.ok)
    assert min(s.rate for s in steps if not s.ok) <= low * 1.1


def test_the_sweep_backs_off_below_its_start_and_gives_up_at_the_floor() -> None:
    plan = Plan(start=10_000, factor=2.0, max_steps=10, floor=1000)
    steps = run_sweep(plan, capacity=3_000)
    assert [s.rate for s in steps][:3] == [10_000, 5_000, 2_500]
    assert best(steps) is not None
    nothing = run_sweep(plan, capacity=0)
    assert [s.rate for s in nothing] == [10_000, 5_000, 2_500, 1_250]  # 625 < the floor
    assert best(nothing) is None


def test_the_sweep_stops_at_the_senders_ceiling_and_after_max_steps() -> None:
    # the sender paces 15k at most, and the tunnel takes it all: the windows it could
    # not pace count for nothing, and the search closes in on its ceiling instead
    steps = run_sweep(Plan(start=10_000, factor=2.0, max_steps=10), 1e9, ceiling=15_000)
    assert [s.rate for s in steps] == [10_000, 20_000, 14_142, 16_818, 15_422]
    assert [s.paced for s in steps] == [True, False, True, False, False]
    assert best(steps) == steps[2]
    # a refused window that lost is not the rate that lost first: a paced one is
    lossy = run_sweep(Plan(start=10_000, factor=2.0, max_steps=10), 12_000, ceiling=15_000)
    assert lossy[1].rate == 20_000 and not lossy[1].ok and not lossy[1].paced
    failed, held = first_failed(lossy), best(lossy)
    assert failed is not None and failed.paced and failed.rate < 15_000
    assert held is not None and 11_000 < held.delivered_pps <= 12_000
    assert len(run_sweep(Plan(start=1000, factor=1.1, max_steps=4), 1e9)) == 4


def window(rate: int, offered: int, into: int, delivered: int, recv: float) -> dict:
    return {
        "rate": rate,
        "offered_pps": offered,
        "into_tunnel_pps": into,
        "delivered_pps": delivered,
        "recv_cores": recv,
        "site_cores": 0.5,
        "recv_cpu_s_per_mpkt": round(recv / into * 1e6, 3),
        "other_cores": 0.02,
        "refused": None,
    }


def test_a_sweep_gives_its_best_held_rate_with_that_windows_cpu_and_who_limited_it() -> None:
    gateway_bound = [
        window(10_000, 10_000, 10_000, 10_000, 0.2),
        window(20_000, 20_000, 20_000, 19_900, 0.4),  # 0.5 % lost: held, the best
        window(40_000, 40_000, 25_000, 24_900, 1.0),  # the daemon sent only 25k
    ]
    r = sweep_figures(gateway_bound)
    assert (r["delivered_pps"], r["offered_pps"], r["max_delivered_pps"]) == (
        19_900,
        20_000,
        24_900,
    )
    assert r["recv_cores"] == 0.4 and r["cpu_s_per_mpkt"] == 20.0
    assert r["bottleneck"] == "receiver (gateway side)"
    assert r["cpu_s_per_mpkt_at_limit"] == 40.0  # a saturated core: 25k packets a second
    site_bound = [*gateway_bound[:2], window(40_000, 40_000, 40_000, 30_000, 0.8)]
    assert sweep_figures(site_bound)["bottleneck"] == "site"
    assert sweep_figures(gateway_bound[:2])["bottleneck"] == "sender"
    lost_all = sweep_figures([window(5_000, 5_000, 5_000, 100, 0.1)])
    assert lost_all["delivered_pps"] == 0 and "recv_cores" not in lost_all
    # the sender fell behind at 40k: that window neither held nor limited anything
    refused = {**gateway_bound[2], "refused": "the sender fell behind"}
    r = sweep_figures([*gateway_bound[:2], refused])
    assert (r["delivered_pps"], r["bottleneck"]) == (19_900, "sender")


def entry(pps: dict[int, float], bottleneck: str = "site") -> dict:
    runs = [
        {"rep": rep, "delivered_pps": v, "offered_pps": v, "max_delivered_pps": v * 1.2}
        for rep, v in pps.items()
    ]
    for r in runs:
        r.update(bottleneck=bottleneck, recv_cores=0.5, cpu_s_per_mpkt=25.0)
    return {"what": "made up", "runs": runs}


def test_the_ratio_to_wireguard_go_is_taken_within_each_repetition_and_tabled(
    capsys,
) -> None:
    results = {
        key_of("wggo"): entry({1: 40_000.0, 2: 20_000.0}),
        key_of("asyncio"): entry({1: 30_000.0, 2: 30_000.0}, "receiver (gateway side)"),
        key_of("trio"): entry({2: 10_000.0}),
    }
    rat = ratios(results)
    assert rat["tunnel-asyncio_1400/wggo"]["per_rep"] == [0.75, 1.5]
    assert rat["tunnel-trio_1400/wggo"]["per_rep"] == [0.5]
    assert set(rat) == {"tunnel-asyncio_1400/wggo", "tunnel-trio_1400/wggo"}
    assert limit_cell(results[key_of("asyncio")]) == "gateway"
    problems: list[str] = []
    summarize_entries(results, problems)
    assert not problems
    print_table(results, rat)
    lines = capsys.readouterr().out.splitlines()
    asyncio_row = next(line for line in lines if line.startswith("tunnel-asyncio"))
    assert asyncio_row.split() == [
        "tunnel-asyncio_1400", "30k", "(30k..30k)", "30k", "1.12", "(0.75..1.50)", "-",
        "0.50", "25.00", "36k", "gateway",
    ]  # fmt: skip
    wggo_row = next(line for line in lines if line.startswith("tunnel-wggo"))
    assert wggo_row.split()[4] == "1.00"


def tcp_entry(mbit_s: dict[int, float], **cores: float) -> dict:
    """A made-up TCP measurement: a run per repetition, its goodput ``mbit_s[rep]``."""
    runs = [
        {"rep": rep, "mbit_s": v, "retransmits": 100 * rep, "gateway_cores": 0.6, **cores}
        for rep, v in mbit_s.items()
    ]
    return {"what": "made up", "runs": runs}


def test_tcp_goodput_is_compared_with_wireguard_gos_within_each_repetition_and_tabled(
    capsys,
) -> None:
    failed = {"what": "made up", "runs": [], "error": "iperf3 from nvb-snd: no report"}
    tcp = {
        tcp_key_of("wggo"): tcp_entry({1: 500.0, 2: 400.0}),
        tcp_key_of("asyncio"): tcp_entry({1: 250.0, 2: 400.0}),
        tcp_key_of("vm-trio"): tcp_entry({2: 100.0}, host_cores=0.5),
        tcp_key_of("trio"): failed,
    }
    rat = ratios(tcp, tcp_key_of("wggo"), "mbit_s")
    assert rat == {
        "tcp-asyncio/wggo": {"per_rep": [0.5, 1.0], "median": 0.75, "min": 0.5, "max": 1.0},
        "tcp-vm-trio/wggo": {"per_rep": [0.25], "median": 0.25, "min": 0.25, "max": 0.25},
    }
    problems: list[str] = []
    summarize_entries(tcp, problems)
    assert problems == ["tcp-trio: iperf3 from nvb-snd: no report"]
    print_tcp_table(tcp, rat)
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["tcp-asyncio"] == [
        "tcp-asyncio", "325", "(250..400)", "0.75", "(0.50..1.00)", "-", "0.60", "-", "150",
    ]  # fmt: skip
    assert rows["tcp-vm-trio"][6:] == ["0.60", "0.50", "200"]  # the lab's host daemon too
    assert rows["tcp-wggo"][3] == "1.00"
    assert rows["tcp-trio"][1:] == ["FAILED:", "iperf3", "from", "nvb-snd:", "no", "report"]


def test_the_bare_loop_is_the_ceiling_measured_against_but_never_held_to_the_target(
    capsys,
) -> None:
    results = {
        key_of("wggo"): entry({1: 40_000.0, 2: 20_000.0}),
        key_of("bare"): entry({1: 20_000.0, 2: 10_000.0}),
        key_of("asyncio"): entry({1: 30_000.0, 2: 30_000.0}),
        key_of("trio"): entry({1: 50_000.0, 2: 40_000.0}),
    }
    tcp = {
        tcp_key_of("wggo"): tcp_entry({1: 500.0}),
        tcp_key_of("bare"): tcp_entry({1: 400.0}),
        tcp_key_of("asyncio"): tcp_entry({1: 200.0}),
        tcp_key_of("vm-asyncio"): tcp_entry({1: 100.0}),
    }
    rat, tcp_rat, below = verdicts(results, tcp)
    assert rat["tunnel-bare_1400/wggo"]["per_rep"] == [0.5, 0.5]  # the ceiling's own
    assert rat["tunnel-asyncio_1400/bare"]["per_rep"] == [1.5, 3.0]
    assert rat["tunnel-trio_1400/bare"]["per_rep"] == [2.5, 4.0]
    assert "tunnel-wggo_1400/bare" not in rat and "tunnel-bare_1400/bare" not in rat
    assert tcp_rat["tcp-vm-asyncio/bare"]["median"] == 0.25
    assert tcp_rat["tcp-bare/wggo"]["median"] == 0.8
    # only the daemons are held to wireguard-go; the bare loop below it is no verdict
    assert below == ["tcp-asyncio/wggo", "tcp-vm-asyncio/wggo"]  # asyncio: 0.75, 1.5
    summarize_entries(results, [])
    print_table(results, rat)
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["tunnel-bare_1400"][4:7] == ["0.50", "(0.50..0.50)", "1.00"]
    assert rows["tunnel-trio_1400"][4:8] == ["1.62", "(1.25..2.00)", "3.25", "(2.50..4.00)"]
    assert rows["tunnel-wggo_1400"][4:6] == ["1.00", "-"]
