"""The runner: polls an SQS queue and invokes a Lambda handler in worker
processes, with the semantics of Lambda's SQS event source mapping.

    config = RunnerConfig(queue_url=url, handler="processor.handler.lambda_handler",
                          concurrency=4, batch_size=10, function_timeout=30)
    with Runner(config) as runner:
        stats = runner.run_until_drained(idle_seconds=2)

Threads, one per concurrency slot. Each slot owns one worker process (an
execution environment) and loops: take the next batch, invoke, delete what
the response says, replace the worker if it timed out or died. Gathering a
batch is serialised by one lock, so a slot only receives messages when its
worker is free: at most `concurrency` batches are in flight and no message is
received that no worker could take (what MaximumConcurrency is for). The
calling thread watches the queue for `run_until_drained`, reports progress,
and shuts everything down.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.context import SpawnProcess
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ratebridge_tools.runner.batching import BatchBuilder
from ratebridge_tools.runner.config import RunnerConfig
from ratebridge_tools.runner.context import lambda_environment, new_log_stream_name
from ratebridge_tools.runner.errors import ConfigError, HandlerInitError, QueueError, RunnerError
from ratebridge_tools.runner.records import (
    Record,
    arn_account,
    arn_region,
    lambda_event,
    lambda_record,
)
from ratebridge_tools.runner.response import read_response
from ratebridge_tools.runner.stats import (
    BatchOutcome,
    Outcome,
    Progress,
    RunStats,
    StatsRecorder,
)
from ratebridge_tools.runner.worker import (
    InitFailed,
    Invoke,
    Raised,
    Ready,
    Reply,
    Returned,
    Started,
    WorkerSpec,
    worker_main,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

log = logging.getLogger("ratebridge_tools.runner")

ProgressCallback = Callable[[Progress], None]
BatchCallback = Callable[[BatchOutcome], None]
_InitResult = Literal["ready", "aborted", "died"]

_TICK_S = 0.1  # how often blocked waits look at stop and kill requests
# Queue depth reads (draining, progress). Not more often: on moto each read
# walks every message in the queue, and it slows the fleet's own requests.
_CHECK_INTERVAL_S = 1.0
_MIN_IDLE_CHECKS = 3  # moto's and SQS's counts are approximate: read zero this often in a row
_END_WORKER_S = 2.0  # an idle worker asked to exit gets this long before SIGKILL
_KILL_WAIT_S = 5.0
_JOIN_SLACK_S = 30.0  # past the poll wait, for a receive stuck in HTTP retries
_DELETE_CHUNK = 10  # DeleteMessageBatch takes at most 10 entries
_MAX_DEATHS_IN_INIT = 3  # a worker dying this often in a row while importing is fatal
_QUEUE_GONE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


@dataclass
class _Worker:
    """One worker process and the runner's end of its pipe."""

    index: int
    pid: int
    process: SpawnProcess
    conn: Connection
    spawned_at: float
    started: bool = False  # its Python is up: a death now is the handler's import
    ready: bool = False
    ended: bool = False


def _queue_gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code", "") in _QUEUE_GONE


