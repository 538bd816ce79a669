"""The `corelab` command line: thin wrappers that call one library function each.

Heavy imports (torch, SimpleITK, dask) happen inside the commands so `corelab --help` is instant.
A `CorelabError` becomes exit code 2 and its one-sentence message on stderr.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from corelab import __version__, bound_onednn_cache
from corelab.errors import CorelabError

app = typer.Typer(
    name="corelab",
    help="Automated follow-up infarct volumetry on head CT for stroke-trial core labs "
    "(three-CNN method of Sales Barros et al. 2020).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: flags read as flags (rich's panels print them as "<bool>"), and the
    # examples in the docstrings keep their line breaks.
    rich_markup_mode=None,
)

# `corelab train --help` shows TrainOptions' defaults without importing torch; a test checks that
# these words match corelab.train.recipe.TrainOptions().
TRAIN_DEFAULTS = {"patches_per_class": "40000", "epochs": "8", "threads": "1", "val_scans": "20",
                  "architecture": "barros2020-patch-cnn"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"corelab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """corelab: segment follow-up infarcts on NCCT and report agreement with manual reads."""


@contextmanager
def _errors_as_exit() -> Iterator[None]:
    """A `CorelabError` inside becomes its one-sentence message on stderr and exit code 2."""
    try:
        yield
    except CorelabError as error:
        typer.secho(f"corelab: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None


@app.command()
def run(
    manifest: Annotated[
        Path, typer.Argument(metavar="MANIFEST", help="Trial manifest (.xlsx or .csv), one row per follow-up scan, "
                                                      "or a folder holding manifest.xlsx or manifest.csv.")
    ],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder.", show_default="corelab-results/ beside the manifest")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local worker processes (dask).")] = 1,
    scheduler: Annotated[
        Optional[str], typer.Option("--scheduler", help="Address of a running dask scheduler, e.g. tcp://host:8786.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    models: Annotated[
        Optional[Path], typer.Option("--models", help="Model folder.", show_default="the shipped models/")
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="CNN arithmetic: float32 (exact), or bfloat16, an approximation about 5x faster on CPUs "
                 "with AMX/AVX512-BF16 that changes volumes slightly (measured in benchmarks/speed.py).",
        ),
    ] = "float32",
    no_seg: Annotated[
        bool,
        typer.Option("--no-seg", help="Do not write masks/<patient_id>.seg.dcm, the DICOM SEG beside the mask of "
                                      "each DICOM input."),
    ] = False,
) -> None:
    """Segment every scan of MANIFEST; write volumes.csv/.xlsx, masks/ (NIfTI, and a DICOM SEG for DICOM
    inputs), qc/, runs/ and run.json.

    Exit status: 0 every row ok; 1 finished with failed rows (the tables are written); 2 unusable
    input or options (bad manifest, missing model folder, bad option value; nothing is processed);
    130 interrupted by Ctrl-C or SIGTERM (every row is written, unfinished ones not_run; the same
    command again resumes, reusing the finished scans).

    Examples:

    \b
        corelab run trial/manifest.xlsx
        corelab run trial/ --workers 2 --out results/
        corelab run manifest.csv --scheduler tcp://cluster:8786 --models my-models/
    """
    try:
        bound_onednn_cache()  # before torch's first convolution here or in a local worker
        from corelab.config import Method
        from corelab.pipeline.batch import run_batch

        with _errors_as_exit():
            summary = run_batch(
                manifest, out_dir=out, workers=workers, scheduler=scheduler, device=device, models_dir=models,
                method=Method(precision=precision), seg=not no_seg,
            )
    except KeyboardInterrupt:  # before the batch caught signals itself: nothing was written
        typer.secho("corelab: interrupted before the batch started; nothing was written.", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=130) from None
    typer.echo(str(summary))
    if summary.interrupted:
        options = {"--models": models, "--workers": workers if workers != 1 else None, "--scheduler": scheduler,
                   "--device": device if device != "cpu" else None,
                   "--precision": precision if precision != "float32" else None}
        words = ["corelab", "run", str(manifest), "--out", str(summary.out_dir)]
        words += [w for name, value in options.items() if value is not None for w in (name, str(value))]
        words += ["--no-seg"] if no_seg else []
        typer.echo(f"To resume: {shlex.join(words)}")
    raise typer.Exit(code=summary.exit_code)


@app.command()
def compare(
    results: Annotated[
        Path, typer.Argument(help="A `corelab run` output folder.")
    ] = Path("corelab-results"),
    reference: Annotated[Path, typer.Option(
        "--reference", help="Folder of manual reads, <patient_id> + .nii.gz, .nrrd, .seg.nrrd, .mha, .seg.dcm "
        "or .dcm (DICOM SEG, RTSTRUCT), or a DICOM folder <patient_id>/.")] = ...,
    against: Annotated[
        Optional[Path],
        typer.Option("--against", help="A second reader's folder: inter-reader agreement of --reference vs this."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="PDF path.", show_default="RESULTS/agreement.pdf")] = None,
    trial: Annotated[Optional[str], typer.Option("--trial", help="Trial name for the title page.")] = None,
    reference_segment: Annotated[
        Optional[list[str]],
        typer.Option("--reference-segment", metavar="NAME", help="Keep only the reads' segments / RTSTRUCT ROIs of this name "
                     "(repeatable; default: all but RTSTRUCT body outlines and outlines of normal anatomy such as \"Brain\")."),
    ] = None,
) -> None:
    """Agreement of RESULTS with manual reads: agreement.pdf, agreement.xlsx, agreement.html and
    QC images with the reference outline in agreement-qc/ (beside the PDF).

    Examples:

    \b
        corelab compare corelab-results --reference manual/
        corelab compare --reference reader-a/ --against reader-b/ --trial "TRIAL-1"
    """
    from corelab.pipeline.qc import reference_qc_png
    from corelab.report.agreement_report import compare as compare_reads

    with _errors_as_exit():
        summary = compare_reads(results, reference, against=against, out_pdf=out, trial_name=trial,
                                draw_qc=reference_qc_png, segments=tuple(reference_segment or ()) or None)
    typer.echo(str(summary))


@app.command()
def train(
    cohort: Annotated[Path, typer.Argument(metavar="COHORT_DIR", help="Cohort folder: manifest + manual/<id> reads (any format compare reads) (+ truth/ labels).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    single: Annotated[bool, typer.Option("--single", help="Also train the single-CNN baseline.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (split, sampling, initialisation).")] = 0,
    paper: Annotated[
        bool, typer.Option("--paper", help="The paper's input and post-processing (the replication baseline): "
                           "absolute HU, no probability smoothing, no calibration offsets in training.")
    ] = False,
    patches_per_class: Annotated[
        Optional[int],
        typer.Option("--patches-per-class", min=100, help="Lesion patches per network (as many background).",
                     show_default=TRAIN_DEFAULTS["patches_per_class"]),
    ] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option("--epochs", min=1, help="Training epochs per network.", show_default=TRAIN_DEFAULTS["epochs"]),
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest on a busy 2-core machine).",
                     show_default=TRAIN_DEFAULTS["threads"]),
    ] = None,
    val_scans: Annotated[
        Optional[int],
        typer.Option("--val-scans", min=1, help="Validation scans per network (cut-offs, early stopping).",
                     show_default=TRAIN_DEFAULTS["val_scans"]),
    ] = None,
    architecture: Annotated[
        Optional[str],
        typer.Option("--architecture", help="Network architecture: barros2020-patch-cnn (the paper's) or "
                     "barros2020-mirror-cnn (plus the scan's mid-sagittal mirror).",
                     show_default=TRAIN_DEFAULTS["architecture"]),
    ] = None,
    contrast_jitter: Annotated[
        Optional[float],
        typer.Option("--contrast-jitter", min=0.0, help="Scale each training patch's contrast about the brain "
                     "reference by a factor within x/(1 + this) (default 0, off)."),
    ] = None,
    noise_jitter_hu: Annotated[
        Optional[float],
        typer.Option("--noise-jitter-hu", min=0.0, help="Add noise of SD up to this many HU to each training patch "
                     "(default 0, off)."),
    ] = None,
    control_tolerance_ml: Annotated[
        Optional[float],
        typer.Option("--control-tolerance-ml", min=0.01, help="Cut-offs: a validation control scores T / (T + mL "
                     "claimed) instead of 1 if nothing is claimed, else 0 (T > 0 mL)."),
    ] = None,
    contralateral_gate_hu: Annotated[
        Optional[float],
        typer.Option("--contralateral-gate-hu", help="Record in the card: in use, drop hypodense claimed parts not "
                     "at least this many HU darker than their mirror across the midline (default: off, as the paper)."),
    ] = None,
    hemorrhage_beside_mm: Annotated[
        Optional[float],
        typer.Option("--hemorrhage-beside-mm", min=0.0, help="Record in the card: in use, keep a connected hemorrhage "
                     "claim only when a hypodense claim lies within this many mm of it (default: off, as the paper)."),
    ] = None,
    opposite_negatives: Annotated[
        bool, typer.Option("--opposite-negatives", help="Mirror architectures: draw a fourth hard-negative stratum "
                           "of background voxels whose mirror across the midline is lesion (default: off).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run (same cohort, options, seed) from its "
                           "checkpoints in OUT/.checkpoints/; same result as an uninterrupted run.")
    ] = False,
    reference_segment: Annotated[
        Optional[list[str]],
        typer.Option("--reference-segment", metavar="NAME", help="Keep only the manual reads' segments / RTSTRUCT ROIs of this "
                     "name (repeatable; default: all but RTSTRUCT body outlines and outlines of normal anatomy such as \"Brain\")."),
    ] = None,
    recalibrate: Annotated[
        bool, typer.Option("--recalibrate", help="Do not train: choose smoothing and cut-offs again for the networks "
                           "already in OUT (and OUT/single) on every scan of COHORT_DIR, none of them trained on; "
                           "rewrites the cards, not the weights.")
    ] = False,
) -> None:
    """Train the four CNNs (severe, intermediate, subtle, hemorrhage) with the paper's recipe.

    Examples:

    \b
        corelab train cohort/ --out my-models/ --single
        corelab train cohort/ --out quick-models/ --patches-per-class 2000 --epochs 2
        corelab train my-site-scans/ --out my-models/ --recalibrate --control-tolerance-ml 2
    """
    bound_onednn_cache()  # before torch's first convolution
    from dataclasses import replace

    from corelab.segment.networks import ARCHITECTURES
    from corelab.train.recipe import TrainOptions, paper_options, train_models

    given = {"patches_per_class": patches_per_class, "epochs": epochs, "threads": threads, "val_scans": val_scans,
             "architecture": architecture, "contrast_jitter": contrast_jitter, "noise_jitter_hu": noise_jitter_hu,
             "control_tolerance_ml": control_tolerance_ml, "contralateral_gate_hu": contralateral_gate_hu,
             "hemorrhage_beside_mm": hemorrhage_beside_mm, "opposite_negatives": True if opposite_negatives else None}
    if recalibrate:
        from corelab.train.recalibrate import recalibrate_models

        training_only = sorted(f"--{name.replace('_', '-')}" for name, value in given.items()
                               if value is not None and name not in ("threads", "control_tolerance_ml"))
        training_only += [flag for flag, on in (("--single", single), ("--paper", paper), ("--seed", seed != 0)) if on]
        if training_only:
            raise typer.BadParameter(f"{', '.join(training_only)} only apply to training; --recalibrate keeps the "
                                     "networks as they are.", param_hint="--recalibrate")
        with _errors_as_exit():
            calibration = recalibrate_models(cohort, out, control_tolerance_ml=control_tolerance_ml,
                                             threads=threads or 1, resume=resume,
                                             segments=tuple(reference_segment or ()) or None)
        typer.echo(str(calibration))
        return
    if architecture is not None and architecture not in ARCHITECTURES:
        raise typer.BadParameter(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}",
                                 param_hint="--architecture")
    base = paper_options() if paper else TrainOptions()
    options = replace(base, **{name: value for name, value in given.items() if value is not None})
    if options.opposite_negatives and "mirror" not in options.inputs:
        raise typer.BadParameter(f"the architecture {options.architecture} does not read the mirror, so it has no "
                                 "voxels opposite the lesion to learn from", param_hint="--opposite-negatives")
    with _errors_as_exit():
        summary = train_models(cohort, out, single=single, seed=seed, options=options, resume=resume,
                               segments=tuple(reference_segment or ()) or None)
    typer.echo(str(summary))


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder for the synthetic trial.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of patients.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same trial.")] = 0,
    thin_slices: Annotated[bool, typer.Option("--thin-slices", help="0.5-1.5 mm slices instead of 5 mm.")] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Also write preview.png (truth outlined).")] = False,
    family: Annotated[
        str,
        typer.Option(
            "--family",
            help="Phantom heads: procedural, atlas (real MNI152 anatomy; needs nilearn's templates) or mixed "
            "(alternating per patient).",
        ),
    ] = "procedural",
    background: Annotated[
        Optional[Path],
        typer.Option(
            "--background", metavar="CT_FILE_OR_DICOM_DIR",
            help="A normal head CT: draw each patient's lesions into this real scan instead of a phantom head.",
        ),
    ] = None,
    physics: Annotated[
        str,
        typer.Option(
            "--physics",
            help="Scanner physics: default, or wide (per site kernel noise SD 2-7 HU, offset +-8 HU, cupping "
            "2-8 HU; posterior-fossa streaks +-10-30 HU; vertex or skull base cut; gantry tilt of 8-25 degrees in "
            "30% of DICOM series).",
        ),
    ] = "default",
) -> None:
    """A synthetic trial: phantom head CTs, manifest.xlsx, manual reads and truth labels.

    Examples:

    \b
        corelab synth demo-trial/ --n 10 --seed 1 --preview
        corelab synth atlas-trial/ --n 100 --seed 7 --family atlas
        corelab synth real-trial/ --n 20 --seed 3 --background normal_head.nii.gz
        corelab synth wide-trial/ --n 20 --seed 5 --physics wide
    """
    from corelab import synth as synthetic

    with _errors_as_exit():
        summary = synthetic.make_trial(
            out, n=n, seed=seed, thin_slices=thin_slices, family=family, background=background, physics=physics
        )
        if preview:
            typer.echo(f"preview: {synthetic.preview(out)}")
    typer.echo(str(summary))
