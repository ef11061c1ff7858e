"""Write the JSON Schema files for producers in other languages.

``python -m lineage.schemas.generate [--check] [--dir DIR]`` writes them into ``DIR``
(default: the ``schemas/`` folder of the source checkout); ``--check`` exits 1 when a
committed file differs from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from lineage.schemas.events import AccessEvent, ConsentEvent
from lineage.schemas.outputs import Alert, DeadLetter, Incident, ProvisionRecord, SubjectLineage

__all__ = ["SCHEMA_FILES", "render"]

#: The language-neutral schemas live at the top of the source checkout, not in the package.
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "access-event.schema.json": AccessEvent,
    "consent-event.schema.json": ConsentEvent,
    "alert.schema.json": Alert,
    "incident.schema.json": Incident,
    "dead-letter.schema.json": DeadLetter,
    "provision-record.schema.json": ProvisionRecord,
    "subject-lineage.schema.json": SubjectLineage,
}


def render(model: type[BaseModel], name: str) -> str:
    """The schema text of one model, stable byte for byte."""
    schema = model.model_json_schema(mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://privacy-lineage.invalid/schemas/v1/{name}",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[argv.index("--dir") + 1]) if "--dir" in argv else DEFAULT_DIR
    stale = []
    for name, model in SCHEMA_FILES.items():
        path = folder / name
        text = render(model, name)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"stale JSON Schema files: {', '.join(stale)}; run python -m lineage.schemas.generate"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
