"""``faceledger evaluate`` and ``faceledger calibrate``: error rates measured on your own data.

Both take a DATASET (a folder of identity subfolders, a manifest CSV ``path,identity[,group]`` or an LFW-style
pairs file), embed each image once (cached by file SHA-256 and model), and report.

Exit codes: 0 success; 1 some images could not be read (each named on stderr, the rest evaluated) or a file
could not be written; 2 usage error (bad option, unreadable dataset).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from faceledger.evaluate.cache import EmbeddingCache, default_cache_dir, pipeline_id
from faceledger.evaluate.datasets import Dataset, DatasetError, load_dataset
from faceledger.evaluate.splits import split_indices
from faceledger.interfaces.cli.options import executor_options, json_option, open_executor, registrar
from faceledger.interfaces.cli.render import Output, fail, warn
from faceledger.interfaces.cli.views import Calibrated, Evaluated

__all__ = ["calibrate_command", "evaluate_command", "register"]

SPLIT_HELP = (
    "Use only one half of the identities: 'calibration' (sha256(identity) starts with 0-7) or 'evaluation' "
    "(the others, plus unlabeled images). Thresholds shipped with faceledger are calibrated on the "
    "first half."
)


def _target_fmr_option(help: str) -> Any:
    """``--target-fmr`` (default 1e-3)."""
    return click.option(
        "--target-fmr",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=1e-3,
        show_default=True,
        help=help,
    )


@dataclass(frozen=True)
class DatasetOptions:
    """The options both commands share: which images, which model, the embedding cache, the output."""

    group_column: str | None
    images: Path | None
    split: str
    recognizer: Path | None
    use_cache: bool
    cache_dir: Path | None
    no_cache: bool
    quiet: bool
    as_json: bool
    executor: str
    ray_address: str | None
    workers: int | None

    def load(self, path: Path) -> Dataset:
        """The dataset at ``path`` (the chosen half of it with ``--split``), or a usage error."""
        return _load(path, self.group_column, self.images, self.split)

    def engine_and_cache(self) -> tuple[Any, EmbeddingCache]:
        """The engine to evaluate and the cache of its embeddings."""
        engine = _engine(self.recognizer)
        return engine, _cache(engine, self.cache_dir, self.no_cache, self.use_cache)

    def executor_for(self, engine: Any) -> Any:
        """Where the images are embedded: ``--executor`` with ``--workers`` and ``--ray-address``."""
        return open_executor(self.executor, engine, self.workers, self.ray_address)

    @property
    def out(self) -> Output:
        """Where the report goes (JSON without spaces, as the report files)."""
        return Output(self.as_json, compact=True)


def _dataset_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add the shared options to a command and hand it their values as ``data`` (a :class:`DatasetOptions`)."""

    @functools.wraps(func)
    def command(**params: Any) -> None:
        shared = {name: params.pop(name) for name in DatasetOptions.__dataclass_fields__}
        func(data=DatasetOptions(**shared), **params)

    options = [
        click.option("--group-column", help="Manifest column holding your group labels (default: 'group')."),
        click.option(
            "--images",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Folder of the images named in a pairs file (default: beside the pairs file).",
        ),
        click.option(
            "--split",
            type=click.Choice(["all", "calibration", "evaluation"]),
            default="all",
            show_default=True,
            help=SPLIT_HELP,
        ),
        click.option(
            "--recognizer",
            type=click.Path(dir_okay=False, path_type=Path),
            help="ArcFace-family ONNX recognizer file, or a bundled one by name (sface_2021dec, sface_2021dec_bf16), "
            "to evaluate instead of the default sface_2021dec_int8.",
        ),
        click.option(
            "--cache",
            "use_cache",
            is_flag=True,
            help="Keep the embeddings (no pixels, but face templates in plain form, keyed by the image's SHA-256) "
            "so a second run is fast; off by default: never use it on images of people who may ask for erasure.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where --cache keeps them (default: $FACELEDGER_CACHE or ~/.cache/faceledger/embeddings); "
            "giving a folder turns the cache on.",
        ),
        click.option("--no-cache", is_flag=True, help="Store nothing, even with --cache-dir or $FACELEDGER_CACHE."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        json_option("Print one JSON object on stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return executor_options(command)


def _load(path: Path, group_column: str | None, images: Path | None, split: str) -> Dataset:
    try:
        dataset = load_dataset(path, group_column=group_column, images=images)
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="DATASET") from None
    if split != "all":
        dataset = dataset.subset(split_indices([s.identity for s in dataset.samples], split))
        dataset.name = f"{dataset.name} ({split} half)"
        if not dataset.samples:
            raise click.BadParameter(f"{path}: no images in the {split} half", param_hint="--split")
    return dataset


def _engine(recognizer: Path | None) -> Any:
    from faceledger.engine import Engine
    from faceledger.errors import ModelError

    try:
        return Engine(recognizer=recognizer)
    except ModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--recognizer") from None


def _cache(engine: Any, cache_dir: Path | None, no_cache: bool, use_cache: bool = False) -> EmbeddingCache:
    """The embedding cache, only when asked for (``--cache``, ``--cache-dir`` or ``$FACELEDGER_CACHE``): its
    entries are plaintext templates keyed by image SHA-256, and an erasure in a gallery does not reach them."""
    wanted = use_cache or cache_dir is not None or bool(os.environ.get("FACELEDGER_CACHE"))
    return EmbeddingCache((cache_dir or default_cache_dir()) if wanted and not no_cache else None, pipeline_id(engine))


def _report_unreadable(outcomes: list[Any]) -> int:
    bad = [o for o in outcomes if o.status == "unreadable"]
    for o in bad:
        warn(f"{o.name}: {o.reason}")
    return len(bad)


def _parse_sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give whole numbers separated by commas, e.g. 5,10,20") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: gallery sizes must be at least 1")
    return sizes


@click.command("evaluate")
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.json, report.md and the PNG plots (created if missing).",
)
@click.option("--threshold", type=float, help="Operating threshold (default: the model card's, for --target-fmr).")
@_target_fmr_option("False-match rate the operating threshold is set for.")
@click.option(
    "--max-group-ratio",
    type=click.FloatRange(1, min_open=True),
    default=2.0,
    show_default=True,
    help="Warn when a group's FMR or FNMR exceeds this multiple of the best group's.",
)
@click.option(
    "--target-fpir",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Open-set target: share of searches of people not enrolled that may get a candidate; the report gives "
    "the threshold meeting it at each gallery size.",
)
@click.option(
    "--gallery-sizes",
    callback=_parse_sizes,
    help="Comma-separated open-set gallery sizes (default: 5, 10, 20, 50, ... below the number of identities "
    "that can be enrolled, and that number).",
)
@click.option(
    "--draws",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Random galleries drawn per open-set gallery size (fixed seed), pooled.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@_dataset_options
def evaluate_command(
    dataset: Path,
    out_dir: Path,
    threshold: float | None,
    target_fmr: float,
    max_group_ratio: float,
    target_fpir: float,
    gallery_sizes: tuple[int, ...] | None,
    draws: int,
    no_plots: bool,
    data: DatasetOptions,
) -> None:
    """Measure recognition error rates on DATASET and write a report with plots.

    DATASET is a folder with one subfolder per person, a manifest CSV
    (path,identity[,group][,n_faces_expected]; an empty identity marks a group photo or an image without a
    face) or an LFW-style pairs file. Reports ROC, AUC, EER, TAR at FMR 1e-1 ... 1e-4 (as far as the number of
    impostor pairs supports), rank-1/rank-5, open-set FNIR at FPIR, detection recall, per-group error rates,
    and images that failed.

    Open-set identification is also measured against gallery size: half the identities are never enrolled and
    searched as unknown people; for each gallery size the report gives FPIR and FNIR against threshold (plots
    openset_rates.png and openset_det.png), the FPIR the 1:1 false-match rate predicts, and the threshold that
    meets --target-fpir.
    """
    from faceledger.evaluate.openset import OpenSetOptions
    from faceledger.evaluate.report import write_outputs
    from faceledger.evaluate.runner import evaluate_dataset

    samples = data.load(dataset)
    engine, cache = data.engine_and_cache()
    with data.executor_for(engine) as run:
        evaluation, outcomes = evaluate_dataset(
            samples,
            engine,
            cache,
            executor=run,
            threshold=threshold,
            target_fmr=target_fmr,
            max_group_ratio=max_group_ratio,
            progress=not data.quiet,
            open_set=OpenSetOptions(target_fpir=target_fpir, sizes=gallery_sizes, draws=draws),
        )
    evaluation.report["dataset"]["source"] = str(dataset)
    evaluation.report["dataset"]["split"] = data.split
    try:
        written = write_outputs(evaluation, out_dir, plots=not no_plots)
    except OSError as exc:
        fail(f"{out_dir}: cannot write the report ({exc.strerror or exc})")
    failed = _report_unreadable(outcomes)
    data.out.show(Evaluated(evaluation.report, written))
    if failed:
        raise SystemExit(1)


@click.command("calibrate")
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@_target_fmr_option("False-match rate the threshold must meet.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Set this policy's identification.target_fmr to --target-fmr (the threshold for it is looked up in the "
    "recognizer's model card calibration; write that with --card).",
)
@click.option(
    "--card",
    "card_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the FMR/FNMR curve into this model card's [calibration] table (created if missing).",
)
@click.option(
    "--rule",
    type=click.Choice(["point", "upper"]),
    default="point",
    show_default=True,
    help="'point': lowest threshold whose measured FMR is at most the target; 'upper': lowest "
    "threshold whose "
    "upper confidence bound is at most the target (stricter).",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence of the Clopper-Pearson interval.",
)
@click.option("--name", "dataset_name", help="Dataset name recorded with the calibration (default: its file name).")
@_dataset_options
def calibrate_command(
    dataset: Path,
    target_fmr: float,
    policy_file: Path | None,
    card_file: Path | None,
    rule: str,
    confidence: float,
    dataset_name: str | None,
    data: DatasetOptions,
) -> None:
    """Find the threshold that meets --target-fmr on DATASET, with its confidence interval.

    Prints the threshold, the number of impostor comparisons behind it and a Clopper-Pearson interval for the
    false-match rate. --card writes the measured FMR/FNMR curve into a model card's [calibration] table (the
    thresholds faceledger uses come from there); --policy sets the policy's target_fmr. Other content of both
    files is kept as is.
    """
    from faceledger.evaluate.calibration import calibrate_pairs
    from faceledger.evaluate.runner import dataset_pair_scores, embed_dataset

    samples = data.load(dataset)
    engine, cache = data.engine_and_cache()
    with data.executor_for(engine) as run:
        outcomes = embed_dataset(samples, engine, cache, progress=not data.quiet, executor=run)
    failed = _report_unreadable(outcomes)
    pairs, pair_rule, _ = dataset_pair_scores(samples, outcomes)
    if pairs.impostor.size == 0 or pairs.genuine.size == 0:
        raise click.BadParameter(
            f"{dataset}: calibration needs same-person and different-person pairs; found "
            f"{pairs.genuine.size} "
            f"and {pairs.impostor.size} (label at least two people with two photos each)",
            param_hint="DATASET",
        )
    used = sum(1 for o in outcomes if o.vector is not None)
    split_note = "" if data.split == "all" else f"; {data.split} half of the identities (faceledger.evaluate.splits)"
    method = (
        f"{pair_rule}; largest face of each image; {used} images with a face{split_note}; threshold = lowest "
        f"whose FMR on these impostor pairs is at most the target ({rule} rule); Clopper-Pearson "
        f"{confidence:.0%} intervals"
    )
    result = calibrate_pairs(
        pairs.genuine,
        pairs.impostor,
        target_fmr,
        dataset=dataset_name or samples.name,
        method=method,
        confidence=confidence,
        rule=rule,
    )
    card = engine.recognizer.card
    result.recognizer = getattr(card, "name", None)
    result.recognizer_sha256 = getattr(card, "sha256", None)
    written: list[str] = []
    if card_file is not None:
        written.append(_write_card(card_file, result, target_fmr, card))
    if policy_file is not None:
        written.append(_write_policy(policy_file, target_fmr))
    data.out.show(Calibrated(result, target_fmr, written))
    if failed:
        raise SystemExit(1)


def _write_card(path: Path, result: Any, default_fmr: float, card: Any) -> str:
    from faceledger.errors import ModelError
    from faceledger.evaluate.calibration import card_table
    from faceledger.evaluate.tomlfile import TomlEditError, render_table, replace_table, write_text_atomic
    from faceledger.models.cards import Calibration

    table = card_table(result, default_fmr)
    try:
        Calibration.from_table(table, str(path))
    except ModelError as exc:
        fail(str(exc))
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else _minimal_card(card)
        comment = (
            "Measured by `faceledger calibrate`: FMR and FNMR at each threshold (a match is similarity >= "
            "threshold);\nfmr_ci_high is the upper Clopper-Pearson bound on FMR at the stated confidence."
        )
        new_text = replace_table(text, "calibration", render_table("calibration", table, comment), str(path))
        write_text_atomic(path, new_text)
    except (TomlEditError, OSError) as exc:
        fail(str(exc))
    return str(path)


def _minimal_card(card: Any) -> str:
    from faceledger.evaluate.tomlfile import render_table

    fields = {
        "name": str(getattr(card, "name", "recognizer")),
        "kind": "recognizer",
        "file": Path(str(getattr(card, "path", "model.onnx"))).name,
        "sha256": str(getattr(card, "sha256", "")),
    }
    if getattr(card, "dim", None):
        fields["dim"] = card.dim
    header = render_table("x", fields).split("\n", 1)[1]
    return f"# Model card written by `faceledger calibrate`\n{header}"


def _write_policy(path: Path, target_fmr: float) -> str:
    """Set ``[identification] target_fmr`` in a policy file, validated by the policy schema before writing."""
    from faceledger.evaluate.tomlfile import TomlEditError, set_key, write_text_atomic

    if not path.is_file():
        fail(f"{path}: policy file not found; `faceledger policy example` prints one")
    try:
        text = path.read_text(encoding="utf-8")
        new_text = set_key(text, "identification", "target_fmr", float(target_fmr), str(path))
    except (TomlEditError, OSError, UnicodeDecodeError) as exc:
        fail(str(exc))
    problem = _policy_problem(new_text, str(path))
    if problem:
        fail(f"{path}: not changed, the policy would be invalid: {problem}")
    try:
        write_text_atomic(path, new_text)
    except OSError as exc:
        fail(f"{path}: cannot write ({exc.strerror or exc})")
    warn(
        f"{path}: identification.target_fmr = {target_fmr:g}; apply it with "
        f"`faceledger policy set {path}` (recorded in the audit ledger)"
    )
    return str(path)


def _policy_problem(text: str, where: str) -> str | None:
    """Why the policy schema rejects ``text`` (None when it validates or no schema is available)."""
    try:
        from faceledger.ledger.policy import parse_policy
    except ImportError:
        return None
    try:
        parse_policy(text, where)
    except Exception as exc:  # the policy module's own error, whatever its type
        return str(exc)
    return None


register = registrar(evaluate_command, calibrate_command)
