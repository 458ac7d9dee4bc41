"""Teacher → student registry for ``variant=distilled`` and ``draft=distilled``.

Three sources, first match wins: students built here with ``playground distill``
(recorded in ``students.json`` in the data folder), the user's own pairs in
``students.toml`` in the config folder, and the known pairs below (hub ids).

    # students.toml
    [students]
    "HuggingFaceTB/SmolLM2-1.7B-Instruct" = "HuggingFaceTB/SmolLM2-360M-Instruct"
    "/models/my-teacher" = "/models/my-student"
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from playground.core import models, paths

KNOWN: dict[str, str] = {
    "openai-community/gpt2": "distilbert/distilgpt2",
    "HuggingFaceTB/SmolLM2-360M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-3B-Instruct": "Qwen/Qwen2.5-1.5B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Llama-3.2-1B-Instruct",
}


class StudentMissing(models.ModelError):
    """No usable student: the message says which model is missing and how to get it."""


def teacher_key(model: str) -> str:
    """A stable key for a ``model=`` value: folders and files by absolute path."""
    if model == "default" or (model.count("/") == 1 and not Path(model).exists()):
        return model
    return str(Path(model).expanduser().resolve())


def built_path() -> Path:
    return paths.data_dir() / "students.json"


def user_path() -> Path:
    return paths.config_dir() / "students.toml"


def _built() -> dict[str, str]:
    try:
        return dict(json.loads(built_path().read_text()))
    except (OSError, ValueError):
        return {}


def _user() -> dict[str, str]:
    path = user_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise models.ModelError(f"students.toml: cannot read {path}: {exc}") from None
    table = data.get("students", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise models.ModelError(f"students.toml: [students] must map teacher = \"student\" ({path})")
    return {teacher_key(k): v for k, v in table.items()}


def register(teacher: str, student: Path) -> None:
    """Record a built student for ``teacher`` (replacing an earlier one)."""
    table = _built()
    table[teacher_key(teacher)] = str(Path(student).resolve())
    built_path().write_text(json.dumps(table, indent=1))


def registered_student(teacher: str) -> str | None:
    key = teacher_key(teacher)
    for table in (_built(), _user(), KNOWN):
        if key in table:
            return table[key]
    return None


def student_for(teacher: str, key: str = "variant") -> str:
    """The student's ``model=`` value, checked to exist locally; else StudentMissing,
    its message starting with the config ``key`` that asked (variant or draft)."""
    student = registered_student(teacher)
    how_to_build = f"build one with `playground distill --teacher model={teacher}`"
    if student is None:
        raise StudentMissing(
            f"{key}: no distilled student is registered for model={teacher}; {how_to_build} "
            f"or add a pair to {user_path()}"
        )
    try:
        models.resolve(student)
    except models.ModelError:
        where = "folder" if student.startswith(("/", ".", "~")) else "hub model"
        raise StudentMissing(
            f"{key}: the student of model={teacher} is {where} '{student}', which is not "
            f"available locally; download it (`hf download {student}`) or {how_to_build}"
        ) from None
    return student
