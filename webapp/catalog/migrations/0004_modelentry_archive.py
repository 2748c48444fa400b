"""Uploaded models live in the default storage (``models/<uuid>/model.zip``), named by a storage reference.

The data step stores each upload that still is a local folder (entries from before
this migration) as a deterministic zip through the storage API, records its sha256
and points ``reference`` at it, so workers on other hosts can fetch it. The local
folder is left where it is (remove ``<media>/models/<uuid>/`` folders by hand once
migrated). An entry whose folder is gone keeps its path: jobs on it fail with
"model not found" as they did before. Reversing restores nothing but the fields.
"""

import tempfile
import uuid
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import migrations, models

import webapp.catalog.models


def store_local_uploads(apps, schema_editor):
    from webapp.catalog.storage import storage_reference, zip_model_folder

    ModelEntry = apps.get_model("catalog", "ModelEntry")
    for entry in ModelEntry.objects.filter(source="upload", archive=""):
        folder = Path(entry.reference)
        if not folder.is_absolute() or not (folder / "config.json").is_file():
            continue
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "model.zip"
            digest = zip_model_folder(folder, archive)
            with open(archive, "rb") as handle:
                name = default_storage.save(f"models/{uuid.uuid4().hex}/model.zip", File(handle, name="model.zip"))
        entry.archive = name
        entry.archive_sha256 = digest
        entry.reference = storage_reference(name, digest)
        entry.save(update_fields=["archive", "archive_sha256", "reference"])


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_modelentry_torch_format"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelentry",
            name="archive",
            field=models.FileField(blank=True, max_length=500, upload_to=webapp.catalog.models.model_archive_upload_to),
        ),
        migrations.AddField(
            model_name="modelentry",
            name="archive_sha256",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(store_local_uploads, migrations.RunPython.noop),
    ]
