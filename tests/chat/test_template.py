"""npgpt.chat.render gives exactly the text of transformers' chat-template renderer."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from npgpt.chat import TemplateError, load_template, render, special_token_strings

from . import templates

pytest.importorskip("jinja2")

TEXT = st.lists(st.sampled_from(["Hi", " there", "\n", "  ", "\t", "😀", "你好", "<b>&amp;</b>",
                                 "'quoted'", '"double"', "{{ not code }}", "{% raw %}",
                                 "<|im_end|>", "ÿ", "\\n"]) | st.text(max_size=6),
                max_size=6).map("".join)


@st.composite
def conversations(draw, alternate=True):
    """A tool-free conversation: maybe a system message, then user/assistant turns."""
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(TEXT)})
    for i in range(draw(st.integers(1, 5))):
        role = ("user", "assistant")[i % 2] if alternate else draw(st.sampled_from(["user", "assistant", "tool"]))
        content = draw(TEXT)
        if role == "assistant" and draw(st.booleans()):      # a reply that thought first
            content = f"<think>\n{draw(TEXT)}\n</think>\n\n{content}"
        message = {"role": role, "content": content}
        if role == "assistant" and draw(st.booleans()):
            message["reasoning"] = draw(TEXT)
        messages.append(message)
    return messages


def reference(template, messages, add_generation_prompt, **variables):
    from transformers.utils.chat_template_utils import render_jinja_template
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=add_generation_prompt, **variables)
    return rendered[0]


@pytest.mark.parametrize("name", list(templates.ALL))
@settings(max_examples=25, deadline=None)
@given(messages=conversations(), add_generation_prompt=st.booleans())
def test_render_equals_transformers_renderer(tt, name, messages, add_generation_prompt):
    template, variables = templates.ALL[name], templates.VARIABLES[name]
    ours = render(template, messages, add_generation_prompt=add_generation_prompt, **variables)
    assert ours == reference(template, messages, add_generation_prompt, **variables)


@settings(max_examples=25, deadline=None)
@given(messages=conversations(alternate=False))
def test_loop_controls_and_namespace_render_as_transformers(tt, messages):
    ours = render(templates.ENVIRONMENT, messages)
    assert ours == reference(templates.ENVIRONMENT, messages, True)


def test_chatml_multi_turn_text_is_the_one_the_model_was_trained_on():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"}]
    assert render(templates.CHATML, messages) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")


def test_raise_exception_in_a_template_is_a_clear_error():
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(TemplateError, match="must alternate"):
        render(templates.GEMMA, bad, bos_token="<bos>")


def test_the_sandbox_refuses_python_internals():
    with pytest.raises(Exception, match="unsafe|not safely|SecurityError|access"):
        render("{{ messages.__class__.__mro__ }}", [{"role": "user", "content": "x"}])
    with pytest.raises(Exception, match="underscore"):
        render("{% set ns = namespace(_x=1) %}", [])
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(Exception):
        render("{{ messages.append(1) }}", messages)
    assert messages == [{"role": "user", "content": "x"}]


def test_none_values_are_dropped_and_reasoning_is_aliased():
    template = ("{% for m in messages %}{{ m.role }}|{{ 'content' in m }}|"
                "{{ m.get('thinking', '-') }}|{{ m.get('reasoning_content', '-') }};{% endfor %}")
    messages = [{"role": "user", "content": None}, {"role": "assistant", "content": "a",
                                                     "reasoning": "because"}]
    assert render(template, messages) == "user|False|-|-;assistant|True|because|because;"


def test_template_of_a_directory_from_its_file_or_its_config(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
         "bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>"}))
    assert load_template(tmp_path) == "D"
    assert special_token_strings(tmp_path) == {"bos_token": "<s>", "eos_token": "</s>"}
    (tmp_path / "chat_template.jinja").write_text("J", encoding="utf-8")
    assert load_template(tmp_path) == "J"          # the file takes priority
    assert load_template(tmp_path / "missing") is None


def test_apply_chat_template_of_a_saved_tokenizer_matches(tt, tmp_path):
    from transformers import AutoTokenizer
    from tokenizers import Tokenizer, models
    tok = Tokenizer(models.BPE(vocab={"a": 0}, merges=[]))
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
         "eos_token": "<|eot_id|>", "chat_template": templates.LLAMA3}))
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    messages = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi"}]
    expect = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render(load_template(tmp_path), messages, **special_token_strings(tmp_path)) == expect
