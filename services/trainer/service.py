"""The trainer service: a command endpoint for training, search, pushes and rollbacks.

Commands (signed, on ``TRAINER_CMD_ENDPOINT``; ``python -m trainer.ctl <command> key=value``):

* ``train {profile?, from_tune?, overrides?, force?, push?}``: starts ``trainer.pipeline`` without
  a search (or from a finished one) as a child process: train -> export -> gate -> push.
* ``tune {profile?, samples?, seed?, pipeline?}``: starts ``trainer.tune`` (search only), or the
  whole ``trainer.pipeline`` with ``pipeline=true`` (what ``make train`` runs).
* ``status``: readiness, the running job and its last output lines, finished jobs, current model.
* ``list_models``: exported (``best_models/``) and pushed models with verdicts and test Sharpe.
* ``push_model {version | path, force?}``: verify (``shared.loaded_model.load_artifact``), copy into
  the model root, publish a signed ``model.updated`` (``trainer.registry``); a model the gate
  rejected needs ``force`` (logged).
* ``rollback``: re-announce the version pushed before the current one (or the baseline).
* ``cancel``: stop the running job.
* ``shadow {version | path}``, ``promote_shadow {force?}``, ``drop_shadow``: a candidate beside
  the live model on every inference replica (``trainer.shadow``).
* ``retrain {window?}``: train on the bar store's latest data now, gate, watch as a shadow, then
  promote or drop (``trainer.retrain``); ``TRAINER_RETRAIN_EVERY`` does the same on a schedule.

Jobs are child processes (one at a time: a training run uses both cores), watched from the asyncio
loop; their JSON log lines are forwarded to this service's stdout.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.bus import heartbeat_loop
from shared.logs import event
from shared.runtime import BusConnection
from trainer import registry
from trainer import shadow as shadow_verbs
from trainer.config import TrainerSettings
from trainer.retrain import RetrainLoop
from trainer.retrain_config import RetrainSettings

log = logging.getLogger("trainer")

PROFILES = ("quick", "full")


class Job:
    def __init__(self, kind: str, argv: list[str]) -> None:
        self.id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        self.kind = kind
        self.argv = argv
        self.started = time.time()
        self.finished: float | None = None
        self.returncode: int | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.result: Any = None
        self.process: asyncio.subprocess.Process | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "argv": self.argv,
            "running": self.finished is None,
            "started": self.started,
            "finished": self.finished,
            "returncode": self.returncode,
            "result": self.result,
            "tail": list(self.tail)[-10:],
        }


class TrainerService:
    def __init__(
        self,
        settings: TrainerSettings,
        bus: BusConnection,
        retrain: RetrainSettings | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.model_dir = Path(settings.model_dir)
        self.output_dir = Path(settings.output_dir)
        self.job: Job | None = None
        self.history: collections.deque[Job] = collections.deque(maxlen=settings.job_history)
        self._watch: asyncio.Task[None] | None = None
        self.pushes = 0
        self.refused_pushes = 0
        self.retrain = RetrainLoop(
            retrain or RetrainSettings(),
            model_dir=self.model_dir,
            output_dir=self.output_dir,
            key=bus.key,
            publish=self._publish,
            train=self._run_pipeline,
        )

    # ------------------------------------------------------------------ wiring
    def register(self, server: Any) -> None:
        for name in ("train", "tune", "status", "list_models", "push_model", "rollback", "cancel"):
            server.register(name, getattr(self, f"cmd_{name}"))
        for name in ("shadow", "promote_shadow", "drop_shadow", "retrain"):
            server.register(name, getattr(self, f"cmd_{name}"))

    async def heartbeats(self) -> None:
        await heartbeat_loop(
            self.bus.publisher,
            "trainer",
            self.bus.settings.heartbeat_interval_s,
            self.heartbeat,
        )

    def heartbeat(self) -> dict[str, Any]:
        """What ``hb.trainer`` carries every second (``status`` has the details)."""
        running = self.job is not None and self.job.finished is None
        return {
            "ready": True,
            "busy": running,
            "job": self.job.id if running and self.job is not None else None,
            "current_model": registry.current_version(self.model_dir),
            "retrain": self.retrain.status(),
        }

    async def retrain_loop(self) -> None:
        """Resume an open retrain from the registry, then follow live and shadow decisions and
        look at the schedule every ``check_interval_s``."""
        self.retrain.resume()
        subscriber = self.bus.subscriber(["signal.", "shadow."])
        ticker = asyncio.create_task(self._retrain_ticks())
        try:
            while True:
                message = await subscriber.recv()
                try:
                    self.retrain.observe(message)
                except Exception:  # one bad decision must not end the evaluation
                    log.exception("retrain_observe_failed")
        finally:
            ticker.cancel()
            subscriber.close()

    async def _retrain_ticks(self) -> None:
        while True:
            busy = self.job is not None and self.job.finished is None
            if not busy:
                try:
                    self.retrain.tick()
                except Exception:
                    log.exception("retrain_schedule_failed")
            await asyncio.sleep(self.retrain.settings.check_interval_s)

    async def _run_pipeline(self, argv: list[str]) -> tuple[int | None, Any]:
        """The retrain's training step: ``trainer.pipeline`` as this service's job."""
        await self._start("retrain", "trainer.pipeline", argv)
        job, watch = self.job, self._watch
        assert job is not None and watch is not None
        await watch
        return job.returncode, job.result

    async def cmd_retrain(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.job is not None and self.job.finished is None:
            raise RuntimeError(f"busy: job {self.job.id} is running (cancel it first)")
        return self.retrain.start("command", str(args.get("window") or ""))

    # ------------------------------------------------------------------ jobs
    def _profile(self, args: dict[str, Any]) -> str:
        profile = str(args.get("profile") or self.settings.profile)
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        return profile

    async def _start(self, kind: str, module: str, argv: list[str]) -> dict[str, Any]:
        if self.job is not None and self.job.finished is None:
            raise RuntimeError(f"busy: job {self.job.id} is running (cancel it first)")
        job = Job(kind, ["-m", module, *argv, "--json", "--output-dir", str(self.output_dir)])
        env = {**os.environ, "TRAINER_JSON_LOGS": "1"}
        job.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *job.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self.job = job
        self._watch = asyncio.create_task(self._follow(job))
        event(log, "job_started", job=job.id, argv=job.argv)
        return job.describe()

    async def _follow(self, job: Job) -> None:
        assert job.process is not None and job.process.stdout is not None
        async for raw in job.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            job.tail.append(line)
            if line.startswith("{"):
                sys.stdout.write(line + "\n")  # already a JSON log line (or the final summary)
                sys.stdout.flush()
        job.returncode = await job.process.wait()
        job.finished = time.time()
        for line in reversed(job.tail):  # the CLIs end with one JSON summary line
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and "event" not in parsed:
                job.result = parsed
                break
        self.history.append(job)
        event(
            log,
            "job_finished",
            logging.INFO if job.returncode == 0 else logging.ERROR,
            job=job.id,
            returncode=job.returncode,
            result=job.result,
        )

    async def cmd_train(self, args: dict[str, Any]) -> dict[str, Any]:
        argv = ["--profile", self._profile(args)]
        if args.get("from_tune"):
            argv += ["--from-tune", str(args["from_tune"])]
        else:
            argv.append("--skip-tune")
        for key, value in dict(args.get("overrides") or {}).items():
            argv += ["--set", f"{key}={json.dumps(value)}"]
        if args.get("force"):
            argv.append("--force")
        if args.get("push") is False:
            argv.append("--no-push")
        return await self._start("train", "trainer.pipeline", argv)

    async def cmd_tune(self, args: dict[str, Any]) -> dict[str, Any]:
        argv = ["--profile", self._profile(args)]
        if args.get("samples") is not None:
            argv += ["--samples", str(int(args["samples"]))]
        if args.get("seed") is not None:
            argv += ["--seed", str(int(args["seed"]))]
        if args.get("pipeline"):
            if args.get("force"):
                argv.append("--force")
            return await self._start("pipeline", "trainer.pipeline", argv)
        return await self._start("tune", "trainer.tune", argv)

    async def cmd_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.job
        if job is None or job.finished is not None or job.process is None:
            return {"cancelled": False, "reason": "no job running"}
        job.process.terminate()
        try:
            await asyncio.wait_for(job.process.wait(), 10)
        except TimeoutError:
            job.process.kill()
        event(log, "job_cancelled", logging.WARNING, job=job.id)
        return {"cancelled": True, "job": job.id}

    # ------------------------------------------------------------------ models
    def _publish(self, message: Any) -> None:
        self.bus.publisher.publish(message)

    def _log(self, name: str, **fields: Any) -> None:
        event(log, name, logging.WARNING, **fields)

    def _export_named(self, args: dict[str, Any], verb: str) -> tuple[str, Path]:
        """(version, folder holding it) for a push or shadow: ``version`` under our
        ``best_models/``, or ``path`` to an export outside our output dir (same host)."""
        version = str(args.get("version") or "")
        source_root = self.output_dir / "best_models"
        path = Path(str(args.get("path") or ""))
        if args.get("path") and path.is_dir():
            source_root, version = path.parent, path.name
        if not version:
            raise ValueError(f"{verb} needs 'version' (a folder under best_models/) or 'path'")
        return version, source_root

    async def cmd_push_model(self, args: dict[str, Any]) -> dict[str, Any]:
        version, source_root = self._export_named(args, "push_model")
        try:
            result = registry.push_model(
                version,
                source_root=source_root,
                model_dir=self.model_dir,
                key=self.bus.key,
                publish=self._publish,
                force=bool(args.get("force", False)),
                log=self._log,
            )
        except registry.PushError as exc:
            self.refused_pushes += 1
            event(log, "push_refused", logging.WARNING, version=version, reason=str(exc))
            raise
        self.pushes += 1
        event(log, "model_pushed", **result)
        return result

    async def cmd_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            result = registry.rollback(
                model_dir=self.model_dir, key=self.bus.key, publish=self._publish
            )
        except registry.PushError as exc:
            event(log, "rollback_refused", logging.WARNING, reason=str(exc))
            raise
        event(log, "model_rolled_back", **result)
        return result

    async def cmd_shadow(self, args: dict[str, Any]) -> dict[str, Any]:
        version, source_root = self._export_named(args, "shadow")
        try:
            result = shadow_verbs.load_shadow(
                version,
                source_root=source_root,
                model_dir=self.model_dir,
                key=self.bus.key,
                publish=self._publish,
            )
        except registry.PushError as exc:
            event(log, "shadow_refused", logging.WARNING, version=version, reason=str(exc))
            raise
        event(log, "shadow_loaded", **result)
        return result

    async def cmd_promote_shadow(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            result = shadow_verbs.promote_shadow(
                model_dir=self.model_dir,
                key=self.bus.key,
                publish=self._publish,
                force=bool(args.get("force", False)),
                log=self._log,
            )
        except registry.PushError as exc:
            event(log, "promote_shadow_refused", logging.WARNING, reason=str(exc))
            raise
        self.pushes += 1
        event(log, "shadow_promoted", **result)
        return result

    async def cmd_drop_shadow(self, args: dict[str, Any]) -> dict[str, Any]:
        result = shadow_verbs.drop_shadow(
            model_dir=self.model_dir, key=self.bus.key, publish=self._publish
        )
        event(log, "shadow_dropped", **result)
        return result

    async def cmd_list_models(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return registry.list_models(self.output_dir / "best_models", self.model_dir)

    async def cmd_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status_detail()

    def status_detail(self) -> dict[str, Any]:
        running = self.job is not None and self.job.finished is None
        return {
            "ready": True,
            "busy": running,
            "job": self.job.describe() if self.job is not None else None,
            "finished_jobs": [j.describe() | {"tail": []} for j in self.history],
            "current_model": registry.current_version(self.model_dir),
            "shadow_model": shadow_verbs.shadow_status(self.model_dir),
            "model_dir": str(self.model_dir),
            "output_dir": str(self.output_dir),
            "pushes": self.pushes,
            "refused_pushes": self.refused_pushes,
            "retrain": self.retrain.status(),
        }

    async def close(self) -> None:
        await self.cmd_cancel({})
