"""What the user gives selection besides the configuration.

That is the custom metadata file, SCORES files and SIMILARITY query images. All are read and
checked right after discovery, so a wrong column, an unknown id or a query image that does not
decode is a configuration error before any image is decoded or embedded.

A value file is CSV or Parquet with an `id` column (sample ids) or a `key` column (file
keys: a video's key covers its frames); every other column is a value. It is copied
locally as Parquet, and looked up per sample when selection runs.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasks.config import BUILTIN_METADATA_KEYS, ChecksConfig, SelectionConfig
from tasks.fingerprint import digest
from tasks.media.decode import Corrupt, decode_image, resize_square
from tasks.media.metadata import ANALYSIS_SIZE
from tasks.records.keys import sample_key
from tasks.records.selection import SelectionInputs, ValueFile
from tasks.records.shards import Listing
from tasks.storage.atomic import written_atomically
from tasks.storage.factory import open_storage
from tasks.storage.interface import Storage, read_file_or_key

JOIN_COLUMNS = ("id", "key")

# Unknown ids named in an error message; the rest are counted.
SHOWN = 5


def read_named_file(storage: Storage, location: str, field: str) -> bytes:
    """Raises: ValueError naming `field` and the file when there is no such file."""
    try:
        return read_file_or_key(storage, location)
    except FileNotFoundError:
        where = f"absolute path, or key in {storage.uri}"
        raise ValueError(f"{field}: {location!r} not found ({where})") from None


def parse_value_table(data: bytes, location: str, field: str) -> pa.Table:
    """Raises: ValueError naming `field` when the file is not a readable CSV/Parquet table."""
    suffix = PurePosixPath(location).suffix.lower()
    try:
        if suffix == ".csv":
            # ids and keys are text even when they look like numbers ("0001").
            options = pacsv.ConvertOptions(column_types=dict.fromkeys(JOIN_COLUMNS, pa.string()))
            return pacsv.read_csv(io.BytesIO(data), convert_options=options)
        if suffix in (".parquet", ".pq"):
            return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"{field}: {location!r} cannot be read as {suffix[1:]}: {error}") from None
    raise ValueError(f"{field}: {location!r} is neither a .csv nor a .parquet file")


def check_value_table(table: pa.Table, location: str, field: str, known_keys: pa.ChunkedArray) -> str:
    """The join column ('id' or 'key'), after checking it names each listed sample once.

    Raises:
        ValueError: no join column, a sample named twice, or samples the source does not hold.
    """
    join = next((c for c in JOIN_COLUMNS if c in table.column_names), None)
    if join is None:
        raise ValueError(f"{field}: {location!r} has no 'id' or 'key' column (columns: {table.column_names})")
    names = [str(v) for v in table.column(join).cast(pa.string()).to_pylist() if v is not None]
    if len(names) != table.num_rows:
        raise ValueError(f"{field}: {location!r} has rows without a {join}")
    repeated = sorted(name for name, times in Counter(names).items() if times > 1)
    if repeated:
        raise ValueError(f"{field}: {location!r} names samples more than once: {repeated[:SHOWN]}")
    # Looked up in Arrow: a listing of millions of keys never becomes a Python set.
    held = pc.is_in(pa.array([sample_key(n) for n in names], pa.string()), known_keys)
    unknown = sorted({n for n, h in zip(names, held.to_pylist(), strict=True) if not h})
    if unknown:
        more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        raise ValueError(
            f"{field}: {location!r} names {len(unknown)} samples the source does not hold: "
            f"{unknown[:SHOWN]}{more}"
        )
    return join


def is_numeric(column_type: pa.DataType) -> bool:
    """Whether a column of this type holds numbers: integers, floats or booleans."""
    return bool(
        pa.types.is_integer(column_type)
        or pa.types.is_floating(column_type)
        or pa.types.is_boolean(column_type)
    )


def read_value_file(
    storage: Storage, location: str, field: str, known_keys: pa.ChunkedArray, directory: Path
) -> ValueFile:
    """Read, check and copy a value file locally.

    Raises:
        ValueError: naming `field` and the file, when it is missing, unreadable or names
            samples the source does not hold.
    """
    data = read_named_file(storage, location, field)
    table = parse_value_table(data, location, field)
    join = check_value_table(table, location, field, known_keys)
    values = [c for c in table.column_names if c != join]
    table = table.set_column(table.column_names.index(join), join, table.column(join).cast(pa.string()))
    path = directory / f"{digest(location, data)}.parquet"
    with written_atomically(path) as partial:
        pq.write_table(table, partial)
    return ValueFile(
        location=location,
        path=str(path),
        join="id" if join == "id" else "key",
        numeric=tuple(c for c in values if is_numeric(table.schema.field(c).type)),
        categorical=tuple(c for c in values if not is_numeric(table.schema.field(c).type)),
    )


def check_metadata_keys(config: SelectionConfig, metadata: ValueFile | None) -> None:
    """Check every METADATA key is built in, a metadata_from_key group or a metadata_file column.

    It must also be numeric where the strategy needs a number.

    Raises:
        ValueError: naming the strategy's key field and the key.
    """
    known = BUILTIN_METADATA_KEYS | config.key_groups
    for index, rule in enumerate(config.strategies):
        key = rule.input.key
        if key is None or key in known or metadata is None:
            continue  # config validation already refused unknown keys without a file
        field = f"selection.strategies.{index}.input.key"
        if key not in metadata.numeric + metadata.categorical:
            columns = ", ".join(metadata.numeric + metadata.categorical)
            raise ValueError(
                f"{field}: METADATA key {key!r} is not built in and not a column of metadata_file "
                f"{metadata.location!r} (columns: {columns})"
            )
        if rule.strategy.type in ("WEIGHTS", "THRESHOLD") and key not in metadata.numeric:
            raise ValueError(
                f"{field}: {rule.strategy.type} needs a numeric key, and {key!r} in "
                f"{metadata.location!r} is not numeric"
            )


def read_scores(
    config: SelectionConfig, storage: Storage, known_keys: pa.ChunkedArray, directory: Path
) -> dict[int, ValueFile]:
    """The SCORES file of each strategy that has one, checked.

    Raises:
        ValueError: naming the strategy's field when the file or its score column is wrong.
    """
    scores: dict[int, ValueFile] = {}
    for index, rule in enumerate(config.strategies):
        location, column = rule.input.file, rule.input.score
        if location is None or column is None:
            continue
        field = f"selection.strategies.{index}.input"
        scores[index] = read_value_file(storage, location, f"{field}.file", known_keys, directory)
        if column not in scores[index].numeric:
            kind = "not numeric" if column in scores[index].categorical else "not a column"
            raise ValueError(f"{field}.score: {column!r} is {kind} of {location!r}")
    return scores


def read_query_images(
    config: SelectionConfig, storage: Storage, input_size: int, checks: ChecksConfig, directory: Path
) -> dict[int, str]:
    """Decode each SIMILARITY strategy's query images at the model's input size.

    Raises:
        ValueError: naming the field and the file that is missing or does not decode.
    """
    queries: dict[int, str] = {}
    for index, rule in enumerate(config.strategies):
        if not rule.strategy.query_images:
            continue
        field = f"selection.strategies.{index}.strategy.query_images"
        images = []
        for location in rule.strategy.query_images:
            data = read_named_file(storage, location, field)
            # Decoded as inspect decodes samples: a query that copies a sample embeds as it does.
            decoded = decode_image(
                data, checks.max_image_pixels, input_size, ANALYSIS_SIZE, checks.jpeg_decoder
            )
            if isinstance(decoded, Corrupt):
                raise ValueError(f"{field}: {location!r} does not decode: {decoded.reason}")
            images.append(resize_square(decoded.rgb, input_size))
        path = directory / f"query-{index}-{digest(*rule.strategy.query_images, str(input_size))}.npy"
        with written_atomically(path) as partial, partial.open("wb") as handle:
            np.save(handle, np.stack(images))
        queries[index] = str(path)
    return queries


def prepare_selection_inputs(
    config: SelectionConfig,
    source: str,
    aws_credentials: str | None,
    listing: Listing,
    input_size: int,
    checks: ChecksConfig,
    directory: Path,
) -> SelectionInputs:
    """Read and check everything selection will need from the user's files."""
    needs_files = config.metadata_file is not None or any(
        rule.input.file or rule.strategy.query_images for rule in config.strategies
    )
    if not needs_files:
        return SelectionInputs()
    storage = open_storage(source, aws_credentials)
    known_keys = pq.read_table(listing.path, columns=["key"])["key"]
    metadata = None
    if config.metadata_file is not None:
        metadata = read_value_file(
            storage, config.metadata_file, "selection.metadata_file", known_keys, directory
        )
    check_metadata_keys(config, metadata)
    return SelectionInputs(
        metadata=metadata,
        scores=read_scores(config, storage, known_keys, directory),
        query_images=read_query_images(config, storage, input_size, checks, directory),
    )


def values_for(file: ValueFile, column: str, ids: list[str], keys: list[str]) -> np.ndarray:
    """`column` of the value file for each sample, found by its id or its key.

    Samples the file does not name get NaN (numeric) or '' (categorical).
    Shape: ids (N,), keys (N,) -> (N,) float64 or str
    """
    table = pq.read_table(file.path, columns=[file.join, column]).to_pydict()
    by_name = dict(zip(table[file.join], table[column], strict=True))
    names = ids if file.join == "id" else keys
    found = [by_name.get(name) for name in names]
    if column in file.numeric:
        return np.array([np.nan if v is None else float(v) for v in found], dtype=np.float64)
    return np.array(["" if v is None else str(v) for v in found])
