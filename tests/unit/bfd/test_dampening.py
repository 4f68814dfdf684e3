"""BFD flap hold-down (bgpd/bfd/dampening.py rules 1-4)."""

from __future__ import annotations

import pytest

from bgpd.bfd.dampening import DampeningSettings, FlapDampening

SETTINGS = DampeningSettings()


def test_one_failure_is_not_a_flap() -> None:
    damp = FlapDampening()
    damp.down(0.0)
    assert damp.usable(0.1)


def test_three_downs_in_quick_succession_suppress_until_the_figure_decays() -> None:
    damp = FlapDampening()
    for t in (0.0, 1.0, 2.0):
        damp.down(t)
    assert not damp.usable(2.5)
    reuse = damp.reuse_at(2.5)
    assert reuse is not None and reuse > 2.5
    assert not damp.usable(reuse - 0.5)
    assert damp.usable(reuse + 0.01)
    assert damp.reuse_at(reuse + 0.02) is None


def test_the_figure_halves_every_half_life() -> None:
    damp = FlapDampening()
    damp.down(0.0)
    assert damp.figure(SETTINGS.half_life) == pytest.approx(SETTINGS.penalty / 2)


def test_a_flap_storm_holds_a_session_at_most_max_suppress_after_its_last_down() -> None:
    damp = FlapDampening()
    for t in range(200):
        damp.down(float(t))
    assert damp.figure(199.0) <= SETTINGS.ceiling
    assert not damp.usable(200.0)
    assert damp.usable(199.0 + SETTINGS.max_suppress)


def test_the_ceiling_bounds_the_hold_to_max_suppress() -> None:
    heavy = DampeningSettings(penalty=2000.0)
    damp = FlapDampening(heavy)
    for _ in range(1000):
        damp.down(0.0)
    assert damp.figure(0.0) == pytest.approx(heavy.ceiling)
    reuse = damp.reuse_at(0.0)
    assert reuse == pytest.approx(heavy.max_suppress)


def test_slow_failures_never_suppress() -> None:
    damp = FlapDampening()
    for t in range(0, 600, 60):
        damp.down(float(t))
        assert damp.usable(t + 0.1)


@pytest.mark.parametrize(
    "changes",
    [
        {"reuse": 3000.0},
        {"penalty": 2500.0},
        {"half_life": 0.0},
        {"reuse": 0.0},
        {"reuse": 100.0, "half_life": 60.0},  # the ceiling (400) never passes suppress
    ],
)
def test_settings_that_cannot_work_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DampeningSettings(**changes)
