"""Run alembic from the installed package (no alembic.ini or working directory needed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Blocking: alembic's env runs its own loop."""
    command.upgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise ``alembic.util.CommandError`` if the models differ from the migrated schema."""
    command.check(alembic_config(database_url))


@cache
def head_revision() -> str | None:
    """The newest revision shipped with this code (read from files once per process)."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
