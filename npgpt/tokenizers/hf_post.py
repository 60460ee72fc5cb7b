"""A ``tokenizer.json``'s ``post_processor``: the special tokens HuggingFace puts around an
encoding when ``add_special_tokens`` is true (its default in ``tokenizer(text)`` and
``tokenizer.encode(text)``).

For one sequence every processor the format has comes down to ids before and ids after:

    TemplateProcessing   its ``single`` template: ``<|begin_of_text|> $A`` (Llama 3),
                         ``<bos> $A`` (Gemma), ``<s> $A </s>``: the special tokens on each
                         side of the one ``Sequence`` piece, each token's ``ids`` from the
                         template's ``special_tokens`` table
    RobertaProcessing,   ``cls`` before, ``sep`` after
    BertProcessing
    ByteLevel            nothing (it only trims character offsets)
    Sequence             its one processor that adds tokens (Llama 3: ByteLevel, template);
                         with two such, the reference hands the second the first one's pieces
                         as separate sequences, which is refused here

    PostProcessor(prefix=[128000], suffix=[])([9906, 1917]) -> [128000, 9906, 1917]

Pair templates (two texts in one encoding) are not used by npgpt and are not read.
"""
import json

from ..errors import TokenizerError


class PostProcessor:
    """The ids a post-processor adds around one sequence; ``spec`` is its JSON object, kept
    so the file can be written back as it was."""

    def __init__(self, prefix, suffix, spec):
        self.prefix, self.suffix, self.spec = list(prefix), list(suffix), spec

    def __call__(self, ids):
        return self.prefix + list(ids) + self.suffix

    @property
    def num_special_tokens_to_add(self):
        return len(self.prefix) + len(self.suffix)

    def check_ids(self, vocab_size, where):
        bad = [i for i in self.prefix + self.suffix if not 0 <= i < vocab_size]
        if bad:
            raise TokenizerError(f"{where}: the post_processor adds id {bad[0]}, outside the "
                                 f"vocabulary 0..{vocab_size - 1}")

    def to_json(self):
        return json.dumps(self.spec, ensure_ascii=False, sort_keys=True)

    def __repr__(self):
        return f"PostProcessor(prefix={self.prefix}, suffix={self.suffix})"


def _ids(values, what, where):
    """A list of token ids as the file gives them, or TokenizerError naming ``what``."""
    if not isinstance(values, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in values):
        raise TokenizerError(f"{where}: post_processor {what} has ids {values!r}, expected a "
                             "list of integers")
    return list(values)


def _list(spec, key, where):
    value = spec.get(key) or []
    if not isinstance(value, list):
        raise TokenizerError(f"{where}: post_processor {spec.get('type')} {key}={value!r} "
                             "is not a list")
    return value


def _token_pair(spec, key, where):
    """``["<s>", 0]`` (Roberta / Bert's ``cls`` and ``sep``) -> [0]."""
    pair = spec.get(key)
    if not isinstance(pair, list) or len(pair) != 2:
        raise TokenizerError(f"{where}: post_processor {spec.get('type')} has no valid "
                             f"{key!r} (expected [token, id]): {pair!r}")
    return _ids(pair[1:], f"{spec.get('type')} {key}", where)


def _template(spec, where):
    """(prefix, suffix) of a TemplateProcessing's ``single`` template."""
    table = spec.get("special_tokens") or {}
    prefix, suffix, seen = [], [], 0
    for piece in _list(spec, "single", where):
        kind, value = next(iter(piece.items())) if isinstance(piece, dict) and piece \
            else (None, None)
        if kind == "Sequence":
            seen += 1
        elif kind == "SpecialToken":
            name = value.get("id") if isinstance(value, dict) else None
            token = table.get(name) if isinstance(table, dict) and isinstance(name, str) \
                else None
            if not isinstance(token, dict):
                raise TokenizerError(f"{where}: the post_processor template names special "
                                     f"token {name!r}, which its special_tokens do not define")
            (suffix if seen else prefix).extend(_ids(token.get("ids"), repr(name), where))
        else:
            raise TokenizerError(f"{where}: post_processor template piece {piece!r} is neither "
                                 "a Sequence nor a SpecialToken")
    if seen != 1:
        raise TokenizerError(f"{where}: the post_processor's single template has {seen} "
                             "sequences, expected one ($A)")
    return prefix, suffix


def _parts(spec, where):
    if not isinstance(spec, dict):
        raise TokenizerError(f"{where}: post_processor {spec!r} is not a JSON object")
    kind = spec.get("type")
    if kind == "TemplateProcessing":
        return _template(spec, where)
    if kind in ("RobertaProcessing", "BertProcessing"):
        return _token_pair(spec, "cls", where), _token_pair(spec, "sep", where)
    if kind == "ByteLevel":
        return [], []
    if kind == "Sequence":
        adding = [p for p in (_parts(step, where) for step in _list(spec, "processors", where))
                  if p[0] or p[1]]
        if len(adding) > 1:     # the reference hands the second one the pieces the first
            raise TokenizerError(  # made, as several sequences: not a wrapping
                f"{where}: a post_processor Sequence with {len(adding)} processors that add "
                "tokens is not supported (one, beside ByteLevel ones, is)")
        return adding[0] if adding else ([], [])
    raise TokenizerError(f"{where}: post_processor {kind!r} is not supported "
                         "(TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel "
                         "and Sequence are)")


def post_processor(spec, where="tokenizer.json"):
    """The ``post_processor`` object -> a PostProcessor, or None when there is none (the
    file's ``null``) or it adds nothing."""
    if spec is None:
        return None
    prefix, suffix = _parts(spec, where)
    return PostProcessor(prefix, suffix, spec) if prefix or suffix else None
