"""The fields of a run folder's run.json that ``clipterm eval`` reports, type-checked with
pydantic (imported only when a run is evaluated, so that ``clipterm --help`` stays quick)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from clipterm.errors import UserError


class _RecordConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    prompt: str | None = None
    method: str | None = None
    seed: int | None = None
    scale: float | None = None
    n: int | None = None


class _Timings(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    seconds: float | None = None


class RunRecord(BaseModel):
    """The fields of run.json that ``eval`` reports, with their types checked."""

    model_config = ConfigDict(extra="ignore", strict=True)
    status: Literal["running", "complete", "incomplete", "aborted", "failed"] | None = None
    pack: str | None = None
    pack_source: str | None = None
    config: _RecordConfig = _RecordConfig()
    captions: list[str] | None = None
    mean_target_prob: float | None = None
    timings: _Timings = _Timings()
    pid: int | None = None
    host: str | None = None

    @classmethod
    def of(cls, info: dict[str, Any]) -> RunRecord:
        from clipterm.packs.schema import first_error

        try:
            return cls.model_validate(info)
        except ValidationError as exc:
            raise UserError(f"run.json: {first_error(exc)}") from None

    @property
    def prompt(self) -> str:
        prompt = self.config.prompt or (self.captions[0] if self.captions else "")
        if not prompt.strip():
            raise UserError("run.json names no prompt (config.prompt or captions)")
        return prompt
