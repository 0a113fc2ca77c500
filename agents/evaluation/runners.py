"""Running independent tasks: in this process, on a spawn process pool or as Ray tasks, with results in task
order whatever the backend. A task is a picklable object with ``describe()``; ``run`` is a top-level
function of one task (both are pickled to the workers)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from agents.evaluation.common import EvaluationError
from lastmile_env.config import REPO_ROOT


class Task(Protocol):
    """What the runners need of a task: a description for the error when it fails."""

    def describe(self) -> str: ...


T = TypeVar("T", bound=Task)


def execute(
    tasks: Sequence[T],
    run: Callable[[T], dict[str, Any]],
    workers: int,
    progress: bool,
    ray: bool | str = False,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``run`` each task (in-process for one worker, else a spawn pool, or Ray tasks: ``ray`` True or a
    cluster address, see ``connect_ray``); results in task order. ``on_result(i, result)`` is called as each
    task finishes (e.g. to write it at once). A failing task raises a RuntimeError that names it."""
    if not tasks:
        return []
    if ray is not False:
        return _execute_ray(tasks, run, None if ray is True else ray, progress, on_result)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    with tqdm(total=len(tasks), desc="evaluate", unit="task", disable=not progress) as bar:
        if workers == 1:
            for i, task in enumerate(tasks):
                results[i] = _guarded(task, functools.partial(run, task))
                _report(on_result, i, results[i])
                bar.update()
        else:
            # spawn, not fork: the parent may hold threads (tqdm, BLAS) that fork would copy mid-state.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
                futures: dict[Future[dict[str, Any]], int] = {
                    pool.submit(run, task): i for i, task in enumerate(tasks)
                }
                try:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = _guarded(tasks[i], future.result)
                        _report(on_result, i, results[i])
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialized: already, or now on ``address`` (``auto``, ``HOST:PORT``,
    ``ray://HOST:10001``), or with ``ray.init()``'s default (the cluster of ``RAY_ADDRESS`` or one started on
    this machine with ``ray start``, else a new local instance) when None; ``local`` starts a new local
    instance (of ``num_cpus``). Workers get the repository on their ``PYTHONPATH``: a cluster's nodes need
    this checkout at the same path and the same environment.

    Ray missing, or a cluster that cannot be reached, raises EvaluationError (before any work)."""
    try:
        import ray
    except ImportError:
        raise EvaluationError(
            "the Ray backend needs Ray, an optional extra: pip install 'lastmile[ray]'"
        ) from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:  # ray.init would retry an unreachable address for minutes
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        ray.init(address=address, num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}})
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "Ray (ray.init())"
        raise EvaluationError(
            f"cannot connect to {where}: {type(exc).__name__}: {exc}{_token_auth_hint(address)}"
        ) from None
    return ray


def _token_auth_hint(address: str | None) -> str:
    """The likely cause when a cluster refuses a client without a token: ``ray start`` (Ray >= 2.59) turns
    token authentication on, and a client sends its token only with ``RAY_AUTH_MODE=token`` (Ray's docs:
    the token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or the default file of
    ``ray get-auth-token``)."""
    if address in (None, "local") or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return (
        "; RAY_AUTH_MODE is not 'token' here: if the cluster uses token authentication (the default of "
        "`ray start` since Ray 2.59), export RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, "
        "or the file `ray get-auth-token` reads) before running this"
    )


def _execute_ray(
    tasks: Sequence[T],
    run: Callable[[T], dict[str, Any]],
    address: str | None,
    progress: bool,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One Ray task per task (for the scenario runner: per scenario, policy and episode), as many at a time
    as the cluster has CPUs; results in task order, as from the pool."""
    ray = connect_ray(address)
    remote = ray.remote(num_cpus=1)(run)
    refs = [remote.remote(task) for task in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    pending = list(refs)
    with tqdm(total=len(tasks), desc="evaluate (ray)", unit="task", disable=not progress) as bar:
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    results[i] = _guarded(tasks[i], functools.partial(ray.get, ref))
                    _report(on_result, i, results[i])
                    bar.update()
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
    return [r for r in results if r is not None]


def _report(on_result: Callable[[int, dict[str, Any]], None] | None, i: int, result: Any) -> None:
    if on_result is not None:
        on_result(i, result)


def _guarded(task: Task, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a task, naming it in the error if it fails."""
    try:
        return run()
    except Exception as exc:
        raise RuntimeError(f"{task.describe()} failed: {type(exc).__name__}: {exc}") from exc
