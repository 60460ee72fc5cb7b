"""A conversation with a model: the messages, one KV cache kept across turns, streaming.

    chat = Chat.from_pretrained("hf-dir", system="Be brief.", temperature=0.7)
    chat.send("What is a KV cache?", on_text=print)     # streams, returns the reply
    chat.send("And why keep it between turns?")

Each turn renders the whole conversation with the chat template and encodes it; the tokens it
shares from the start with what the cache already holds are not computed again (the cache is
cropped to that common prefix and only the rest is fed), so a turn costs its own new tokens,
not the whole conversation.  A reply ends at an end-of-turn id (``end_of_turn_ids``: the
ids of ``generation_config.json``'s and the tokenizer's EOS and of the families'
end-of-turn tokens ``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``, ...), at
``max_new_tokens`` or at the model's context (when the conversation no longer leaves room for
a reply, its oldest exchanges are dropped, never the system message); a KeyboardInterrupt (Ctrl-C) ends the reply
being written and keeps what was written of it: the conversation goes on.
"""
import json
import os

import numpy as np

from ..errors import ConfigError, InputError
from .template import load_template, render, special_token_strings

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>",
               "<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
_FIRST_CAPACITY = 256


def end_of_turn_ids(tokenizer, folder=None):
    """The ids a reply stops at (see the module docstring), sorted."""
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    ids = {specials[s] for s in END_OF_TURN if s in specials}
    if folder is not None:
        eos = special_token_strings(folder).get("eos_token")
        if eos in specials:
            ids.add(specials[eos])
        path = os.path.join(os.fspath(folder), "generation_config.json")
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    given = json.load(f).get("eos_token_id")
            except (OSError, ValueError) as e:
                raise ConfigError(f"cannot read {path}: {e}") from None
            ids.update(i for i in (given if isinstance(given, list) else [given])
                       if isinstance(i, int))
    return sorted(ids)


