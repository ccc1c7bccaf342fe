"""`pilotage train` and `pilotage profile`: what a training pod (or a local run) executes.

Both read one multi-document YAML holding the Dataset (and, for train, the TrainingJob)
exactly as written for `kubectl apply`, print progress to stderr, and print the JSON
summary as the last line of stdout (also written to the termination log). Exit codes:
0 Succeeded/Ready (failed gates included), 1 Failed, 2 usage or manifest errors (a spec
that cannot work with the data included: the summary then says ``"retryable": false``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, NoReturn

from pilotage.api.dataset import Dataset
from pilotage.api.manifests import (
    MAX_BYTES_ENV,
    ManifestError,
    load_documents,
    max_manifest_bytes,
    parse_resource,
    read_limited,
)
from pilotage.api.trainingjob import TrainingJob
from pilotage.storage import join
from pilotage.trainer.summary import encode, failed_profile, failed_train, report

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Arguments or manifests that do not describe a run."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _progress(command: str) -> Any:
    start = time.monotonic()

    def say(message: str) -> None:
        print(
            f"[{command} {time.monotonic() - start:6.2f}s] {message}", file=sys.stderr, flush=True
        )

    return say


def _read_manifests(path: str) -> tuple[list[Dataset], list[TrainingJob]]:
    if path == "-":
        limit = max_manifest_bytes()
        text = sys.stdin.read(limit + 1)
        if len(text.encode("utf-8", "surrogateescape")) > limit:
            raise UsageError(
                f"standard input: more than the limit of {limit} bytes ({MAX_BYTES_ENV})"
            )
    else:
        try:
            text = read_limited(path, max_manifest_bytes()).decode("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path} is not a text file (byte {exc.start} is not UTF-8)") from exc
        except ManifestError:
            raise
        except ValueError as exc:
            raise UsageError(f"{path}: {exc} ({MAX_BYTES_ENV})") from exc
    datasets: list[Dataset] = []
    jobs: list[TrainingJob] = []
    for i, doc in enumerate(load_documents(text, path)):
        if not isinstance(doc, dict) or doc.get("kind") not in ("Dataset", "TrainingJob"):
            continue  # other kinds (ModelDeployment, DriftMonitor) may share the file
        resource = parse_resource(doc, f"{path}#{i}")
        if isinstance(resource, Dataset):
            datasets.append(resource)
        elif isinstance(resource, TrainingJob):
            jobs.append(resource)
    return datasets, jobs


def _pick(items: list[Any], name: str | None, kind: str, path: str, flag: str) -> Any:
    if name is not None:
        for item in items:
            if item.name == name:
                return item
        raise UsageError(f"{path} has no {kind} named {name!r}")
    if not items:
        raise UsageError(f"{path} holds no {kind}")
    if len(items) > 1:
        names = ", ".join(i.name for i in items)
        raise UsageError(f"{path} holds several {kind}s ({names}); choose one with {flag}")
    return items[0]


def _finish(command: str, summary: dict[str, Any], ok_phase: str) -> int:
    report(summary)
    print(encode(summary), flush=True)
    if summary.get("phase") == ok_phase:
        return EXIT_OK
    print(f"pilotage {command}: failed: {summary.get('message', '')}", file=sys.stderr)
    return EXIT_USAGE if summary.get("retryable") is False else EXIT_FAILED


def _usage_failure(command: str, summary: dict[str, Any]) -> int:
    summary["retryable"] = False
    report(summary)
    print(encode(summary), flush=True)
    print(f"pilotage {command}: {summary['message']}", file=sys.stderr)
    return EXIT_USAGE


def _default_output(job: TrainingJob) -> str | None:
    if not job.spec.output.uri:
        return None
    namespace = job.metadata.namespace or "default"
    return join(job.spec.output.uri, namespace, job.name, job.version)


def train(argv: list[str]) -> int:
    parser = _Parser(
        prog="pilotage train",
        description="Train, evaluate and export to ONNX the TrainingJob in MANIFESTS.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="MANIFESTS",
        help="YAML with the Dataset and the TrainingJob ('-' for stdin)",
    )
    parser.add_argument(
        "--output",
        metavar="URI",
        help="model directory URI (file://, pvc://, s3://); default "
        "<spec.output.uri>/<namespace>/<name>/<version>",
    )
    parser.add_argument(
        "--job", metavar="NAME", help="TrainingJob to run when MANIFESTS holds several"
    )
    version: str | None = None
    try:
        args = parser.parse_args(argv)
        datasets, jobs = _read_manifests(args.filename)
        job: TrainingJob = _pick(jobs, args.job, "TrainingJob", args.filename, "--job")
        version = job.version
        dataset: Dataset = _pick(datasets, job.spec.dataset_ref.name, "Dataset", args.filename, "")
        output = args.output or _default_output(job)
        if not output:
            raise UsageError("--output is required (the TrainingJob sets no spec.output.uri)")
    except (UsageError, ManifestError) as exc:
        return _usage_failure("train", failed_train(version, str(exc)))

    from pilotage.trainer.run import train as run_train

    summary = run_train(dataset, job, output, progress=_progress("train"))
    return _finish("train", summary, "Succeeded")


def profile(argv: list[str]) -> int:
    parser = _Parser(
        prog="pilotage profile",
        description="Validate and profile the Dataset in MANIFESTS.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="MANIFESTS",
        help="YAML with the Dataset ('-' for stdin)",
    )
    parser.add_argument(
        "--output",
        metavar="URI",
        help="directory URI where profile.json is written (nothing written when absent)",
    )
    parser.add_argument(
        "--dataset", metavar="NAME", help="Dataset to profile when MANIFESTS holds several"
    )
    try:
        args = parser.parse_args(argv)
        datasets, _ = _read_manifests(args.filename)
        dataset: Dataset = _pick(datasets, args.dataset, "Dataset", args.filename, "--dataset")
    except (UsageError, ManifestError) as exc:
        return _usage_failure("profile", failed_profile(str(exc)))

    from pilotage.trainer.run import profile as run_profile

    summary = run_profile(dataset, args.output, progress=_progress("profile"))
    return _finish("profile", summary, "Ready")
