"""lm-evaluation-harness on decaylab models.

A decaylab model folder (every checkpoint, ``decaylab export``, ``save_pretrained``) is a Hugging Face
model folder, so lm-eval's own HF model scores it::

    lm_eval --model hf --model_args pretrained=DIR,trust_remote_code=True --tasks ...

Importing this module also registers the model name ``"decaylab"`` (after lm-eval's built-in names,
which it leaves in place), for a run directory or a folder without a tokenizer::

    import lm_eval, decaylab.evaluate.lm_eval_adapter
    lm_eval.simple_evaluate(model="decaylab", model_args={"pretrained": "runs/x"}, tasks=[...])

:class:`DecaylabLM` is lm-eval's ``HFLM`` on a model and tokenizer that decaylab loads: scoring,
rolling windows and ``generate_until`` are lm-eval's, so the numbers are those of ``--model hf``
(for a context c and continuation y: Σ_i log softmax(logits(c y_{<i}))[y_i], an empty context
replaced by the end-of-text token). It needs the optional dependency ``pip install 'decaylab[eval]'``.
"""

from __future__ import annotations

try:
    import lm_eval.models  # noqa: F401  (registers lm-eval's own model names before ours)
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError("the lm-eval adapter needs lm-evaluation-harness and accelerate: "
                      "pip install 'decaylab[eval]'") from err

from transformers import PreTrainedModel

from decaylab.data.tokenizer import load_tokenizer
from decaylab.device import pick_device
from decaylab.evaluate.loading import load_model, load_model_tokenizer
from decaylab.model.folder import folder_tokenizer


@register_model("decaylab")
class DecaylabLM(HFLM):
    """lm-eval's ``HFLM`` on a decaylab (or softmax-reference) model.

    Args: ``pretrained`` a model folder, checkpoint or run directory, or a model already loaded (then
    scored where it is, and ``tokenizer`` is needed); ``tokenizer`` a tokenizer.json, a
    prepared dataset directory or a HF tokenizer name (default: found next to the model, see
    :func:`load_model_tokenizer`); ``device`` (default: CUDA when available); ``batch_size``, ``max_length``,
    ``max_gen_toks`` and any other keyword as for ``HFLM``.
    """

    def __init__(self, pretrained: str | PreTrainedModel, tokenizer: str | None = None, device: str | None = None,
                 batch_size: int | str = 8, max_length: int = 2048, **kwargs):
        if isinstance(pretrained, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("DecaylabLM on a loaded model needs tokenizer= (a tokenizer.json, a dataset "
                                 "directory or a name)")
            model, device = pretrained, str(pretrained.device)
            tok = folder_tokenizer(load_tokenizer(tokenizer))
        else:
            device = str(pick_device(device or "auto"))
            model = load_model(pretrained, device)
            tok = folder_tokenizer(load_model_tokenizer(pretrained, tokenizer))
        super().__init__(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length,
                         device=device, **kwargs)
