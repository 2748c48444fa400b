"""The database refuses to change audit entries, whatever client writes to it.

SQLite: a trigger aborts UPDATE. PostgreSQL: a trigger aborts UPDATE and DELETE
(TRUNCATE, which test databases use to reset, stays possible). SQLite keeps
DELETE possible because Django's ``flush`` (transactional tests) deletes rows.
Note: on SQLite, a later migration that alters this table rebuilds it and drops
the trigger; such a migration must create the trigger again.
"""

from django.db import migrations

SQLITE_CREATE = """
CREATE TRIGGER IF NOT EXISTS reviews_auditentry_no_update BEFORE UPDATE ON reviews_auditentry
BEGIN SELECT RAISE(ABORT, 'reviews_auditentry is append-only: rows cannot be updated'); END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS reviews_auditentry_no_update;"

POSTGRES_CREATE = """
CREATE OR REPLACE FUNCTION reviews_auditentry_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'reviews_auditentry is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS reviews_auditentry_append_only ON reviews_auditentry;
CREATE TRIGGER reviews_auditentry_append_only BEFORE UPDATE OR DELETE ON reviews_auditentry
FOR EACH ROW EXECUTE FUNCTION reviews_auditentry_append_only();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS reviews_auditentry_append_only ON reviews_auditentry;
DROP FUNCTION IF EXISTS reviews_auditentry_append_only();
"""


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute(SQLITE_CREATE)
    elif vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)  # no parameters: "%" is plpgsql's


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)
    elif vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("reviews", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
