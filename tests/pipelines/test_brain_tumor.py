"""Acceptance: the default `brain_tumor` run on the default demo cohort shows that models learned.

This is the README's main command with nothing overridden (81 patients, CPU defaults). The bars
are the issues' acceptance criteria, on the demo's test patients, thresholds chosen on val.
"""

from __future__ import annotations

import time

import pytest


@pytest.mark.slow
def test_default_run_learns_on_the_demo_test_patients(run_kedro, latest_run):
    start = time.perf_counter()
    run_kedro("brain_tumor", tiny=False)
    minutes = (time.perf_counter() - start) / 60
    metrics = latest_run().data.metrics
    print(f"brain_tumor default run: {minutes:.1f} min")
    assert metrics["det/detector/test/mAP50"] >= 0.5
    assert metrics["ptp/detector/test/sensitivity"] >= 0.8
    assert metrics["ptp/student/test/tumor_f1"] >= 0.8
    assert metrics["seg/dbsam/test/oracle_dice"] >= 0.7
    assert metrics["seg/dbsam/test/detector_dice"] >= 0.7
