"""Timeouts presets and validation; Deadline arithmetic on the monotonic clock."""

from __future__ import annotations

import dataclasses
import time

import pytest

from smtpclient.errors import SMTPTimeoutError
from smtpclient.protocol.state import Stage
from smtpclient.timeouts import DATA_DONE_FLOOR, Deadline, Timeouts


def test_submission_preset_is_bounded() -> None:
    t = Timeouts.submission()
    assert t.total is not None and t.total <= 180
    assert all(t.for_stage(stage) <= 60 for stage in Stage)


def test_mta_preset_has_rfc_5321_minimums() -> None:
    t = Timeouts.mta()
    assert (t.greeting, t.mail, t.rcpt) == (300, 300, 300)
    assert (t.data_init, t.data_block, t.data_done) == (120, 180, 600)
    assert t.total is None


def test_data_done_keeps_a_floor() -> None:
    with pytest.raises(ValueError, match="data_done"):
        Timeouts(data_done=1)
    assert Timeouts.uniform(1).data_done == DATA_DONE_FLOOR
    assert Timeouts.uniform(100).data_done == 100


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_non_positive_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        Timeouts(connect=bad)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        Timeouts(connect="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Timeouts.coerce("5")  # type: ignore[arg-type]


def test_coerce_accepts_numbers_and_none() -> None:
    assert Timeouts.coerce(None) == Timeouts.submission()
    assert Timeouts.coerce(7).mail == 7
    custom = dataclasses.replace(Timeouts(), mail=3)
    assert Timeouts.coerce(custom) is custom
    assert Timeouts.coerce(None, Timeouts.mta()) == Timeouts.mta()


def test_every_stage_has_a_field() -> None:
    t = Timeouts.mta()
    for stage in Stage:
        assert t.for_stage(stage) > 0


def test_deadline_expires_and_names_its_stage() -> None:
    # Roomy where a loaded machine could be slow (remaining() raises once
    # expired); the sleep is never shorter than asked, so expiry is certain.
    assert 0 < Deadline(5.0, Stage.RCPT).remaining() <= 5.0
    deadline = Deadline(0.05, Stage.RCPT)
    time.sleep(0.06)
    assert deadline.expired
    with pytest.raises(SMTPTimeoutError) as info:
        deadline.remaining()
    assert info.value.stage is Stage.RCPT


def test_a_cap_shortens_a_deadline_but_never_lengthens_it() -> None:
    total = Deadline(5.0, Stage.MAIL)
    assert Deadline(60, Stage.RCPT, total).remaining() <= 5.0
    assert Deadline(1.0, Stage.RCPT, total).remaining() <= 1.0
