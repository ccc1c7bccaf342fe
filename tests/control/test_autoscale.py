"""The autoscaler's decision with plain data: load samples in, replicas per variant out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from pydantic import ValidationError

from pilotage.api.modeldeployment import Autoscaling, ModelDeploymentSpec, VariantReplicas
from pilotage.control.autoscale import (
    ACTIVATED,
    SCALED_DOWN,
    SCALED_TO_ZERO,
    SCALED_UP,
    LoadSample,
    Policy,
    VariantLoad,
    autoscale,
    decide,
    summary,
    window_load,
)
from tests.control.factories import at

STEP = 2.0  # the shell's sampling interval in these tests


def policy(**fields: object) -> Policy:
    base: dict[str, object] = {
        "minReplicas": 1,
        "maxReplicas": 10,
        "target": {"inFlight": 4},
        "window": "60s",
        "panicWindow": "6s",
        "scaleDownDelay": "30s",
        "scaleToZeroAfter": "60s",
    }
    base.update(fields)
    return Policy.of(Autoscaling.model_validate(base))


class Load:
    """A variant's router counters as the shell samples them every STEP seconds."""

    def __init__(self) -> None:
        self.t = 0.0
        self.requests = 0
        self.busy = 0.0
        self.samples: list[LoadSample] = [LoadSample(at(0), 0, 0.0)]

    def run(self, seconds: float, concurrency: float, rps: float = 0.0, held: int = 0) -> None:
        for _ in range(round(seconds / STEP)):
            self.t += STEP
            self.requests += round(rps * STEP) if rps else (1 if concurrency else 0)
            self.busy += concurrency * STEP
            self.samples.append(
                LoadSample(
                    at(self.t),
                    self.requests,
                    self.busy,
                    in_flight=round(concurrency),
                    held=held,
                )
            )

    def view(self, version: str = "1", ready: int = 1) -> VariantLoad:
        return VariantLoad(version, tuple(self.samples[-64:]), ready)


def drive(
    p: Policy,
    load: Load,
    profile: Iterable[tuple[float, float]],
    start: VariantReplicas | None = None,
    ready_follows: bool = True,
) -> list[tuple[float, int, str]]:
    """Run a (seconds, concurrency) profile, deciding every STEP; replicas become ready at
    once when ``ready_follows``. Returns (time, desired, reason) per decision."""
    state = start
    out: list[tuple[float, int, str]] = []
    for seconds, concurrency in profile:
        for _ in range(round(seconds / STEP)):
            load.run(STEP, concurrency)
            ready = state.desired if (state is not None and ready_follows) else 1
            d = decide(p, load.view(ready=ready), state, at(load.t))
            state = d.status
            out.append((load.t, d.desired, d.reason))
    return out


def test_window_load_is_average_concurrency_and_rate() -> None:
    load = Load()
    load.run(20, concurrency=3, rps=50)
    assert window_load(load.samples, 10, "inFlight") == pytest.approx(3)
    assert window_load(load.samples, 10, "requestsPerSecond") == pytest.approx(50)
    load.run(4, concurrency=9, rps=10)
    assert window_load(load.samples, 4, "inFlight") == pytest.approx(9)
    assert window_load(load.samples, 24, "inFlight") == pytest.approx((3 * 20 + 9 * 4) / 24)
    # the window is shorter than the sampling interval: the last interval counts
    assert window_load(load.samples, 0.5, "inFlight") == pytest.approx(9)


def test_window_load_needs_two_samples_and_ignores_counters_before_a_router_restart() -> None:
    assert window_load([LoadSample(at(0), 5, 1.0)], 10, "inFlight") is None
    samples = [
        LoadSample(at(0), 1000, 900.0),
        LoadSample(at(2), 1100, 950.0),
        LoadSample(at(4), 3, 2.0),  # the router restarted: counters from zero
        LoadSample(at(6), 13, 6.0),
    ]
    assert window_load(samples, 60, "inFlight") == pytest.approx(2.0)
    assert window_load(samples, 60, "requestsPerSecond") == pytest.approx(5.0)


