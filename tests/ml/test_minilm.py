"""The plain-PyTorch MiniLM (ml.engine.minilm) is sentence-transformers' all-MiniLM-L6-v2:
same tokens, same vectors, same state-dict names; and a frozen-feature pass over texts and
posters imports none of the heavy packages it replaced (the cold worker's memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "A retired hitman is pulled back in for one last job.",
    "",
    "   padded with spaces   ",
    "Ünïcode, accents: café — and CAPITALS!",
    "word " * 300,  # longer than the 128-token limit: truncated
    "Two friends.",
]


@pytest.mark.slow  # loads sentence-transformers and the real weights twice
def test_plain_minilm_matches_sentence_transformers_tokens_vectors_and_names():
    import torch
    from sentence_transformers import SentenceTransformer

    from ml.engine.encoders import MiniLMEncoder
    from ml.engine.identity import minilm_path
    from ml.engine.minilm import PAD_TO_MULTIPLE

    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    reference.max_seq_length = 128
    tokenize = getattr(reference, "preprocess", None) or reference.tokenize
    ours = MiniLMEncoder(128).eval()

    expected_tokens = tokenize(TEXTS)
    got_tokens = ours.prepare(TEXTS)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got_tokens[key], expected_tokens[key]), key
    assert got_tokens["input_ids"].shape[1] == 128  # truncated to the limit
    # a batch pads to a multiple of PAD_TO_MULTIPLE tokens; the extra columns are masked padding
    short = TEXTS[5:6] + TEXTS[0:1]
    expected_short, got_short = tokenize(short), ours.prepare(short)
    width = expected_short["input_ids"].shape[1]
    assert got_short["input_ids"].shape[1] == PAD_TO_MULTIPLE > width
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got_short[key][:, :width], expected_short[key]), key
        assert not got_short[key][:, width:].any(), key
    with torch.inference_mode():
        expected = reference(dict(expected_tokens))["sentence_embedding"]
        got = ours(got_tokens)
    assert got.shape == (len(TEXTS), 384)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    # padding never changes a vector: alone, padded to 16, a text gives its vector in the batch
    with torch.inference_mode():
        alone = ours(got_short)
        reference_short = reference(dict(expected_short))["sentence_embedding"]
    assert torch.allclose(alone[0], got[5], atol=1e-5, rtol=0)
    assert torch.allclose(alone, reference_short, atol=1e-5, rtol=0)
    # fine-tuned artifacts and weight fingerprints keep their names
    assert list(ours.state_dict()) == ["st." + k for k in reference.state_dict()]


@pytest.mark.slow  # a fresh interpreter builds both real encoders
def test_a_cold_frozen_feature_pass_imports_no_sentence_transformers_transformers_or_torchvision(tmp_path):
    from tests.factories import image_bytes

    poster = tmp_path / "p.jpg"
    poster.write_bytes(image_bytes(200, 300))
    code = f"""
import sys, torch
torch.set_num_threads(1)
from ml.engine.contracts import Example
from ml.engine.features import FrozenFeatures
from ml.engine.registry import get_config
frozen = FrozenFeatures(get_config("minilm+effnet-frozen-gated"), "cpu")
examples = [Example("a", "A haunted house.", {str(poster)!r}), Example("b", "Two friends.", None)]
assert frozen.text(examples).shape == (2, 384)
features, has = frozen.image(examples)
assert features.shape == (2, 1280) and has.tolist() == [True, False]
heavy = ("sentence_transformers", "transformers", "torchvision", "torch._dynamo", "sympy")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith("torch._dynamo")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
