import pytest

from tasks.gpu import nvidia_gpu_count
from tasks.telemetry import GpuSampler, StageTelemetry, idle_note

no_gpu = pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a GPU")


@no_gpu
def test_without_a_gpu_the_sampler_starts_and_stops_and_has_nothing() -> None:
    sampler = GpuSampler(interval_s=0.01)
    sampler.start()
    sampler.stop()
    sampler.stop()  # a second stop is harmless
    assert sampler.summary() is None


@no_gpu
def test_without_a_gpu_the_run_record_says_so() -> None:
    telemetry = StageTelemetry()
    with telemetry.stage("embed"):
        sum(range(1000))
    assert telemetry.record() == {"note": "no GPU: nothing sampled"}


def test_the_stage_that_left_the_gpu_idle_is_named() -> None:
    busy = {"utilisation_mean_pct": 93.0}
    starved = {"utilisation_mean_pct": 21.4}
    note = idle_note({"train": busy, "embed": starved})
    assert note is not None
    assert "embed (21%)" in note and "train" not in note
    assert idle_note({"train": busy}) is None