def test_held_requests_count_as_load() -> None:
    samples = [LoadSample(at(0), 0, 0.0), LoadSample(at(2), 0, 0.0, held=7)]
    assert window_load(samples, 60, "inFlight") == pytest.approx(7)


def test_a_new_variant_starts_with_spec_replicas_within_min_and_max() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"uri": "file:///m"}, "replicas": 3, "autoscaling": {"maxReplicas": 2}}
    )
    p = Policy.from_spec(spec)
    assert p is not None and p.initial == 2
    d = decide(p, VariantLoad("1"), None, at(0))
    assert d.desired == 2 and d.reason == ""
    assert Policy.of(Autoscaling.model_validate({"minReplicas": 0}), 1).initial == 1
    assert Policy.of(Autoscaling.model_validate({"minReplicas": 4}), 1).initial == 4


def test_steady_load_keeps_the_replicas_it_needs() -> None:
    p = policy()
    history = drive(p, Load(), [(60, 8)])  # 8 in flight, 4 per replica: 2
    assert history[-1][1] == 2
    assert [r for _, _, r in history if r] == [SCALED_UP]  # once, no flapping


def test_a_load_step_is_absorbed_within_a_few_intervals_by_the_panic_window() -> None:
    p = policy()
    load = Load()
    before = drive(p, load, [(60, 2)])
    assert before[-1][1] == 1
    after = drive(p, load, [(10, 36)], start=decide(p, load.view(), None, at(load.t)).status)
    # the stable window (60 s) alone would need 9 replicas only after a minute;
    # the panic window (6 s) asks for them within 3 decisions
    reached = next(t for t, desired, _ in after if desired >= 9)
    assert reached - 60 <= 3 * STEP
    assert after[-1][1] == 9


def test_scale_up_is_limited_by_scale_up_rate_per_decision() -> None:
    p = policy(scaleUpRate=2, maxReplicas=50)
    load = Load()
    load.run(STEP, 0)
    state = decide(p, load.view(ready=1), None, at(load.t)).status
    seen = []
    for _ in range(5):
        load.run(STEP, 160)  # wants 40
        d = decide(p, load.view(ready=state.desired), state, at(load.t))
        state = d.status
        seen.append(d.desired)
    assert seen[:3] == [2, 4, 8]  # at most twice the ready replicas per decision
    assert seen[-1] == 32


def test_max_replicas_is_never_exceeded() -> None:
    history = drive(policy(maxReplicas=3), Load(), [(20, 400)])
    assert max(d for _, d, _ in history) == 3


def test_scale_down_waits_for_the_delay_and_keeps_the_highest_wanted() -> None:
    p = policy(panicWindow="2s", window="4s", scaleDownDelay="10s")
    load = Load()
    high = drive(p, load, [(10, 32)])  # 8 replicas
    assert high[-1][1] == 8
    state = decide(p, load.view(ready=8), None, at(load.t)).status
    state = state.model_copy(update={"desired": 8})
    history = drive(p, load, [(4, 12), (20, 4)], start=state)
    times = {t: (d, r) for t, d, r in history}
    # below 8 from t=12 on, but not for 10 s yet: still 8
    assert all(d == 8 for t, (d, _) in times.items() if t < 12 + 10)
    downs = [(t, d) for t, (d, r) in times.items() if r == SCALED_DOWN]
    assert downs, history
    # the first scale-down keeps the most wanted during the delay: at t=12 the 4 s window
    # averages 32 and 12 in flight, 22, so 6 replicas (not the 3 that 12 in flight need)
    assert downs[0][1] == 6
    assert history[-1][1] == 1


