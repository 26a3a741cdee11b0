"""A word-level tokenizer over the world's vocabulary: one word, one token, so every answer is one token.

It is saved next to the model but must always be loaded with ``load_tokenizer``: transformers 5.23
replaces a saved tokenizer with ``Qwen2Tokenizer`` for ``model_type=qwen2`` and gives wrong ids
without an error.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from circuitgate.organism.world import World

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
TOKENIZER_FILE = "tokenizer.json"


def _wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    # Left padding: batched prompts then all end at the last position, where the answer is read.
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, padding_side="left"
    )


def build_tokenizer(world: World) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *world.words()))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Every prompt starts with <bos>: a fixed first position the attention heads can rest on.
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return _wrap(core)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """The organism's tokenizer from a built dir (or its tokenizer.json), never through AutoTokenizer."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    return _wrap(Tokenizer.from_file(str(file)))
