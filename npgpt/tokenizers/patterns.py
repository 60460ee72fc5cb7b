"""The regex pre-split patterns of GPT-2 and GPT-4 (cl100k_base), as published by OpenAI.

BPE never merges across the boundaries these patterns draw: text is first cut into pieces
(a word with its leading space, a run of digits, a run of punctuation, whitespace), and each
piece is encoded on its own.  Both need the `regex` package (``\\p{L}``, possessive ``++``).
"""

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "cl100k": GPT4_PATTERN}


def resolve_pattern(pattern):
    """``"gpt2" | "gpt4" | None | <regex>`` -> the regex string, or None for no pre-split."""
    if pattern is None:
        return None
    return PATTERNS.get(pattern, pattern)