def test_load_hovering_around_a_boundary_does_not_flap() -> None:
    p = policy(panicWindow="2s", window="2s", scaleDownDelay="20s")
    load = Load()
    profile = [(2, 8.4), (2, 7.6)] * 15  # wants 3 or 2 replicas, alternating every sample
    history = drive(p, load, profile)
    changes = [r for _, _, r in history if r]
    assert changes.count(SCALED_DOWN) == 0
    assert history[-1][1] == 3


def test_panic_mode_holds_replicas_for_a_window_after_the_burst() -> None:
    p = policy(window="20s", panicWindow="4s", scaleDownDelay="0s")
    load = Load()
    history = drive(p, load, [(4, 4), (4, 40), (30, 4)])
    peak = max(d for _, d, _ in history)
    assert peak == 10
    # the panic condition last held at t=6 (the 4 s window then wanted 6 replicas, 2x the
    # one ready); t=8 wanted 10, under 2x the 6 ready. No scale-down for a window after.
    first_down = next(t for t, _, r in history if r == SCALED_DOWN)
    assert first_down == 6 + 20
    assert history[-1][1] == 1


def test_scale_to_zero_after_the_idle_time_and_not_before() -> None:
    p = policy(minReplicas=0, scaleToZeroAfter="30s", scaleDownDelay="4s")
    load = Load()
    history = drive(p, load, [(10, 4), (60, 0)])
    zero = [(t, r) for t, d, r in history if d == 0]
    assert zero, history
    first_zero, reason = zero[0]
    assert reason == SCALED_TO_ZERO
    assert 10 + 30 <= first_zero <= 10 + 30 + STEP
    assert all(d == 1 for t, d, _ in history if t < 40)


def test_min_replicas_above_zero_never_goes_to_zero() -> None:
    history = drive(policy(minReplicas=2, scaleToZeroAfter="10s"), Load(), [(100, 0)])
    assert {d for _, d, _ in history} == {2}


def test_a_held_request_wakes_a_variant_at_zero_at_once() -> None:
    p = policy(minReplicas=0, scaleToZeroAfter="10s", scaleDownDelay="2s")
    load = Load()
    history = drive(p, load, [(4, 2), (30, 0)])
    assert history[-1][1] == 0
    state = decide(p, load.view(ready=0), None, at(0)).status.model_copy(
        update={"desired": 0, "active_time": "2026-01-01T00:00:04Z"}
    )
    load.run(STEP, 0, held=1)
    d = decide(p, load.view(ready=0), state, at(load.t))
    assert (d.desired, d.reason) == (1, ACTIVATED)
    # many held requests start enough replicas for them at once
    load.run(STEP, 0, held=30)
    d = decide(p, load.view(ready=0), state, at(load.t))
    assert d.desired == 8  # ceil(30 / 4)
    # and the variant does not go back to zero while they wait
    load.run(STEP, 0, held=30)
    d2 = decide(p, load.view(ready=0), d.status, at(load.t))
    assert d2.desired == 8


def test_at_zero_without_requests_stays_at_zero() -> None:
    p = policy(minReplicas=0, scaleToZeroAfter="10s")
    load = Load()
    state = VariantReplicas(version="1", desired=0, active_time="2026-01-01T00:00:00Z")
    for _ in range(20):
        load.run(STEP, 0)
        d = decide(p, load.view(ready=0), state, at(load.t))
        state = d.status
        assert (d.desired, d.reason) == (0, "")


def test_requests_per_second_target() -> None:
    p = policy(target={"requestsPerSecond": 100}, panicWindow="4s", window="4s")
    load = Load()
    state = None
    for _ in range(5):
        load.run(STEP, 1, rps=450)
        d = decide(p, load.view(ready=state.desired if state else 1), state, at(load.t))
        state = d.status
    assert state is not None and state.desired == 5
    assert state.load == pytest.approx(450)