class Runner:
    """A local SQS event source mapping for one Lambda function.

    `sqs_client` is injected or, by default, made from the standard AWS
    settings (AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, AWS_DEFAULT_REGION,
    credentials); a client made here is closed by `close()`. `progress` is
    called about every `progress_interval` seconds from the thread running
    `run`/`run_until_drained`; `on_batch` after every invocation, from a slot
    thread (it must be thread-safe). An exception from either stops the run
    and is raised by it.

    A Runner runs once. Use it as a context manager, or call `close()`:
    every worker process it started is ended, whatever happened.
    """

    def __init__(
        self,
        config: RunnerConfig,
        *,
        sqs_client: SQSClient | None = None,
        progress: ProgressCallback | None = None,
        progress_interval: float = 1.0,
        on_batch: BatchCallback | None = None,
    ) -> None:
        if progress_interval <= 0:
            raise ConfigError(f"progress_interval must be > 0, got {progress_interval}")
        self.config = config
        self._client: SQSClient | None = sqs_client
        self._own_client = sqs_client is None
        self._progress = progress
        self._progress_interval = progress_interval
        self._on_batch = on_batch
        self._ctx = multiprocessing.get_context("spawn")
        self._stats = StatsRecorder()
        self._lock = threading.Lock()
        self._gather_lock = threading.Lock()
        self._stop_requested = threading.Event()  # stop(): end run() gracefully
        self._stopping = threading.Event()  # slots: take no new batch
        self._kill_now = threading.Event()  # slots: kill the worker, whatever it does
        self._wake = threading.Event()  # the calling thread: something changed
        self._numbers = itertools.count(1)
        self._workers: list[_Worker] = []
        self._threads: list[threading.Thread] = []
        self._carry: list[Record] = []
        self._outstanding = 0  # messages received and not yet done with
        self._busy = 0
        self._ready = 0
        self._receive_failures = 0
        self._fatal: BaseException | None = None
        self._started = self._ran = self._closed = False
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._stop_reason: str | None = None
        self._depth: tuple[int, int, int] | None = None
        self._queue_arn = ""
        self._region = ""
        self._account = ""

    # -- public API ------------------------------------------------------------

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Every worker process this runner started, in order (replacements included)."""
        return self._stats.worker_pids

    def start(self) -> None:
        """Check the queue, start `concurrency` workers and wait for their cold
        starts (handler imports), which do not count against the function timeout.

        Raises QueueError when the queue cannot be read, ConfigError when Lambda
        would refuse the mapping (a FIFO queue; a visibility timeout shorter
        than the function timeout), HandlerInitError when a worker cannot import
        the handler. A worker takes batches as soon as it is ready, so some may
        be in flight when this returns. On any error every worker started so far
        is ended (on KeyboardInterrupt after the shutdown grace, like `run`).
        Calling it again does nothing.
        """
        with self._lock:
            if self._started:
                return
            if self._closed:
                raise RunnerError("this Runner is closed")
            self._started = True
        self._started_at = time.monotonic()
        atexit.register(self._kill_workers)
        try:
            self._open_queue()
            for index in range(self.config.concurrency):
                worker = self._spawn(index)
                thread = threading.Thread(
                    target=self._slot_main,
                    args=(index, worker),
                    name=f"ratebridge-runner-slot-{index}",
                    # Daemon: a caller that dies without close() must not hang the
                    # interpreter; the atexit hook then kills the workers.
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
            while True:
                self._raise_if_failed()
                with self._lock:
                    if self._ready >= self.config.concurrency:
                        break
                self._wake.wait(_TICK_S)
                self._wake.clear()
            log.info(
                "runner started: %d worker(s) ready for %s on %s",
                self.config.concurrency,
                self.config.handler,
                self._queue_arn,
            )
        except KeyboardInterrupt:
            # Ctrl-C while the last workers warm up: the first ones may have
            # batches in flight already; they get the grace period too.
            self._shutdown(self.config.shutdown_grace)
            self.close()
            raise
        except BaseException:
            self.close()
            raise

    def run(self, *, max_seconds: float | None = None) -> RunStats:
        """Poll and invoke until `stop()`, Ctrl-C or `max_seconds`; then stop
        polling, let in-flight batches finish for up to `shutdown_grace`
        seconds, kill the rest and end every worker. Returns the run's stats.

        Raises what `start()` raises; HandlerInitError when a replacement
        worker cannot import the handler; QueueError when the queue disappears;
        whatever the progress or batch callbacks raise; KeyboardInterrupt
        after the graceful shutdown it triggers. Workers are ended in every case.
        """
        return self._run(None, max_seconds)

    def run_until_drained(
        self, *, idle_seconds: float = 2.0, max_seconds: float | None = None
    ) -> RunStats:
        """Like `run`, and also returns once the queue is drained: for
        `idle_seconds` (and at least 3 reads in a row) SQS counted no visible,
        in-flight or delayed message and no batch was in flight or being
        gathered. Messages that failed count as in flight until they come back
        and succeed or move to the DLQ, so this waits for that too. `stop_reason`
        in the stats says "drained", "max_seconds" or "stopped"."""
        if idle_seconds < 0:
            raise ConfigError(f"idle_seconds must be >= 0, got {idle_seconds}")
        return self._run(idle_seconds, max_seconds)

    def stop(self) -> None:
        """Ask a running `run`/`run_until_drained` to stop gracefully; returns
        at once, from any thread."""
        self._stop_requested.set()
        self._wake.set()

    def close(self) -> None:
        """End every worker process this runner started, killing (SIGKILL, by
        pid) any still running, and close the SQS client it made. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._shutdown(0.0)  # threads already ended make this immediate
        finally:
            self._kill_workers()
            atexit.unregister(self._kill_workers)
            if self._own_client and self._client is not None:
                self._client.close()

    def stats(self) -> RunStats:
        """The counters so far (a snapshot; safe to call while running)."""
        if self._started_at is None:
            elapsed = 0.0
        else:
            elapsed = (self._ended_at or time.monotonic()) - self._started_at
        return self._stats.snapshot(elapsed=elapsed, stop_reason=self._stop_reason)

    def snapshot(self) -> Progress:
        """What a progress display shows: stats, queue depth, busy workers."""
        depth = self._depth
        with self._lock:
            busy = self._busy
        stats = self.stats()
        return Progress(
            elapsed=stats.elapsed,
            stats=stats,
            queue_visible=None if depth is None else depth[0],
            queue_not_visible=None if depth is None else depth[1],
            queue_delayed=None if depth is None else depth[2],
            busy_workers=busy,
            workers=self.config.concurrency,
        )

    # -- the calling thread ----------------------------------------------------

    def _run(self, idle_seconds: float | None, max_seconds: float | None) -> RunStats:
        with self._lock:
            if self._ran:
                raise RunnerError("a Runner runs once: make a new one")
            self._ran = True
        try:
            self.start()
            self._stop_reason = self._watch(idle_seconds, max_seconds)
            log.info("runner stopping (%s)", self._stop_reason)
            self._shutdown(self.config.shutdown_grace)
            self._raise_if_failed()
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
            log.info("interrupted: letting in-flight batches finish (Ctrl-C again kills them)")
            self._shutdown(self.config.shutdown_grace)
            raise
        except BaseException:
            self._stop_reason = self._stop_reason or "error"
            raise
        finally:
            self.close()
        return self.stats()

    def _watch(self, idle_seconds: float | None, max_seconds: float | None) -> str:
        began = time.monotonic()
        next_check = began
        next_progress = began + self._progress_interval
        idle_since: float | None = None
        idle_checks = 0
        while True:
            self._raise_if_failed()
            now = time.monotonic()
            if self._stop_requested.is_set():
                return "stopped"
            if max_seconds is not None and now - began >= max_seconds:
                return "max_seconds"
            if now >= next_check and (idle_seconds is not None or self._progress is not None):
                next_check = now + _CHECK_INTERVAL_S
                self._read_depth()
                if idle_seconds is not None:
                    if self._is_idle():
                        idle_checks += 1
                        idle_since = now if idle_since is None else idle_since
                    else:
                        idle_checks, idle_since = 0, None
                    if (
                        idle_since is not None
                        and idle_checks >= _MIN_IDLE_CHECKS
                        and now - idle_since >= idle_seconds
                    ):
                        return "drained"
            if self._progress is not None and now >= next_progress:
                next_progress = now + self._progress_interval
                self._progress(self.snapshot())
            self._wake.wait(_TICK_S)
            self._wake.clear()

    def _is_idle(self) -> bool:
        with self._lock:
            outstanding = self._outstanding
        return self._depth is not None and sum(self._depth) == 0 and outstanding == 0

    def _read_depth(self) -> None:
        attributes: tuple[QueueAttributeNameType, ...] = (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        try:
            values = self._sqs().get_queue_attributes(
                QueueUrl=self.config.queue_url, AttributeNames=list(attributes)
            )["Attributes"]
        except ClientError as exc:
            if _queue_gone(exc):
                raise QueueError(self.config.queue_url, "the queue no longer exists") from exc
            log.warning("GetQueueAttributes failed: %s", exc)
            self._depth = None
            return
        except BotoCoreError as exc:
            log.warning("GetQueueAttributes failed: %s", exc)
            self._depth = None
            return
        visible, not_visible, delayed = (int(values.get(name, "0")) for name in attributes)
        self._depth = (visible, not_visible, delayed)

    def _raise_if_failed(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
        self._stopping.set()
        self._kill_now.set()
        self._wake.set()

    def _shutdown(self, grace: float) -> None:
        """Stop taking batches, give in-flight ones `grace` seconds, kill the rest."""
        self._stopping.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._kill_now.set()
            deadline = time.monotonic() + self.config.poll_wait_seconds + _JOIN_SLACK_S
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            stuck = [t.name for t in self._threads if t.is_alive()]
            if stuck:
                log.error("threads did not finish (killing their workers anyway): %s", stuck)
        self._kill_workers()
        if self._ended_at is None:
            self._ended_at = time.monotonic()

    def _kill_workers(self) -> None:
        """SIGKILL every worker process of this runner still alive, by pid."""
        with self._lock:
            workers = [w for w in self._workers if not w.ended]
        for worker in workers:
            self._end_worker(worker, kill=True)

    # -- the queue -------------------------------------------------------------

    def _sqs(self) -> SQSClient:
        if self._client is None:
            import boto3  # here, not at the top: workers import this package
            from botocore.config import Config

            self._client = boto3.client(
                "sqs",
                config=Config(
                    connect_timeout=5,
                    read_timeout=self.config.poll_wait_seconds + 15,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        return self._client

    def _open_queue(self) -> None:
        url = self.config.queue_url
        try:
            attributes = self._sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"
            ]
        except ClientError as exc:
            if _queue_gone(exc):
                raise QueueError(url, "no such queue") from exc
            raise QueueError(url, f"GetQueueAttributes failed: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueError(url, f"SQS cannot be reached: {exc}") from exc
        self._queue_arn = attributes["QueueArn"]
        self._region = arn_region(self._queue_arn)
        self._account = arn_account(self._queue_arn)
        if attributes.get("FifoQueue") == "true":
            raise ConfigError(
                f"{url} is a FIFO queue: the runner reproduces standard queues only "
                "(no per-message-group ordering)"
            )
        visibility = int(attributes.get("VisibilityTimeout", "30"))
        if self.config.function_timeout > visibility:
            # Lambda refuses this mapping: messages would come back while in flight.
            raise ConfigError(
                f"Queue visibility timeout: {visibility} seconds is less than Function "
                f"timeout: {self.config.function_timeout:g} seconds"
            )
        recommended = 6 * self.config.function_timeout + self.config.batching_window
        if visibility < recommended:
            log.info(
                "queue visibility timeout %ds is under AWS's advice of 6x the function "
                "timeout plus the batching window (%.0fs)",
                visibility,
                recommended,
            )

    def _receive(self, builder: BatchBuilder) -> list[Record]:
        if len(builder) == 0:
            wait = self.config.poll_wait_seconds
        else:  # never long-poll past the window (WaitTimeSeconds is whole seconds)
            wait = min(self.config.poll_wait_seconds, int(builder.window_left()))
        try:
            response = self._sqs().receive_message(
                QueueUrl=self.config.queue_url,
                MaxNumberOfMessages=builder.room(),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except ClientError as exc:
            if _queue_gone(exc):
                raise QueueError(self.config.queue_url, "the queue no longer exists") from exc
            self._receive_failed(exc)
            return []
        except BotoCoreError as exc:
            self._receive_failed(exc)
            return []
        self._receive_failures = 0
        messages = response.get("Messages", [])
        if not messages:
            if wait == 0:  # a short poll came back empty: don't spin
                self._stopping.wait(min(_TICK_S, builder.window_left() or _TICK_S))
            return []
        with self._lock:
            self._outstanding += len(messages)
        self._stats.add(records_received=len(messages))
        return [lambda_record(m, queue_arn=self._queue_arn, region=self._region) for m in messages]

    def _receive_failed(self, exc: Exception) -> None:
        # Lambda keeps polling through errors; back off so a dead endpoint is not hammered.
        self._receive_failures += 1
        self._stats.add(receive_errors=1)
        if self._receive_failures in (1, 10) or self._receive_failures % 100 == 0:
            log.warning("ReceiveMessage failed (%d in a row): %s", self._receive_failures, exc)
        self._stopping.wait(min(5.0, 0.2 * 2 ** min(self._receive_failures, 5)))

    def _next_batch(self) -> list[Record] | None:
        """Gather one batch by Lambda's rules; None when stopping with nothing gathered.

        On stop, a batch already started is closed early and returned: its
        messages are received, so they are invoked like any batch in flight.
        """
        while not self._gather_lock.acquire(timeout=_TICK_S):
            if self._stopping.is_set():
                return None
        try:
            builder = BatchBuilder(
                batch_size=self.config.batch_size, batching_window=self.config.batching_window
            )
            with self._lock:
                carried, self._carry = self._carry, []
            overflow = builder.add(carried)
            while not overflow and not builder.is_due() and not self._stopping.is_set():
                overflow = builder.add(self._receive(builder))
            with self._lock:
                self._carry = overflow + self._carry
            return builder.records or None
        finally:
            self._gather_lock.release()

    def _delete(self, records: Sequence[Record], ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """DeleteMessageBatch the records in `ids`; returns (deleted, failed) message ids."""
        wanted = set(ids)
        entries = [
            (r["messageId"], r["receiptHandle"]) for r in records if r["messageId"] in wanted
        ]
        deleted: list[str] = []
        failed: list[str] = []
        for start in range(0, len(entries), _DELETE_CHUNK):
            chunk = entries[start : start + _DELETE_CHUNK]
            try:
                response = self._sqs().delete_message_batch(
                    QueueUrl=self.config.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": handle}
                        for i, (_, handle) in enumerate(chunk)
                    ],
                )
            except ClientError as exc:
                if _queue_gone(exc):
                    raise QueueError(self.config.queue_url, "the queue no longer exists") from exc
                log.warning("DeleteMessageBatch failed: %s", exc)
                failed.extend(message_id for message_id, _ in chunk)
                continue
            except BotoCoreError as exc:
                log.warning("DeleteMessageBatch failed: %s", exc)
                failed.extend(message_id for message_id, _ in chunk)
                continue
            bad = {int(f["Id"]) for f in response.get("Failed", [])}
            for i, (message_id, _) in enumerate(chunk):
                (failed if i in bad else deleted).append(message_id)
            if bad:
                # Typically a receipt handle gone stale: the message came back
                # (visibility timeout) and was received again. It will be
                # processed again, as on Lambda.
                log.warning("%d message(s) could not be deleted: %s", len(bad), response["Failed"])
        return deleted, failed

    # -- workers -----------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        identity = lambda_environment(
            function_name=self.config.function_name,
            function_version=self.config.function_version,
            memory_mb=self.config.memory_mb,
            log_stream_name=new_log_stream_name(self.config.function_version),
        )
        # Lambda sets the region variables; the function's own environment may
        # override them here (local freedom); the identity variables are reserved.
        region = {"AWS_REGION": self._region, "AWS_DEFAULT_REGION": self._region}
        spec = WorkerSpec(
            handler=self.config.handler,
            environment={**region, **self.config.environment, **identity},
            invoked_function_arn=(
                f"arn:aws:lambda:{self._region}:{self._account}:function:"
                f"{self.config.function_name}"
            ),
            output=self.config.worker_output,
        )
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(child_end, spec),
            name=f"ratebridge-runner-worker-{index}",
        )
        try:
            process.start()
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()  # the child has its own copy
        worker = _Worker(index, process.pid or 0, process, parent_end, time.monotonic())
        with self._lock:
            self._workers.append(worker)
        self._stats.worker_started(worker.pid)
        return worker

    def _await_ready(self, worker: _Worker) -> _InitResult:
        """Wait for the worker's cold start: "ready", "aborted" (told to kill
        everything meanwhile) or "died" (the process ended without a word).
        Raises HandlerInitError when importing the handler raised, or took
        longer than `init_timeout`."""
        handler = self.config.handler
        deadline = worker.spawned_at + self.config.init_timeout
        while not self._kill_now.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandlerInitError(
                    handler,
                    "InitTimeout",
                    f"the handler was not imported within {self.config.init_timeout:g} s",
                )
            ready = wait_for([worker.conn, worker.process.sentinel], timeout=min(left, _TICK_S))
            if not ready:
                continue
            try:
                message = worker.conn.recv() if worker.conn.poll() else None
            except (EOFError, OSError):
                message = None
            if isinstance(message, Started):
                worker.started = True
                continue
            if isinstance(message, Ready):
                worker.ready = True
                self._stats.worker_ready(time.monotonic() - worker.spawned_at)
                with self._lock:
                    self._ready += 1
                self._wake.set()
                return "ready"
            if isinstance(message, InitFailed):
                error = message.error
                raise HandlerInitError(handler, error.error_type, error.message, error.stack)
            if not worker.process.is_alive():
                worker.process.join(_KILL_WAIT_S)
                return "died"
        return "aborted"

    def _end_worker(self, worker: _Worker, *, kill: bool) -> None:
        """End one worker: ask an idle one to exit, SIGKILL it (by pid) otherwise
        or when it does not exit in time."""
        with self._lock:
            if worker.ended:
                return
            worker.ended = True
        process = worker.process
        if not kill and process.is_alive():
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            process.join(_END_WORKER_S)
        if process.is_alive():
            process.kill()
        process.join(_KILL_WAIT_S)
        worker.conn.close()
        if process.exitcode is not None:
            process.close()

    # -- slot threads ------------------------------------------------------------

    def _slot_main(self, index: int, first: _Worker) -> None:
        worker: _Worker | None = first
        try:
            while not self._kill_now.is_set():
                worker = self._warm_worker(index, worker)
                if worker is None or self._stopping.is_set():
                    break
                if not worker.process.is_alive():
                    # Died between invocations: Lambda would just use a new environment.
                    log.warning(
                        "worker pid %d exited with code %s while idle; replacing it",
                        worker.pid,
                        worker.process.exitcode,
                    )
                    self._stats.add(worker_crashes=1)
                    self._end_worker(worker, kill=True)
                    worker = None
                    continue
                records = self._next_batch()
                if records is None:
                    continue
                if self._kill_now.is_set():
                    # Received but never invoked: they come back after the visibility timeout.
                    self._finished(len(records))
                    break
                if not self._invoke(worker, records):
                    self._end_worker(worker, kill=True)
                    worker = None
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            self._fail(exc)
        finally:
            if worker is not None:
                self._end_worker(worker, kill=self._kill_now.is_set())

    def _warm_worker(self, index: int, worker: _Worker | None) -> _Worker | None:
        """The slot's worker once it is ready: `worker`, or a new one when it is
        None. None when stopping or told to kill everything (the worker ended).

        A worker that dies while starting without reporting an import error is
        replaced: a terminal's Ctrl-C reaches the whole process group before a
        new worker can ignore it, and Lambda too retries a failed init on the
        next invocation. Raises HandlerInitError when importing the handler
        raised, took longer than `init_timeout`, or killed the worker 3 times
        in a row."""
        deaths = 0
        while True:
            if worker is None:
                if self._stopping.is_set():
                    return None
                worker = self._spawn(index)
                self._stats.add(worker_restarts=1)
            if worker.ready:
                return worker
            try:
                result = self._await_ready(worker)
            except BaseException:
                self._end_worker(worker, kill=True)
                raise
            if result == "ready":
                return worker
            exitcode, started = worker.process.exitcode, worker.started
            self._end_worker(worker, kill=True)
            worker = None
            if result == "aborted":
                return None
            deaths += 1
            self._stats.add(worker_crashes=1)
            if deaths >= _MAX_DEATHS_IN_INIT:
                if started:
                    detail = f"the worker exited with code {exitcode} while importing it"
                else:
                    detail = (
                        f"the worker process exited with code {exitcode} before it could "
                        "import it. The spawn start method re-imports the main module in "
                        "every worker: guard a script's entry point with "
                        "`if __name__ == '__main__':`"
                    )
                raise HandlerInitError(
                    self.config.handler,
                    "Runtime.ExitError",
                    f"{detail} ({deaths} times in a row)",
                )
            log.warning("worker exited with code %s while starting; replacing it", exitcode)

    def _finished(self, count: int) -> None:
        with self._lock:
            self._outstanding -= count
        self._wake.set()

    def _invoke(self, worker: _Worker, records: list[Record]) -> bool:
        """One invocation, its deletes and its accounting. Returns False when
        the worker is gone (timed out, died, aborted) and must be replaced."""
        number = next(self._numbers)
        message_ids = tuple(r["messageId"] for r in records)
        request_id = str(uuid.uuid4())
        timeout = self.config.function_timeout
        started_epoch = time.time()
        started = time.monotonic()
        invoke = Invoke(
            request_id=request_id,
            event_json=json.dumps(lambda_event(records)),
            deadline_ms=int((started_epoch + timeout) * 1000),
        )
        self._stats.invocation_started(len(records))
        with self._lock:
            self._busy += 1
        reply: Reply | Outcome = Outcome.CRASHED
        try:
            try:
                worker.conn.send(invoke)
                reply = self._await_reply(worker, request_id, started + timeout)
            except OSError:  # the pipe broke: the worker is gone
                reply = Outcome.CRASHED
        finally:
            with self._lock:
                self._busy -= 1
            self._stats.invocation_ended(
                reply.duration if isinstance(reply, Returned | Raised) else None
            )
        duration = time.monotonic() - started
        outcome, to_delete, reported, error = self._judge(worker, number, message_ids, reply)
        deleted, delete_failed = self._delete(records, to_delete) if to_delete else ([], [])
        self._stats.add(
            records_deleted=len(deleted),
            records_reported_failed=len(reported),
            delete_errors=len(delete_failed),
            invalid_responses=int(outcome is Outcome.INVALID_RESPONSE),
            handler_errors=int(outcome is Outcome.HANDLER_ERROR),
            timeouts=int(outcome is Outcome.TIMEOUT),
            worker_crashes=int(outcome is Outcome.CRASHED),
            aborted=int(outcome is Outcome.ABORTED),
        )
        try:
            if self._on_batch is not None:
                self._on_batch(
                    BatchOutcome(
                        number=number,
                        worker_pid=worker.pid,
                        request_id=request_id,
                        message_ids=message_ids,
                        outcome=outcome,
                        deleted=tuple(deleted),
                        reported_failed=reported,
                        delete_failed=tuple(delete_failed),
                        started=started_epoch,
                        duration=duration,
                        error=error,
                    )
                )
        finally:
            self._finished(len(records))
        return isinstance(reply, Returned | Raised)

    def _judge(
        self, worker: _Worker, number: int, message_ids: tuple[str, ...], reply: Reply | Outcome
    ) -> tuple[Outcome, list[str], tuple[str, ...], str | None]:
        """(outcome, ids to delete, ids reported failed, error) of one invocation."""
        if isinstance(reply, Returned):
            verdict = read_response(json.loads(reply.payload_json), message_ids)
            reported = tuple(m for m in message_ids if m in verdict.failed)
            if verdict.invalid is not None:
                log.warning(
                    "batch %d: invalid batch response (%s): the whole batch fails, as on Lambda",
                    number,
                    verdict.invalid,
                )
                return Outcome.INVALID_RESPONSE, [], (), verdict.invalid
            outcome = Outcome.PARTIAL if reported else Outcome.SUCCEEDED
            return outcome, verdict.to_delete(message_ids), reported, None
        if isinstance(reply, Raised):
            error = f"{reply.error.error_type}: {reply.error.message}"
            log.warning("batch %d (%d records) failed: %s", number, len(message_ids), error)
            return Outcome.HANDLER_ERROR, [], (), error
        return reply, [], (), self._worker_lost(worker, number, reply)

    def _await_reply(self, worker: _Worker, request_id: str, deadline: float) -> Reply | Outcome:
        while True:
            if self._kill_now.is_set():
                return Outcome.ABORTED
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome.TIMEOUT
            ready = wait_for([worker.conn, worker.process.sentinel], timeout=min(left, _TICK_S))
            if not ready:
                continue
            try:
                if worker.conn.poll():  # a reply sent just before dying still counts
                    message = worker.conn.recv()
                    if isinstance(message, Returned | Raised) and message.request_id == request_id:
                        return message
                    continue
            except (EOFError, OSError):
                return Outcome.CRASHED
            if worker.process.sentinel in ready:
                return Outcome.CRASHED

    def _worker_lost(self, worker: _Worker, number: int, outcome: Outcome) -> str:
        """Kill (by pid) a worker that timed out or was aborted; describe the loss."""
        if outcome is Outcome.CRASHED:
            worker.process.join(_KILL_WAIT_S)
            error = f"worker pid {worker.pid} exited with code {worker.process.exitcode}"
            log.warning(
                "batch %d: %s mid-batch; its messages return after the visibility timeout",
                number,
                error,
            )
            return error
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(_KILL_WAIT_S)
        if outcome is Outcome.TIMEOUT:
            # Lambda's own log line for it.
            error = f"Task timed out after {self.config.function_timeout:.2f} seconds"
            log.warning("batch %d: %s (worker pid %d killed)", number, error, worker.pid)
            return error
        error = f"killed at shutdown (worker pid {worker.pid})"
        log.warning("batch %d: %s", number, error)
        return error
