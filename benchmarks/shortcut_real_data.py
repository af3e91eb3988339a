"""The real-data protocol of issue 10 (`conf/brain_mri_public`), timed, and its validation figures.

In a copy of the project (its own data/ and MLflow store), with the public brain MRI sets under
`--data-root` (../shared/data layout):
1. `data_preparation` with the preprocessing off: the shortcut audit before;
2. in the `brain_mri_public` environment, one run per stage: `data_preparation` (the audit after),
   `detection`, `distillation` (teacher and student from scratch), `mae` on the brain slices, and
   `distillation` again with the student from that MAE encoder (the teacher reused, the same
   student budget). Segmentation, the rest of `brain_tumor`, is not part of the protocol.
Each step is timed; then Markdown tables are printed, of validation only (nothing is read on
test): within-Br35H (its tumour vs its no-tumour folder) AUROC, sensitivity and specificity at
the slice threshold chosen on validation, figshare fold-4 sensitivity at that threshold, and the
audit's trivial-feature AUROCs before and after the preprocessing (from the two MLflow runs).
Run: `MEDVIT_PSEUDONYM_KEY=<key> uv run python benchmarks/shortcut_real_data.py [--workdir DIR]`
(`--report-only` reads the runs of an earlier call in the same workdir).
"""

from __future__ import annotations

from pathlib import Path

from kedro_project import (
    Runs,
    benchmark,
    cell,
    kedro_runs,
    latest,
)

ENV = "brain_mri_public"
BEFORE = "ingestion.preprocessing.crop_foreground=false,ingestion.preprocessing.intensity=window"
STEPS = (
    ("data_preparation, preprocessing off", "data_preparation", BEFORE),
    ("data_preparation", "data_preparation", None),
    ("detection", "detection", None),
    ("distillation, student from scratch", "distillation", None),
    ("mae on the brain slices", "mae", None),
    (
        "distillation, student from MAE",
        "distillation",
        "student.init=mae,teacher.training.reuse_finished=true",
    ),
)
# (row label, model, parameters its run must have logged)
ROWS = (
    ("detector", "detector", {}),
    ("teacher", "teacher", {}),
    ("student from scratch", "student", {"student.init": "scratch"}),
    ("student from MAE", "student", {"student.init": "mae"}),
)
AUDIT_GROUPS = ("intensity", "size", "padding", "source", "all")


def report(runs: Runs) -> str:
    """Models from their newest runs (one `brain_tumor` run, or a run per stage); the audit from
    the newest data preparation with the preprocessing off and with it on."""
    lines = [
        "| model | within-Br35H AUROC | within-Br35H sensitivity | within-Br35H specificity "
        "| figshare fold-4 sensitivity | pooled val slice AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for label, model, params in ROWS:
        within = f"slice/{model}/val/within"
        metrics = latest(runs, f"slice/{model}/val/auroc", **params)
        names = [
            f"{within}/br35h/auroc",
            f"{within}/br35h/sensitivity",
            f"{within}/br35h/specificity",
            f"{within}/figshare/sensitivity",
            f"slice/{model}/val/auroc",
        ]
        lines.append(f"| {label} | " + " | ".join(cell(metrics, n) for n in names) + " |")
    key = "ingestion.preprocessing.intensity"
    before = latest(runs, "audit/val/auroc/all", **{key: "window"})
    after = latest(runs, "audit/val/auroc/all", **{key: "percentile"})
    lines += ["", "| audit: val AUROC of | before preprocessing | after |", "|---|---|---|"]
    for group in AUDIT_GROUPS:
        name = f"audit/val/auroc/{group}"
        lines.append(f"| {group} | {cell(before, name)} | {cell(after, name)} |")
    return "\n".join(lines)


def main() -> None:
    benchmark(
        __doc__.splitlines()[0],
        Path("/tmp/medvit_shortcut_benchmark"),
        ENV,
        STEPS,
        lambda project: report(kedro_runs(project)),
    )


if __name__ == "__main__":
    main()
