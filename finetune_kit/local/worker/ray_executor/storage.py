r"""Moving a job's files between the backend's data folder and the Ray workers.

Inputs travel as *payloads*, plain dicts the job actor and the workers understand:

- ``{"bytes": b"..."}``: a small file (up to ``INLINE_MAX_BYTES``), sent to the job actor, which
  ``ray.put``s it (``{"ref": [ObjectRef]}``): the object store hands it to every worker, on any
  node, and it lives as long as the job actor, not the bridge that sent it;
- ``{"files": {"name": b"..."}}``: a small folder (an adapter to start from, a checkpoint to
  resume from), likewise;
- ``{"uri": "s3://bucket/jobs/…/training.jsonl"}``: a larger file, copied once into the run's
  storage (a shared path or any URI pyarrow opens: ``s3://``, ``gs://``, ``abfs://``…), which each
  worker reads from there.

Outputs come back the other way: Ray Train persists checkpoints (and the final adapter) under
``<storage>/<job id>/<name>``, and the bridge copies each into the data folder (``copy_back``), so
a job's files never depend on which node trained it.

Example:
    >>> storage_join("s3://bucket/runs/", "ftjob-1", "checkpoint-step-3")
    's3://bucket/runs/ftjob-1/checkpoint-step-3'
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.jsonl").write_bytes(b"{}\n")
    >>> stage_file(folder / "train.jsonl", str(folder / "storage"), "in/train.jsonl")
    {'bytes': b'{}\n'}
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "INLINE_MAX_BYTES",
    "copy_back",
    "list_folders",
    "materialize_file",
    "materialize_folder",
    "pack_folder",
    "remove_tree",
    "stage_file",
    "storage_join",
]

INLINE_MAX_BYTES = 64 * 1024 * 1024
"""Files up to this size go through Ray's object store; larger ones through the storage.

Above it, the bytes would sit both in the job actor's memory and in the object store (whose
share of a small node's memory is a few hundred MB), for a file every worker reads once.
"""


def storage_join(storage: str, *parts: str) -> str:
    """A path under the storage: ``/shared/ray`` or a URI such as ``s3://bucket/prefix``."""
    return "/".join([storage.rstrip("/"), *(p.strip("/") for p in parts)])


def _pyarrow_fs() -> Any:
    import pyarrow.fs  # type: ignore[import-untyped]  # pyarrow ships no type information

    return pyarrow.fs


def _filesystem(uri: str) -> tuple[Any, str]:
    filesystem, path = _pyarrow_fs().FileSystem.from_uri(uri)
    return filesystem, str(path)


def stage_file(
    path: Path, storage: str, name: str, *, inline_max: int = INLINE_MAX_BYTES
) -> dict[str, Any]:
    """The payload for one input file: its bytes, or a copy under the storage.

    Args:
        path: The file in the data folder.
        storage: The run storage (a local absolute path or a URI).
        name: Where under the storage a large file goes.
        inline_max: Largest file sent inline.

    Returns:
        ``{"bytes": ...}`` or ``{"uri": ...}``.
    """
    if path.stat().st_size <= inline_max:
        return {"bytes": path.read_bytes()}
    fs = _pyarrow_fs()
    uri = storage_join(storage, name)
    filesystem, target = _filesystem(uri)
    filesystem.create_dir(target.rpartition("/")[0], recursive=True)
    fs.copy_files(
        str(path.resolve()),
        target,
        source_filesystem=fs.LocalFileSystem(),
        destination_filesystem=filesystem,
    )
    return {"uri": uri}


def pack_folder(folder: Path) -> dict[str, Any]:
    """The payload for a small folder (an adapter, a checkpoint): every file's bytes."""
    return {
        "files": {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
    }


def _object(payload: Mapping[str, Any]) -> Any:
    if "ref" in payload:
        import ray

        # The reference travels in a list: a bare one would be resolved by Ray on the way.
        return ray.get(payload["ref"][0])
    return payload.get("bytes", payload.get("files"))


def materialize_file(payload: Mapping[str, Any], destination: Path) -> Path:
    """Write an input file where a worker trains from (fetching it from the store or storage)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if "uri" in payload:
        fs = _pyarrow_fs()
        filesystem, source = _filesystem(str(payload["uri"]))
        fs.copy_files(
            source,
            str(destination),
            source_filesystem=filesystem,
            destination_filesystem=fs.LocalFileSystem(),
        )
    else:
        destination.write_bytes(_object(payload))
    return destination


def materialize_folder(payload: Mapping[str, Any], destination: Path) -> Path:
    """Write a packed folder back out (see ``pack_folder``)."""
    files: Mapping[str, bytes] = _object(payload)
    for name, data in files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return destination


def copy_back(uri: str, destination: Path) -> Path:
    """Copy a folder from the storage into the data folder, replacing what was there.

    The copy lands in a hidden sibling first and is renamed into place, so a reader never sees
    half a checkpoint.

    Raises:
        FileNotFoundError: The storage has no such folder.
    """
    fs = _pyarrow_fs()
    filesystem, source = _filesystem(uri)
    if filesystem.get_file_info(source).type != fs.FileType.Directory:
        raise FileNotFoundError(f"{uri} is not a folder in the Ray run storage")
    staging = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)  # copy_files makes the files, not the folder they go in
    fs.copy_files(
        source,
        str(staging),
        source_filesystem=filesystem,
        destination_filesystem=fs.LocalFileSystem(),
    )
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    return destination


def remove_tree(uri: str) -> None:
    """Delete a folder from the storage; a folder already gone is fine."""
    fs = _pyarrow_fs()
    filesystem, path = _filesystem(uri)
    if filesystem.get_file_info(path).type == fs.FileType.Directory:
        filesystem.delete_dir(path)


def list_folders(storage: str) -> list[str]:
    """The names of the folders at the top of the storage (none if it does not exist yet)."""
    fs = _pyarrow_fs()
    filesystem, path = _filesystem(storage)
    selector = fs.FileSelector(path, allow_not_found=True, recursive=False)
    return sorted(
        info.base_name
        for info in filesystem.get_file_info(selector)
        if info.type == fs.FileType.Directory
    )