def test_each_variant_scales_on_its_own_load_and_the_promoted_stable_keeps_its_replicas() -> None:
    p = policy(panicWindow="4s", window="4s")
    stable, canary = Load(), Load()
    status: Mapping[str, VariantReplicas] = {}
    for _ in range(5):
        stable.run(STEP, 24)
        canary.run(STEP, 3)
        result = autoscale(
            p,
            {
                "stable": stable.view("1", ready=status["stable"].desired if status else 1),
                "canary": canary.view("2", ready=1),
            },
            status,
            at(stable.t),
        )
        status = result.status
    assert result.replicas == {"1": 6, "2": 1}
    assert status["stable"].desired == 6 and status["canary"].desired == 1
    assert result.summary == "stable 6/6 / canary 1/1"
    # the canary (version 2) is promoted: the stable's entry carries version 2's replicas
    heavy = Load()
    heavy.run(STEP, 3)
    after = autoscale(p, {"stable": heavy.view("2", ready=1)}, status, at(stable.t + STEP))
    assert after.status["stable"].version == "2"
    assert after.status["stable"].desired == 1
    assert after.events == []


def test_events_name_the_variant_and_the_measure() -> None:
    p = policy(panicWindow="4s", window="4s")
    load = Load()
    load.run(4, 20)
    result = autoscale(p, {"canary": load.view("7", ready=1)}, {}, at(load.t))
    (event,) = result.events
    assert event.reason == SCALED_UP
    assert event.message.startswith("canary (7): 1 → 5 replicas (20.00 in flight")


def test_summary_orders_variants() -> None:
    status = {
        "shadow": VariantReplicas(version="2", desired=0, ready=0),
        "stable": VariantReplicas(version="1", desired=3, ready=2),
    }
    assert summary(status) == "stable 2/3 / shadow 0/0"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, "minReplicas (5) must not be greater"),
        ({"target": {}}, "exactly one of inFlight or requestsPerSecond"),
        (
            {"target": {"inFlight": 2, "requestsPerSecond": 5}},
            "exactly one of inFlight or requestsPerSecond",
        ),
        ({"target": {"inFlight": 0}}, "greater than 0"),
        ({"panicWindow": "2m", "window": "1m"}, "panicWindow (2m) must not be longer"),
        ({"window": "0s"}, "window must be longer than 0"),
        ({"maxReplicas": 0}, "greater than or equal to 1"),
        ({"minReplicas": -1}, "greater than or equal to 0"),
        ({"scaleDownDelay": "soon"}, "String should match pattern"),
        ({"scaleUpRate": 1}, "greater than 1"),
    ],
)
def test_invalid_autoscaling_is_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Autoscaling.model_validate(fields)


def test_a_variant_still_starting_is_not_idle() -> None:
    p = policy(minReplicas=0, scaleToZeroAfter="4s")
    load = Load()
    state = None
    for _ in range(10):  # 20 s without a ready replica and without requests
        load.run(STEP, 0)
        d = decide(p, load.view(ready=0), state, at(load.t))
        state = d.status
        assert d.desired == 1
    load.run(STEP, 0)  # ready now (t=22): idle since the last decision while starting
    d = decide(p, load.view(ready=1), state, at(load.t))
    state = d.status
    assert d.desired == 1
    load.run(STEP, 0)  # t=24: 4 s idle
    d = decide(p, load.view(ready=1), state, at(load.t))
    assert (d.desired, d.reason) == (0, SCALED_TO_ZERO)


def test_rates_use_the_routers_clock_when_the_samples_carry_it() -> None:
    # read 2 s apart by the shell, but the router's counters are 1 s apart
    samples = [LoadSample(at(0), 0, 0.0, clock=10.0), LoadSample(at(2), 10, 6.0, clock=11.0)]
    assert window_load(samples, 60, "inFlight") == pytest.approx(6.0)
    assert window_load(samples, 60, "requestsPerSecond") == pytest.approx(10.0)
    # a router restart: its clock went back, the samples before it are ignored
    restarted = [*samples, LoadSample(at(4), 50, 30.0, clock=1.0)]
    assert window_load(restarted, 60, "inFlight") is None
