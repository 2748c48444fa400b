"""Seed the global price list: a few common CPU and GPU instances at dated, approximate prices.

The rows are frozen here (a migration must not change meaning when code
changes); ``optimizers.cost.SEED_CATALOGUE`` holds the same list, and
tests/webapp/test_costs_catalogue.py checks they agree.
"""

import datetime
from decimal import Decimal

from django.db import migrations

PRICE_DATE = datetime.date(2024, 6, 1)
NOTE = "approximate list price as of June 2024, on-demand, {} — check your provider"
SEED = [
    (
        "AWS c7i.xlarge",
        "0.18",
        "Intel Xeon Platinum 8488C",
        "cpu",
        "4 vCPU (Sapphire Rapids), 8 GiB; " + NOTE.format("us-east-1"),
    ),
    (
        "AWS c7i.2xlarge",
        "0.36",
        "Intel Xeon Platinum 8488C",
        "cpu",
        "8 vCPU (Sapphire Rapids), 16 GiB; " + NOTE.format("us-east-1"),
    ),
    ("AWS g5.xlarge", "1.01", "NVIDIA A10G", "gpu", "1× A10G 24 GB, 4 vCPU, 16 GiB; " + NOTE.format("us-east-1")),
    ("AWS g6.xlarge", "0.80", "NVIDIA L4", "gpu", "1× L4 24 GB, 4 vCPU, 16 GiB; " + NOTE.format("us-east-1")),
    (
        "AWS p5.48xlarge ÷ 8 (one H100)",
        "12.29",
        "NVIDIA H100",
        "gpu",
        "one eighth of p5.48xlarge (8× H100 80 GB, about $98.32/h); AWS has repriced this family since — "
        + NOTE.format("us-east-1"),
    ),
    ("GCP g2-standard-4", "0.71", "NVIDIA L4", "gpu", "1× L4 24 GB, 4 vCPU, 16 GB; " + NOTE.format("us-central1")),
    ("Azure NC4as T4 v3", "0.53", "NVIDIA T4", "gpu", "1× T4 16 GB, 4 vCPU, 28 GiB; " + NOTE.format("East US")),
]


def seed(apps, schema_editor):
    InstanceType = apps.get_model("costs", "InstanceType")
    for name, price, device, kind, notes in SEED:
        InstanceType.objects.get_or_create(
            team=None,
            name=name,
            defaults={
                "hourly_price": Decimal(price),
                "device": device,
                "kind": kind,
                "notes": notes,
                "price_date": PRICE_DATE,
            },
        )


def unseed(apps, schema_editor):
    InstanceType = apps.get_model("costs", "InstanceType")
    InstanceType.objects.filter(team=None, name__in=[row[0] for row in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("costs", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
