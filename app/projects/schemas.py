from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RESERVED_KEYS = ("g", "s", "z")


class ProjectSettings(BaseModel):
    """Per-project knobs the worker reads; unknown keys are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(
        28, ge=8, le=256, multiple_of=4, description="Images are resized to this square size (a multiple of 4)."
    )
    channels: Literal[1, 3] = Field(1, description="1 = grayscale, 3 = RGB.")
    allow_synthetic: bool = Field(True, description="May the `si` strategy add generated images?")
    show_model_guess: bool = False
    latent_dim: int = Field(32, ge=2, le=512)
    vae_epochs: int = Field(30, ge=1, le=500)
    vae_prior: Literal["gaussian", "exemplar"] = "gaussian"
    vae_beta: float = Field(1.0, gt=0, le=100, description="Weight of the KL (or exemplar prior) term.")
    vae_refresh_fraction: float = Field(
        0.1, ge=0, le=1, description="Retrain the VAE (and the representation) when the pool changed by more."
    )
    representation: Literal["simclr", "none"] = Field(
        "simclr", description="Learn a self-supervised representation of the pool in the background."
    )
    representation_epochs: int | None = Field(
        None, ge=1, le=1000, description="SimCLR epochs; default 150 on a GPU, 50 (at most 8 minutes) on a CPU."
    )
    fine_tune: bool = Field(
        False,
        description=(
            "From 30 labels per class, also fine-tune the representation's encoder with the head on the labels; "
            "it predicts where it wins on held-out labels. Costs two more network fits a round."
        ),
    )
    hotkeys: dict[str, str] = Field(
        default_factory=dict,
        max_length=200,
        description=(
            'Labelling keys per class name, e.g. {"cat": "c"}; classes left out get their own name when it is '
            "one character, else a spare digit or letter. g, s and z are taken (grid, skip, undo)."
        ),
    )

    @field_validator("hotkeys")
    @classmethod
    def _usable_hotkeys(cls, value: dict[str, str]) -> dict[str, str]:
        keys = [k.lower() for k in value.values()]
        for key in keys:
            if len(key) != 1 or not key.isprintable() or key.isspace():
                raise ValueError(f"hotkey {key!r} must be one printable character")
            if key in RESERVED_KEYS:
                raise ValueError(f"hotkey {key!r} is taken by grid, skip or undo ({', '.join(RESERVED_KEYS)})")
        if len(set(keys)) != len(keys):
            raise ValueError("two classes share a hotkey")
        return {name: key.lower() for name, key in value.items()}


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    classes: list[str] = Field(min_length=2, max_length=200)
    settings: ProjectSettings = Field(default_factory=ProjectSettings)

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if any(not c or len(c) > 200 for c in cleaned):
            raise ValueError("class names must be 1-200 characters")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("class names must be distinct")
        return cleaned

    @model_validator(mode="after")
    def _hotkeys_name_classes(self) -> ProjectCreate:
        unknown = sorted(set(self.settings.hotkeys) - set(self.classes))
        if unknown:
            raise ValueError(f"hotkeys name classes the project does not have: {', '.join(unknown)}")
        return self


class ProjectCounts(BaseModel):
    pool: int
    validation: int
    test: int
    synthetic: int
    labelled: int
    rounds: int
    per_class: dict[str, int] = {}


class OpenRound(BaseModel):
    id: int
    index: int


class ProjectRead(BaseModel):
    id: int
    name: str
    classes: list[str]
    settings: ProjectSettings
    created_at: datetime
    counts: ProjectCounts
    open_round: OpenRound | None


class ProjectList(BaseModel):
    data: list[ProjectRead]
    count: int


class MemberAdd(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1)


class MemberRead(BaseModel):
    project_id: int
    user_id: int
    name: str | None = None
    role: str | None = None
    added: bool = True


class MemberList(BaseModel):
    data: list[MemberRead]
    count: int
