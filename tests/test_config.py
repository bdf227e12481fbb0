from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import RunConfig, describe_validation_error


def error_message(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        RunConfig(**fields)
    return describe_validation_error(caught.value)


def test_a_missing_source_is_named(tmp_path: Path) -> None:
    message = error_message(source=str(tmp_path / "nowhere"))
    assert message.startswith("invalid configuration: source:")
    assert "nowhere" in message
    assert "does not exist" in message


def test_invalid_values_name_their_field(tmp_path: Path) -> None:
    message = error_message(source=str(tmp_path), training={"epochs": 0}, selection={"min_distance": -1})
    assert "training.epochs: Input should be greater than or equal to 1" in message
    assert "selection.min_distance" in message


def test_an_empty_source_is_refused_not_read_as_the_current_folder() -> None:
    for empty in ("", "  "):
        assert error_message(source=empty).startswith(
            "invalid configuration: source: Value error, source is empty"
        )


def test_seeds_are_checked_before_any_work(tmp_path: Path) -> None:
    """numpy refuses a negative seed: without this check selection.seed -1 failed only after
    training and embedding, naming no field."""
    message = error_message(source=str(tmp_path), selection={"seed": -1}, training={"seed": -2})
    assert "selection.seed: Input should be greater than or equal to 0" in message
    assert "training.seed: Input should be greater than or equal to 0" in message


def test_a_misspelt_field_is_refused(tmp_path: Path) -> None:
    assert "training.epoch: Extra inputs are not permitted" in error_message(
        source=str(tmp_path), training={"epoch": 3}
    )


def test_n_samples_and_proportion_exclude_each_other(tmp_path: Path) -> None:
    assert "n_samples or proportion, not both" in error_message(
        source=str(tmp_path), n_samples=5, proportion=0.5
    )


def test_how_many_to_select(tmp_path: Path) -> None:
    assert RunConfig(source=str(tmp_path), n_samples=7).target_count(100) == 7
    assert RunConfig(source=str(tmp_path), proportion=0.25).target_count(10) == 3
    assert RunConfig(source=str(tmp_path)).target_count(45) == 5  # the 10% default


def test_default_output_and_cache_follow_the_source_name(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    config = RunConfig(source=str(tmp_path / "cats"))
    assert config.output_uri == str((Path("winnow-output") / "cats").resolve())
    assert config.cache_path == Path(config.output_uri) / "cache"
    # The datapool is named after the output: the same command again is incremental.
    assert config.datapool_name == RunConfig(source=str(tmp_path / "cats")).datapool_name
    assert config.datapool_name.startswith("cats-")


def test_s3_locations_default_to_a_local_output_and_cache() -> None:
    config = RunConfig(source="s3://raw-bucket/cams/front/")
    assert config.source == "s3://raw-bucket/cams/front"
    assert config.output_uri == str((Path("winnow-output") / "front").resolve())
    on_s3 = RunConfig(source="s3://raw-bucket/cams", output="s3://curated/cams")
    assert on_s3.cache_path.is_relative_to(Path("winnow-output/.cache").resolve())
    assert on_s3.datapool_name != config.datapool_name


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"source": "s3://"}, "names no bucket"),
        ({"source": "gs://bucket/x"}, "local folder or s3://bucket/prefix"),
        ({"source": "s3://b/x", "output": "http://host/x"}, "output: "),
        ({"source": "s3://b/x", "datapool": "Not A Slug"}, "datapool: String should match pattern"),
    ],
)
def test_bad_locations_and_names_are_refused(fields: dict[str, str], words: str) -> None:
    assert words in error_message(**fields)


def test_video_options_are_checked_before_any_work(tmp_path: Path) -> None:
    assert "video: Value error, give one of every_n_frames, fps and keyframes_only, not fps and " in (
        error_message(source=str(tmp_path), video={"fps": 2, "keyframes_only": True})
    )
    assert "video.sequence_length: Input should be greater than or equal to 2" in error_message(
        source=str(tmp_path), video={"sequence_length": 1}
    )
    assert "video.frame_format: Input should be 'png' or 'jpeg'" in error_message(
        source=str(tmp_path), video={"frame_format": "gif"}
    )
    strategies = [{"input": {"type": "RANDOM"}, "strategy": {"type": "WEIGHTS"}}]
    assert "sequence_length selects windows by REPRESENTATIVE or DIVERSITY alone" in error_message(
        source=str(tmp_path), video={"sequence_length": 3}, selection={"strategies": strategies}
    )


