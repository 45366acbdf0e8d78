"""Imports every ORM module so that Base.metadata is complete (Alembic, tests)."""

from app.annotations.orm import Annotation
from app.core.db import Base
from app.images.orm import Image, Split
from app.projects.orm import Project, ProjectMember
from app.representations.orm import Representation
from app.rounds.orm import Round, RoundStatus, Suggestion, SuggestionStatus
from app.simulations.orm import Simulation
from app.users.orm import ApiToken, Role, User

__all__ = [
    "Annotation",
    "ApiToken",
    "Base",
    "Image",
    "Project",
    "ProjectMember",
    "Representation",
    "Role",
    "Round",
    "RoundStatus",
    "Simulation",
    "Split",
    "Suggestion",
    "SuggestionStatus",
    "User",
]
