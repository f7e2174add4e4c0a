"""The dialer tests' fixtures (``pytest_plugins = ["tests.campaigns.dialer_fixtures"]``).

``services`` (a real store and embedded bus, no models), ``clock``, ``carrier``, ``schedule``
(the fakes of ``dialer_fakes.py``) and a ``dialer`` over them, owned by ``proc_a``.
"""

from __future__ import annotations

import pytest

from tests.campaigns.dialer_fakes import (
    FakeCarrier,
    FakeClock,
    FakeSchedule,
    close_services,
    make_services,
)
from voicebot.campaigns.dialer import Dialer


@pytest.fixture
async def services(tmp_path):
    services = await make_services(tmp_path / "data")
    yield services
    await close_services(services)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def carrier():
    return FakeCarrier()


@pytest.fixture
def schedule():
    return FakeSchedule()


@pytest.fixture
def dialer(services, carrier, schedule, clock):
    return Dialer(services, carrier, schedule=schedule, clock=clock, owner="proc_a")
