from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.images.orm import Image, Split
from app.projects.orm import Project
from app.simulations.orm import Simulation
from app.simulations.schemas import SimulationCreate
from app.users.orm import User

ACTIVE = ("queued", "running")


def labelled_pool_size(session: Session, *, project_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                Image.project_id == project_id,
                Image.split == Split.pool,
                Image.synthetic.is_(False),
                Image.ground_truth.is_not(None),
            )
        )
        or 0
    )


def create(session: Session, *, project: Project, body: SimulationCreate, user: User) -> Simulation:
    simulation = Simulation(project_id=project.id, params=body.model_dump(), created_by_id=user.id)
    session.add(simulation)
    session.flush()
    return simulation


def list_for(session: Session, *, project_id: int) -> list[Simulation]:
    return list(session.scalars(select(Simulation).where(Simulation.project_id == project_id).order_by(Simulation.id)))
