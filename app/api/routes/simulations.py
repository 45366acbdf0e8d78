from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status

from app.api.deps import (
    ENGINEER,
    CurrentUser,
    EngineerProject,
    MemberProject,
    SessionDep,
    SettingsDep,
    StorageDep,
    row_access,
)
from app.core.queue import enqueue_simulation
from app.simulations import service
from app.simulations.orm import Simulation
from app.simulations.schemas import SimulationCreate, SimulationList, SimulationRead
from app.storage import StorageError
from models.strategies.params import StrategyParamsError, check_simulated_params
from models.strategies.registry import strategy_names

router = APIRouter(tags=["simulations"])

EngineerSimulation = Annotated[
    Simulation,
    Depends(row_access(Simulation, "simulation_id", "simulation", lambda _, s: s.project_id, ENGINEER)),
]
MEDIA = {
    "results.csv": "text/csv",
    "curve.png": "image/png",
    "curve.svg": "image/svg+xml",
    "summary.json": "application/json",
}


@router.post("/projects/{project_id}/simulations", response_model=SimulationRead, status_code=202)
def create_simulation(
    body: SimulationCreate, project: EngineerProject, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> SimulationRead:
    """Queue an oracle simulation of strategies on this project's labelled pool ("which strategy fits my data?")."""
    unknown = [s for s in body.strategies if s.split("@")[0] not in strategy_names()]
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown strategies: {', '.join(unknown)}")
    if any(s.split("@")[0] == "si" for s in body.strategies):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "si cannot be simulated on a project: synthetic images have no oracle",
        )
    try:
        check_simulated_params(body.strategies, body.params)
    except StrategyParamsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    available = service.labelled_pool_size(session, project_id=project.id)
    needed = body.initial + body.batch * body.rounds
    # A fifth of the labelled pool is held out as the test split, the rest is the simulated pool.
    if available * 0.8 < needed:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the simulation needs {needed} labelled pool images plus a test share; the pool has {available} "
            "with ground truth (upload the pool with a labels CSV)",
        )
    limit = settings.max_active_simulations
    if service.active_count(session, project_id=project.id) >= limit:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this project already has {limit} simulation(s) queued or running; wait for it or cancel it "
            "(POST /simulations/{id}/cancel)",
        )
    simulation = service.create(session, project=project, body=body, user=user)
    session.commit()
    try:
        enqueue_simulation(simulation.id)
    except Exception as exc:
        simulation.status, simulation.error = "failed", f"could not reach the task queue: {exc}"
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the task queue is unavailable") from exc
    return SimulationRead.model_validate(simulation)


@router.get("/projects/{project_id}/simulations", response_model=SimulationList)
def list_simulations(project: MemberProject, session: SessionDep) -> SimulationList:
    """Simulations of this project, oldest first."""
    rows = [SimulationRead.model_validate(s) for s in service.list_for(session, project_id=project.id)]
    return SimulationList(data=rows, count=len(rows))


@router.get("/simulations/{simulation_id}", response_model=SimulationRead)
def read_simulation(simulation: EngineerSimulation) -> SimulationRead:
    """Status, progress and summary (labels to reach 95%/98% of full-pool accuracy, AUC) of a simulation."""
    return SimulationRead.model_validate(simulation)


@router.post("/simulations/{simulation_id}/cancel", response_model=SimulationRead)
def cancel_simulation(simulation: EngineerSimulation, session: SessionDep) -> SimulationRead:
    """Cancel a queued or running simulation (a running one stops after its current round)."""
    if not service.cancel(session, simulation_id=simulation.id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"simulation {simulation.id} already ended ({simulation.status})")
    session.commit()
    session.refresh(simulation)
    return SimulationRead.model_validate(simulation)


@router.get(
    "/simulations/{simulation_id}/{filename}",
    response_class=Response,
    responses={200: {"content": {media: {} for media in MEDIA.values()}, "description": "The file."}},
)
def simulation_file(
    simulation: EngineerSimulation,
    storage: StorageDep,
    filename: Annotated[Literal["results.csv", "curve.png", "curve.svg", "summary.json"], Path()],
) -> Response:
    """Download a result file: results.csv, curve.png, curve.svg or summary.json."""
    key = simulation.files.get(filename)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {filename} yet (status: {simulation.status})")
    try:
        data = storage.get(key)
    except StorageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{filename} is missing from storage") from exc
    headers = {"Content-Disposition": f'attachment; filename="simulation-{simulation.id}-{filename}"'}
    return Response(data, media_type=MEDIA[filename], headers=headers)
