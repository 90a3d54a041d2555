import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64, on the CPU (so a CUDA result can be compared with a CPU reference)."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def write_choice_task(folder: Path, docs: list[dict]) -> None:
    """A local lm-eval multiple-choice task ``toy_choice`` over ``docs`` ({question, choices, label}) in ``folder``."""
    (folder / "toy.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "toy.yaml").write_text(
        "task: toy_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'toy.jsonl'}\ntest_split: test\noutput_type: multiple_choice\ntarget_delimiter: \"\"\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
