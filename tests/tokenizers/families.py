"""Tiny ``tokenizer.json`` files of each family's kind, trained here with HuggingFace's
``tokenizers`` (no download): the pipelines are the ones the families' files declare.

    llama3   byte-level BPE, LLaMA-3 split regex, ignore_merges, special tokens after the vocab
    qwen2    NFC normalizer, Qwen's split regex (single digits), special and non-special
             added tokens (``<think>``)
    smollm2  Digits + ByteLevel with GPT-2's regex; only the bytes seen in training have a token
             (others are missing, as in SmolLM2's file); specials at ids 0..2 inside the vocab
    gemma    SentencePiece-style BPE: Replace(" " -> "▁") normalizer, byte fallback ``<0xNN>``
             tokens, ``<unk>`` fused, Replace + ByteFallback + Fuse decoder
    llama2   SentencePiece-style with the Metaspace pre-tokenizer (prepend_scheme "first") and
             a Strip decoder

``with_post_processor`` gives one the post-processor of the family's real file: a BOS before
each encoding for llama3 (Sequence of ByteLevel and a template), gemma and llama2 (a
template), nothing for qwen2 and smollm2 (ByteLevel).
"""
import json

from hypothesis import strategies as st

# characters assigned in Python's Unicode database (14.0 on Python 3.11), for text compared
# with HF `tokenizers`: the `regex` module npgpt reads patterns with knows a newer Unicode than
# the Oniguruma inside `tokenizers`, so a character assigned since (U+11DE0, a digit since
# Unicode 16) is a digit, a letter or a number to one and unassigned to the other
ASSIGNED = st.characters(exclude_categories=("Cs", "Cn"))

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
KINDS = ("llama3", "qwen2", "smollm2", "gemma", "llama2")

# a little of many scripts, so merges form inside multi-byte characters too
WORLD = ("Le café est très bon. Ça va? Näher, größer, über. Привет, как дела? Всё хорошо. "
         "你好，世界。我们今天去公园。こんにちは、元気ですか。안녕하세요 세계. مرحبا بالعالم. "
         "नमस्ते दुनिया। Γειά σου κόσμε. שלום עולם. 😀 🎉 👍🏽 12345 3.14159 2025-01-01\n\t  ")

SPECIALS = {
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
               "<|end_header_id|>", "<|eot_id|>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "smollm2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "gemma": ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
    "llama2": ["<unk>", "<s>", "</s>"],
}
EXTRA = {"qwen2": ["<think>", "</think>", "<tool_call>"]}         # added, not special
TURN = {"gemma": ["<start_of_turn>", "<end_of_turn>"]}             # special, after the vocab


def _corpus(text):
    return [text[i:i + 2000] for i in range(0, len(text), 2000)] + [WORLD] * 20


def build(kind, text, vocab_size=700):
    """A trained ``tokenizers.Tokenizer`` of ``kind`` (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers as pre
    from tokenizers import trainers
    byte_level = kind in ("llama3", "qwen2", "smollm2")
    if kind == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre.Sequence([pre.Split(Regex(LLAMA3_REGEX), "isolated"),
                                          pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif kind == "qwen2":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre.Sequence([pre.Split(Regex(QWEN_REGEX), "isolated"),
                                          pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif kind == "smollm2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True),
                                          pre.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif kind == "gemma":
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        tok.pre_tokenizer = pre.Split(" ", "merged_with_previous")
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "),
                                         decoders.ByteFallback(), decoders.Fuse()])
    elif kind == "llama2":
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.pre_tokenizer = pre.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(content=" ", left=1)])
    else:
        raise ValueError(kind)
    if byte_level:
        tok.decoder = decoders.ByteLevel()
    in_vocab = SPECIALS[kind] if kind in ("smollm2", "gemma", "llama2") else []
    options = {} if byte_level else {"limit_alphabet": 120}
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=in_vocab, show_progress=False,
        initial_alphabet=pre.ByteLevel.alphabet() if kind in ("llama3", "qwen2") else [],
        **options)
    tok.train_from_iterator(_corpus(text), trainer)
    if kind in ("gemma", "llama2"):       # the 256 byte-fallback tokens, in the model's vocab
        obj = json.loads(tok.to_str())
        vocab = obj["model"]["vocab"]
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
        tok = Tokenizer.from_str(json.dumps(obj))
    if not in_vocab:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                for s in SPECIALS[kind]])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in TURN.get(kind, [])])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in EXTRA.get(kind, [])])
    return tok


def save(tok, folder):
    """Write ``tokenizer.json`` into ``folder``; returns its path."""
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


BOS = {"llama3": "<|begin_of_text|>", "gemma": "<bos>", "llama2": "<s>"}


def with_post_processor(tok, kind):
    """``tok`` (built by ``build``) with the post-processor of ``kind``'s real file."""
    from tokenizers import processors
    if kind in BOS:
        bos = BOS[kind]
        post = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
            special_tokens=[(bos, tok.token_to_id(bos))])
        if kind == "llama3":
            post = processors.Sequence([processors.ByteLevel(trim_offsets=False), post])
    else:
        post = processors.ByteLevel(trim_offsets=False)
    tok.post_processor = post
    return tok
