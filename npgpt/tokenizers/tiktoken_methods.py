"""tiktoken's methods beyond encode/decode, for byte-level BPE (ByteBPE inherits them; the
``tiktoken_compat.Encoding`` wrapper gives them tiktoken's signatures)."""
from ..errors import TokenizerError


def _all_space(raw):
    return all(b in b" \n\t" for b in raw)


def _continuation(byte):
    return 0x80 <= byte < 0xC0


class TiktokenMethods:
    """For a byte-level tokenizer with ``_decoder`` ({id: bytes}, specials included),
    ``token_ids`` ({bytes: id}), ``special_tokens``, ``encode_ordinary`` and ``decode_bytes``."""

    def encode_single_token(self, text_or_bytes):
        """The id of the one token whose bytes (or text: special tokens too) this is; KeyError
        otherwise, as tiktoken."""
        raw = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else bytes(text_or_bytes)
        if raw in self.token_ids:
            return self.token_ids[raw]
        special = self.special_tokens.get(raw.decode("utf-8", errors="replace"))
        if special is not None:
            return special
        raise KeyError(text_or_bytes)

    def decode_single_token_bytes(self, token):
        """The bytes of one token (special tokens too); KeyError when there is no such id."""
        try:
            return self._decoder[int(token)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(token) from None

    def decode_tokens_bytes(self, tokens):
        return [self.decode_single_token_bytes(t) for t in tokens]

    def decode_with_offsets(self, tokens):
        """(text, offsets): offsets[i] is the index in text of the first character that holds
        bytes of token i (a token that starts inside a character points at that character).
        Raises UnicodeDecodeError when the tokens are not valid UTF-8 together."""
        parts = self.decode_tokens_bytes(tokens)
        offsets, chars = [], 0
        for raw in parts:
            offsets.append(max(0, chars - (1 if raw and _continuation(raw[0]) else 0)))
            chars += sum(1 for b in raw if not _continuation(b))  # characters started here
        return b"".join(parts).decode("utf-8", errors="strict"), offsets

    def encode_ordinary_batch(self, texts, num_threads=8):
        return [self.encode_ordinary(t) for t in texts]

    def decode_batch(self, batch, errors="replace", num_threads=8):
        return [self.decode(ids, errors=errors) for ids in batch]

    def decode_bytes_batch(self, batch, num_threads=8):
        return [self.decode_bytes(ids) for ids in batch]

    def token_byte_values(self):
        """The bytes of every ordinary token, sorted (as tiktoken lists them)."""
        return sorted(self.token_ids)

    @property
    def max_token_value(self):
        return max(self._decoder)

    @property
    def n_vocab(self):
        return self.max_token_value + 1

    @property
    def eot_token(self):
        if "<|endoftext|>" not in self.special_tokens:
            raise TokenizerError("this tokenizer has no <|endoftext|> special token")
        return self.special_tokens["<|endoftext|>"]

    def is_special_token(self, token):
        return token in set(self.special_tokens.values())

    def _encode_bytes(self, data):
        """Encode bytes that need not be valid UTF-8, as tiktoken's ``_encode_bytes``: the valid
        prefix is encoded as text; its last piece's bytes (with the whitespace tokens before it,
        see below) and the rest are then one piece: a whole token if they are one, else their
        BPE without a split."""
        data = bytes(data)
        try:
            return self.encode_ordinary(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            cut = e.start
        valid = data[:cut].decode("utf-8")
        pieces = [valid] if self._split is None else self._split.findall(valid)
        ids = self.encode_ordinary(valid) if valid else []
        last = len(self.encode_ordinary(pieces[-1])) if pieces else 0
        # the split before the invalid bytes may not hold once they join the last piece (a
        # newline-ended whitespace run could grow), so whitespace tokens before a piece that
        # starts with whitespace join it too
        if last and _all_space(self._decoder[ids[-last]]):
            while last < len(ids) and _all_space(self._decoder[ids[-last - 1]]):
                last += 1
        tail = self.decode_bytes(ids[len(ids) - last:]) + data[cut:]
        whole = self.token_ids.get(tail)
        return ids[:len(ids) - last] + ([whole] if whole is not None else self._encode_piece(tail))

    def encode_to_numpy(self, text, allowed_special="none_raise", disallowed_special="all"):
        """tiktoken's: the ids of ``text`` alone (no post-processor's BOS), as uint32."""
        import numpy as np
        return np.array(self.encode(text, allowed_special, disallowed_special,
                                    add_special_tokens=False), np.uint32)
