"""Chat templates: a model's Jinja template that turns a conversation into the text it was
trained on, rendered as transformers renders it.

    render(template, [{"role": "user", "content": "Hi"}], add_generation_prompt=True,
           bos_token="<|begin_of_text|>")
    -> "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>..."

The environment, and so the whitespace, is transformers': an immutable sandbox (a template
from a model directory is untrusted code: no attribute of a Python internal, no mutation of
the caller's lists) with ``trim_blocks`` (the newline after a block tag is dropped) and
``lstrip_blocks`` (spaces before a block tag on its line are dropped), the ``loopcontrols``
extension (``break``, ``continue``) and a ``{% generation %}`` block that renders its body.
Besides Jinja's own, a template sees ``raise_exception(message)``, ``strftime_now(format)``,
``dict(...)``, a ``namespace`` that refuses underscore names, and a ``tojson`` that keeps
non-ASCII text and HTML characters as they are.  The messages reach it as plain data (dicts,
lists, strings, numbers), with keys whose value is None dropped and a reasoning text under
``reasoning_content`` and ``thinking`` whichever name it came under.  ``tools`` and
``documents`` are None unless given; other keywords (``bos_token``, ...) are template variables.
"""
import json
import os
from datetime import datetime
from functools import lru_cache

from ..errors import ConfigError, InputError

REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"


class TemplateError(InputError):
    """A chat template refused the conversation (its ``raise_exception``) or failed to render."""


def _plain(value):
    """``value`` rebuilt from plain data: what a sandboxed template may safely see."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "item") and callable(value.item):      # a NumPy scalar
        return _plain(value.item())
    return f"<{type(value).__name__}>"


def prepare_messages(messages):
    """The conversation as the template sees it (see the module docstring)."""
    if not isinstance(messages, (list, tuple)):
        raise InputError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                         f"got {type(messages).__name__}")
    out = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputError(f"message #{n} is a {type(message).__name__}, not a dict with "
                             "'role' and 'content'")
        message = {k: v for k, v in _plain(message).items() if v is not None}
        reasoning = next((message[k] for k in REASONING_KEYS if k in message), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


@lru_cache(maxsize=16)
def compile_template(template):
    """The compiled template (cached: a conversation re-renders it every turn)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}``: marks the assistant's part; renders it."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class Namespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for key in attrs:
                Namespace._check(key)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, key, value):
            Namespace._check(key)
            jinja2.utils.Namespace.__setitem__(self, key, value)

        @staticmethod
        def _check(key):
            if isinstance(key, str) and key.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"a chat template may not store {key!r} on a namespace (underscore names "
                    "are refused)")

    class Dict:
        """``dict(...)`` and ``dict.fromkeys(...)`` without the type itself."""
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       dict=Dict(), namespace=Namespace)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise TemplateError(f"the chat template does not parse: {e} (line {e.lineno})") from None


def render(template, messages, add_generation_prompt=True, tools=None, documents=None,
           **variables):
    """The text of ``messages`` by ``template`` (see the module docstring); with
    ``add_generation_prompt`` it ends where the assistant's reply begins."""
    if not isinstance(template, str) or not template:
        raise ConfigError("a chat template is a non-empty Jinja string")
    import jinja2
    compiled = compile_template(template)
    try:
        return compiled.render(messages=prepare_messages(messages), tools=_plain(tools),
                               documents=_plain(documents),
                               add_generation_prompt=add_generation_prompt, **_plain(variables))
    except jinja2.exceptions.TemplateError as e:
        raise TemplateError(f"the chat template refused the conversation: {e}") from None


# --- a model directory's template and special tokens ------------------------------------------

def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def load_template(folder):
    """The chat template of a model directory: ``chat_template.jinja`` when present (it takes
    priority, as in transformers), else ``chat_template`` in ``tokenizer_config.json`` (a
    string, or a list of named templates: the ``default`` one); None when there is none."""
    folder = os.fspath(folder)
    path = os.path.join(folder, TEMPLATE_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    template = _read_json(os.path.join(folder, CONFIG_FILE)).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def special_token_strings(folder):
    """``{"bos_token": "<s>", "eos_token": ...}`` from ``tokenizer_config.json`` and
    ``special_tokens_map.json``: the variables transformers gives every template."""
    out = {}
    for name in (CONFIG_FILE, "special_tokens_map.json"):
        for key, value in _read_json(os.path.join(os.fspath(folder), name)).items():
            if isinstance(value, dict):
                value = value.get("content")
            if key.endswith("_token") and isinstance(value, str):
                out.setdefault(key, value)
    return out
