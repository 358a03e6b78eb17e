"""Model registry: the "production" alias and where model artifacts live in storage."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from base import events
from ml.models import AliasChange, ModelAlias, ModelVersion

PRODUCTION = ModelAlias.PRODUCTION


class NoProductionModel(LookupError):
    """No model version has been promoted to production yet."""


def promote(model_version_id: int, user=None, alias: str = PRODUCTION) -> ModelAlias:
    """Point ``alias`` at the model version, in one transaction, recording who did it.

    Concurrent promotions serialise on the alias row; there is only ever one row per
    alias name, so exactly one version is production at any moment.
    """
    with transaction.atomic():
        version = ModelVersion.objects.get(pk=model_version_id)
        current = ModelAlias.objects.select_for_update().filter(name=alias).first()
        if current is None:
            current = ModelAlias.objects.create(name=alias, model_version=version, updated_by=user)
            previous_id = None
        else:
            previous_id = current.model_version_id
            current.model_version = version
            current.updated_by = user
            current.save(update_fields=["model_version", "updated_by", "updated_at"])
        AliasChange.objects.create(alias=alias, previous_id=previous_id, model_version=version, user=user)
        events.emit(
            events.MODEL_PROMOTED,
            {
                "alias": alias,
                "model_version": version.pk,
                "model_version_name": str(version),
                "previous_model_version": previous_id,
                "user": events.username(user),
            },
        )
    return current


def production_version(alias: str = PRODUCTION) -> ModelVersion | None:
    found = ModelAlias.objects.select_related("model_version").filter(name=alias).first()
    return found.model_version if found else None


def require_production_version() -> ModelVersion:
    version = production_version()
    if version is None:
        raise NoProductionModel("No model is in production yet: train one and promote it first.")
    return version


# --- Artifacts ---------------------------------------------------------------------


def artifact_storage_path(uid) -> str:
    return f"models/{uid}"


def store_artifact(local_dir: Path, uid) -> tuple[str, list[str]]:
    """Copy the files the engine saved into default_storage; returns (folder, file names)."""
    folder = artifact_storage_path(uid)
    names = []
    for path in sorted(Path(local_dir).iterdir()):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            stored = default_storage.save(f"{folder}/{path.name}", File(handle, name=path.name))
        if stored != f"{folder}/{path.name}":
            raise RuntimeError(f"storage renamed artifact file {path.name} to {stored}; the folder was not empty")
        names.append(path.name)
    return folder, names


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_checksum(local_dir: Path, names: list[str]) -> str:
    """sha256 over (name, sha256 of content) of the artifact files, in name order."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\t{_sha256_file(Path(local_dir) / name)}\n".encode())
    return digest.hexdigest()


def local_artifact_dir(version: ModelVersion) -> Path:
    """A local folder with the version's artifact files, checked against its checksum.

    Filesystem storage is used in place; remote storage is downloaded once into the ML
    cache folder (keyed by checksum, so a stale copy is never reused).
    """
    try:
        local = Path(default_storage.path(version.artifact_path))
    except NotImplementedError:
        local = None
    if local is None or not local.is_dir():
        if local is not None:
            raise FileNotFoundError(f"model version {version.pk}: artifact folder {local} is missing")
        local = Path(settings.GENREWEB_ML_CACHE_DIR) / "artifacts" / version.checksum
        if not local.is_dir():
            partial = local.with_name(local.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for name in version.artifact_files:
                with (
                    default_storage.open(f"{version.artifact_path}/{name}", "rb") as src,
                    (partial / name).open("wb") as dst,
                ):
                    shutil.copyfileobj(src, dst)
            partial.rename(local)
    actual = files_checksum(local, version.artifact_files)
    if actual != version.checksum:
        raise ValueError(
            f"model version {version.pk}: artifact checksum {actual[:12]} does not match the recorded "
            f"{version.checksum[:12]}; the stored files were changed or damaged"
        )
    return local
