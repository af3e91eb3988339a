"""The chest X-ray study on real radiographs (`conf/chest_xray_nih`), timed: MAE-initialised
against randomly initialised ViT with the same fine-tuning budget.

In a copy of the project (its own data/ and MLflow store), with NIH ChestX-ray14 radiographs under
`--data-root` (../shared/data layout): one `kedro run --pipelines=chest_xray --env=chest_xray_nih`
(data preparation, MAE on the train patients, both fine-tunings, the multi-label evaluations and
the comparison). Then a Markdown table of the mean AUROCs (validation and test, patient and image
level, with patient-bootstrap intervals) and how many findings each mean covers; the per-finding
table is the run's own `data/08_reporting/chest_xray_comparison.md`, printed after it.
Run: `MEDVIT_PSEUDONYM_KEY=<key> uv run python benchmarks/chest_real_data.py [--workdir DIR]`.
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

ENV = "chest_xray_nih"
MODELS = ("vit_mae", "vit_scratch")


def report(runs: Runs) -> str:
    metrics = latest(runs, "ptp/vit_mae/test/mean_auroc")
    lines = [
        "| model | split | patient mean AUROC | image mean AUROC | findings evaluable (patient) |",
        "|---|---|---|---|---|",
    ]
    for model in MODELS:
        for split in ("val", "test"):
            covered = metrics.get(f"ptp/{model}/{split}/n_findings_evaluable", float("nan"))
            lines.append(
                f"| {model} | {split} | {cell(metrics, f'ptp/{model}/{split}/mean_auroc')} "
                f"| {cell(metrics, f'slice/{model}/{split}/mean_auroc')} | {covered:.0f} |"
            )
    for level in ("patient", "image"):
        name = f"chest/mae_minus_scratch/test/{level}_mean_auroc"
        lines.append(f"\n`{name}` = {cell(metrics, name)}")
    return "\n".join(lines)


def main() -> None:
    benchmark(
        __doc__.splitlines()[0],
        Path("/tmp/medvit_chest_benchmark"),
        ENV,
        [("chest_xray", "chest_xray", None)],
        lambda project: (
            report(kedro_runs(project))
            + "\n\n"
            + (project / "data/08_reporting/chest_xray_comparison.md").read_text()
        ),
    )


if __name__ == "__main__":
    main()
