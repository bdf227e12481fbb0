import pytest

from tasks.model_runtime.gpu import nvidia_gpu_count
from tasks.model_runtime.telemetry import GpuSampler, StageTelemetry, idle_note, visible_gpu

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


def test_the_sampled_gpu_is_the_one_cuda_visible_devices_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpu() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert visible_gpu() == 3  # NVML counts every GPU, so index 3, not CUDA's 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8e5c1f2a-0b1d-4e7a-9c3f-2d6b5a4e1f00")
    assert visible_gpu() == "GPU-8e5c1f2a-0b1d-4e7a-9c3f-2d6b5a4e1f00"


def test_a_cluster_workers_shards_make_one_stage_and_an_idle_worker_is_named() -> None:
    def shard(samples: int, mean: float, peak: float, memory: int) -> dict[str, object]:
        return {
            "gpu": "NVIDIA H100",
            "samples": samples,
            "utilisation_mean_pct": mean,
            "utilisation_max_pct": peak,
            "memory_max_mib": memory,
            "memory_total_mib": 81559,
        }

    telemetry = StageTelemetry()
    telemetry.add_worker("embed", "node-1/gpu0", [shard(30, 90.0, 99.0, 2100), shard(10, 50.0, 70.0, 2500)])
    telemetry.add_worker("embed", "node-2/gpu0", [shard(20, 30.0, 60.0, 1900)])
    telemetry.add_worker("embed", "node-3/gpu0", [])  # a CPU worker: nothing sampled, no stage
    record = telemetry.record()
    assert record["stages"]["embed on node-1/gpu0"] == shard(40, 80.0, 99.0, 2500)
    assert set(record["stages"]) == {"embed on node-1/gpu0", "embed on node-2/gpu0"}
    assert "embed on node-2/gpu0 (30%)" in record["note"] and "node-1" not in record["note"]