class Chat:
    """A conversation with ``model`` through ``tokenizer`` and the chat ``template``.

    ``variables``: template variables (``bos_token``, ...); ``stop_ids``: end-of-turn ids.
    ``messages`` is the conversation so far ({"role", "content"} dicts)."""

    def __init__(self, model, tokenizer, template, *, system=None, temperature=0.7, top_k=None,
                 top_p=None, max_new_tokens=512, seed=None, stop_ids=(), variables=None):
        from ..generate import check_sampling
        if tokenizer is None:
            raise ConfigError("a chat needs the model's tokenizer")
        if not isinstance(template, str) or not template:
            raise ConfigError("a chat needs a chat template (a Jinja string)")
        check_sampling(temperature, top_k, top_p, seed)
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens={max_new_tokens!r} must be a positive integer")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.max_new_tokens = max_new_tokens
        self.stop_ids = set(int(i) for i in stop_ids)
        self.variables = dict(variables or {})
        self.system = system
        self.rng = np.random.default_rng(seed)
        self.interrupted = False     # whether the last reply was ended by Ctrl-C
        self.fed = 0                 # tokens run through the model so far (all turns)
        self.reset()

    @classmethod
    def from_pretrained(cls, folder, template=None, **kwargs):
        """A chat with the model, tokenizer and chat template of a HuggingFace directory (or
        an npgpt checkpoint, given ``template``)."""
        from ..checkpoints import load_model
        model, tokenizer, _, path = load_model(folder)
        template = template or load_template(path)
        if template is None:
            raise ConfigError(f"{path} has no chat template (chat_template.jinja or "
                              "chat_template in tokenizer_config.json): give one")
        if tokenizer is None:
            raise ConfigError(f"{path} has no tokenizer to chat with")
        kwargs.setdefault("stop_ids", end_of_turn_ids(tokenizer, path))
        kwargs.setdefault("variables", special_token_strings(path))
        return cls(model, tokenizer, template, **kwargs)

    def reset(self):
        """Forget the conversation (the system message stays) and the cache."""
        self.messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        self._cache, self._cached = None, []

    # --- turns ----------------------------------------------------------------------------------
    def prompt_ids(self):
        """The conversation rendered up to the assistant's next reply, encoded."""
        text = render(self.template, self.messages, add_generation_prompt=True, **self.variables)
        # the template writes the BOS itself: no post-processor's on top (as transformers'
        # apply_chat_template encodes)
        return self.tokenizer.encode(text, allowed_special="all", add_special_tokens=False)

    def _fitting_prompt(self):
        """The prompt's ids, after dropping the oldest exchanges (never the system message
        nor the last message) while it leaves less room for the reply than ``max_new_tokens``
        (or half the context, if less)."""
        block = self.model.config.block_size
        room = min(self.max_new_tokens, block // 2)
        ids = self.prompt_ids()
        while len(ids) > block - room:
            first = 1 if self.messages and self.messages[0]["role"] == "system" else 0
            if len(self.messages) - first <= 1:
                break
            del self.messages[first:min(first + 2, len(self.messages) - 1)]
            ids = self.prompt_ids()
        if len(ids) >= block:
            raise InputError(f"the last message alone is {len(ids)} tokens with the template; "
                             f"the model's context is {block}")
        return ids

    def send(self, text, on_text=None):
        """Add a user message and return the reply (streamed to ``on_text`` as it comes)."""
        if not isinstance(text, str):
            raise InputError(f"a message is a str, got {type(text).__name__}")
        self.messages.append({"role": "user", "content": text})
        try:
            return self.reply(on_text)
        except BaseException:       # refused (too long) or Ctrl-C before the reply began:
            if self.messages[-1]["role"] == "user":      # the message was not answered
                self.messages.pop()
            raise

    def reply(self, on_text=None):
        """Sample the assistant's reply to the conversation, add it and return its text."""
        from ..generate import sample_next
        from ..module import no_grad
        ids = self._fitting_prompt()
        block = self.model.config.block_size
        reply, shown = [], 0
        self.interrupted = False
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                logits = self._feed(ids)
                while len(reply) < self.max_new_tokens and len(ids) + len(reply) < block:
                    token = int(sample_next(logits, self.rng, **self.sampling)[0])
                    if token in self.stop_ids:
                        break
                    reply.append(token)
                    shown = self._stream(reply, shown, on_text)
                    logits = self._feed(ids + reply)
        except KeyboardInterrupt:
            self.interrupted = True
            self._crop(len(self._cached))   # a forward cut short leaves no half-written layer
        finally:
            self.model.train(was_training)
        text = self.tokenizer.decode(reply)
        if on_text is not None and len(text) > shown and not self.interrupted:
            on_text(text[shown:])
        self.messages.append({"role": "assistant", "content": text})
        return text

    def _stream(self, reply, shown, on_text):
        """Pass on the reply's new text, holding back an unfinished UTF-8 character."""
        if on_text is None:
            return shown
        text = self.tokenizer.decode(reply)
        if text.endswith("\ufffd") or len(text) <= shown:
            return shown
        on_text(text[shown:])
        return len(text)

    # --- the cache ------------------------------------------------------------------------------
    def _feed(self, ids):
        """Logits (1, V) after ``ids``, computing only what the cache does not hold."""
        keep = 0
        limit = min(len(self._cached), len(ids) - 1)       # at least one token is fed
        while keep < limit and self._cached[keep] == ids[keep]:
            keep += 1
        self._reserve(len(ids))
        self._crop(keep)
        self._cached = self._cached[:keep]
        new = np.array([ids[keep:]], dtype=np.int64)
        logits = self.model.forward(new, kv_cache=self._cache)[0][:, -1, :]
        self._cached = list(ids)
        self.fed += new.shape[1]
        V = getattr(self.tokenizer, "vocab_size", logits.shape[-1])
        if V < logits.shape[-1]:                 # rows the tokenizer has no token for
            logits = logits.copy()
            logits[:, V:] = -np.inf
        return logits

    def _crop(self, n):
        for layer in self._cache or []:
            layer.crop(min(n, layer.length))

    def _reserve(self, n):
        """A cache with room for ``n`` positions, grown by doubling (up to the context)."""
        have = self._cache[0].max_len if self._cache else 0
        if n <= have:
            return
        size = min(max(n, 2 * have, _FIRST_CAPACITY), self.model.config.block_size)
        grown = self.model.new_kv_cache(1, size)
        for old, new in zip(self._cache or [], grown):
            new.k[:, :, :old.length] = old.k[:, :, :old.length]
            new.v[:, :, :old.length] = old.v[:, :, :old.length]
            new.length = old.length
        self._cache = grown
