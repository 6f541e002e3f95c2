"""Atomic writes and deferred Ctrl-C: a file is complete or absent, and a Ctrl-C is never lost.

A Ctrl-C inside ``torch.save`` once turned into ``RuntimeError: unexpected pos`` from its zip
writer (a traceback instead of "interrupted after epoch N"); these pin the fix.
"""

from __future__ import annotations

import io
import os
import signal

import pytest
import torch

from umt.cache.durable import atomic_write, interrupts_deferred


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_inside_the_block_waits_for_its_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            _ctrl_c()
            done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_blocks_raise_once_at_the_outer_end():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            with interrupts_deferred():
                _ctrl_c()
            steps.append("inner ended without raising")
    assert steps == ["inner ended without raising"]


def test_the_previous_handler_gets_the_deferred_signal():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_deferred():
            _ctrl_c()
            assert seen == []
        assert seen == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupts_deferred():
            _ctrl_c()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_atomic_write_completes_a_write_interrupted_half_way(tmp_path):
    target = tmp_path / "last.pt"
    state = {"a": torch.arange(100_000.0), "b": torch.ones(50_000)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()

    def write(handle):
        handle.write(data[: len(data) // 2])
        _ctrl_c()
        handle.write(data[len(data) // 2 :])

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    loaded = torch.load(target)
    assert torch.equal(loaded["a"], state["a"]) and torch.equal(loaded["b"], state["b"])
