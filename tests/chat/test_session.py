"""The Chat object: the KV cache kept across turns gives the replies full forwards give, a
turn feeds only its new tokens, replies stop at end-of-turn ids, Ctrl-C ends one reply."""
import pytest

from npgpt.chat import Chat, end_of_turn_ids, render
from npgpt.errors import ConfigError, InputError

from .conftest import full_forward_reply


def test_end_of_turn_ids_come_from_the_tokenizer_config_and_generation_config(chat_dir):
    chat = Chat.from_pretrained(chat_dir)
    specials = chat.tokenizer.special_tokens
    assert end_of_turn_ids(chat.tokenizer, chat_dir) == sorted(
        {specials["<|im_end|>"], specials["<|endoftext|>"]})
    assert chat.variables["eos_token"] == "<|im_end|>"


def test_each_turn_equals_full_forward_decoding_and_feeds_only_new_tokens(chat_dir, greedy):
    chat = Chat.from_pretrained(chat_dir, system="Be brief.", **greedy)
    for turn, message in enumerate(["To be", "or not to be?", "That is the question."]):
        before = chat.fed
        cached = list(chat._cached)
        prompt = chat.tokenizer.encode(render(chat.template, chat.messages + [
            {"role": "user", "content": message}], **chat.variables), allowed_special="all")
        expect = full_forward_reply(chat, prompt, greedy["max_new_tokens"])
        reply = chat.send(message)
        assert reply == chat.tokenizer.decode(expect)
        assert chat.messages[-1] == {"role": "assistant", "content": reply}
        shared = 0
        while shared < min(len(cached), len(prompt)) and cached[shared] == prompt[shared]:
            shared += 1
        if turn:
            assert shared > 10                       # the earlier turns stayed in the cache
        # the prompt's unshared tokens, then each token of the reply once
        assert chat.fed - before == len(prompt) - shared + len(expect)


def test_a_reply_stops_at_an_end_of_turn_id(chat_dir, greedy):
    chat = Chat.from_pretrained(chat_dir, **greedy)
    first = full_forward_reply(chat, chat.tokenizer.encode(render(
        chat.template, [{"role": "user", "content": "hi"}], **chat.variables),
        allowed_special="all"), 3)
    assert len(first) == 3
    # make the model's third greedy token an end of turn: the reply is the first two
    stopping = Chat.from_pretrained(chat_dir, stop_ids=[first[2]], **greedy)
    assert stopping.send("hi") == chat.tokenizer.decode(first[:2])


def test_streamed_text_adds_up_to_the_reply(chat_dir):
    chat = Chat.from_pretrained(chat_dir, temperature=1.0, seed=3, max_new_tokens=20)
    pieces = []
    reply = chat.send("Whether tis nobler", on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == reply


def test_ctrl_c_ends_the_reply_not_the_conversation(chat_dir, greedy):
    chat = Chat.from_pretrained(chat_dir, **{**greedy, "max_new_tokens": 30})
    seen = []

    def interrupt_third(text):
        seen.append(text)
        if len(seen) == 3:
            raise KeyboardInterrupt
    cut = chat.send("To be", on_text=interrupt_third)
    assert chat.interrupted and cut == "".join(seen)
    # the cache is consistent: the next turn equals a fresh chat given the same history
    reply = chat.send("again")
    fresh = Chat.from_pretrained(chat_dir, **{**greedy, "max_new_tokens": 30})
    fresh.messages = [{"role": "user", "content": "To be"}, {"role": "assistant", "content": cut}]
    assert not chat.interrupted and reply == fresh.send("again")


def test_reset_forgets_the_conversation_but_keeps_the_system_message(chat_dir, greedy):
    chat = Chat.from_pretrained(chat_dir, system="S", **greedy)
    chat.send("hello")
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "S"}] and chat._cached == []


def test_bad_settings_and_a_conversation_longer_than_the_context_are_refused(chat_dir):
    with pytest.raises(ConfigError, match="temperature"):
        Chat.from_pretrained(chat_dir, temperature=-1)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        Chat.from_pretrained(chat_dir, max_new_tokens=0)
    chat = Chat.from_pretrained(chat_dir, temperature=0)
    with pytest.raises(InputError, match="context"):
        chat.send("to be or not " * 200)


def test_oldest_exchanges_are_dropped_when_the_conversation_outgrows_the_context(chat_dir):
    chat = Chat.from_pretrained(chat_dir, system="S", temperature=0, max_new_tokens=20)
    for n in range(12):
        chat.send(f"message {n}: to be or not to be, that is the question")
        assert len(chat.prompt_ids()) <= chat.model.config.block_size
    assert chat.messages[0] == {"role": "system", "content": "S"}
    assert chat.messages[-2]["content"].startswith("message 11")
    assert not any(m["content"].startswith("message 0:") for m in chat.messages)
    assert [m["role"] for m in chat.messages[1:]] == ["user", "assistant"] * ((len(chat.messages) - 1) // 2)


def test_a_directory_without_a_template_is_refused(chat_dir, tmp_path):
    import json
    import shutil
    shutil.copytree(chat_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (tmp_path / "m" / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="no chat template"):
        Chat.from_pretrained(tmp_path / "m")