@pytest.mark.parametrize(
    ("execution", "words"),
    [
        ({"address": "tcp://scheduler:8786"}, "execution.address: needs engine: dask"),
        ({"gpu_resource": "GPU"}, "execution.gpu_resource: needs engine: dask"),
        ({"engine": "ray"}, "execution.engine: Input should be 'local' or 'dask'"),
        ({"engine": "dask", "address": "scheduler"}, "execution.address: Value error, 'scheduler' is not a"),
        (
            {"engine": "dask", "address": "tcp://scheduler:8786", "n_workers": 2},
            "execution.n_workers: sizes the LocalCluster dask starts; not with an address",
        ),
        ({"engine": "dask", "gpu_resource": "GPU"}, "execution.gpu_resource: names a resource of a cluster"),
        (
            {"engine": "dask", "n_workers": 0},
            "execution.n_workers: Input should be greater than or equal to 1",
        ),
    ],
)
def test_execution_options_are_checked_before_any_work(
    tmp_path: Path, execution: dict[str, object], words: str
) -> None:
    assert words in error_message(source=str(tmp_path), execution=execution)


def test_a_dask_scheduler_address_is_accepted(tmp_path: Path) -> None:
    for address in ("tcp://10.0.0.5:8786", "scheduler:8786"):
        config = RunConfig(source=str(tmp_path), execution={"engine": "dask", "address": address})
        assert (config.execution.engine, config.execution.address) == ("dask", address)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n_samples": True}, "n_samples"),
        ({"proportion": False}, "proportion"),
        ({"training": {"epochs": True}}, "training.epochs"),
        ({"selection": {"min_distance": True}}, "selection.min_distance"),
    ],
)
def test_true_or_false_is_not_a_number(tmp_path: Path, fields: dict[str, object], field: str) -> None:
    """pydantic reads true as 1: `n_samples: true` selected one sample without a word."""
    assert f"{field}: Value error, a number is required, not true or false" in error_message(
        source=str(tmp_path), **fields
    )


def test_yes_no_fields_still_take_true_and_false(tmp_path: Path) -> None:
    config = RunConfig(source=str(tmp_path), process_all=True, training={"enabled": False})
    assert config.process_all and not config.training.enabled


@pytest.mark.parametrize("same", ["{source}", "{source}/", "{source}/sub/.."])
def test_the_source_itself_as_output_is_refused(tmp_path: Path, same: str) -> None:
    message = error_message(source=str(tmp_path), output=same.format(source=tmp_path))
    assert message.startswith("invalid configuration: output:")
    assert "is the source itself" in message


def test_an_output_or_cache_inside_the_source_is_left_out_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = RunConfig(source=str(tmp_path), output=str(tmp_path / "curated"))
    assert inside.excluded_from_source == ("curated",)  # its cache, curated/cache, lies inside it
    cache_apart = RunConfig(source=str(tmp_path), output=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    assert cache_apart.excluded_from_source == ("c", "out")
    (tmp_path / "src").mkdir()
    beside = RunConfig(source=str(tmp_path / "src"), output=str(tmp_path / "out"))
    assert beside.excluded_from_source == ()
    # `--source .` with the default output: winnow-output/<name> lands inside the source.
    monkeypatch.chdir(tmp_path)
    assert RunConfig(source=".").excluded_from_source == (f"winnow-output/{tmp_path.name}",)
    on_s3 = RunConfig(source="s3://bucket/raw", output="s3://bucket/raw/curated")
    assert on_s3.excluded_from_source == ("curated",)
    assert RunConfig(source="s3://bucket/raw", output="s3://bucket/rawer").excluded_from_source == ()
