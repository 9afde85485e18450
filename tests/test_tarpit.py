"""The tarpit's memory of held sources: a fixed pause from the last hold, and a bounded size."""

from queues import tarpit as tarpit_module
from queues.tarpit import Tarpit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_held_source_is_held_for_the_pause_from_its_last_hold():
    clock = Clock()
    tarpit = Tarpit(pause_seconds=1.0, clock=clock)
    assert tarpit.until("10.0.0.1") is None
    tarpit.hold("10.0.0.1")
    clock.now += 0.5
    tarpit.hold("10.0.0.1")
    assert tarpit.until("10.0.0.1") == 101.5
    assert tarpit.until("10.0.0.2") is None
    clock.now += 1.0
    assert tarpit.until("10.0.0.1") is None


def test_beyond_the_most_sources_the_oldest_holds_are_forgotten(monkeypatch):
    monkeypatch.setattr(tarpit_module, "MAX_SOURCES", 3)
    clock = Clock()
    tarpit = Tarpit(pause_seconds=10.0, clock=clock)
    for i in range(5):
        tarpit.hold(f"10.0.0.{i}")
        clock.now += 0.1
    assert [tarpit.until(f"10.0.0.{i}") is not None for i in range(5)] == [False, False, True, True, True]
