"""Chat with a model: its chat template rendered as transformers renders it, and a
conversation object that keeps the KV cache between turns.

    from npgpt.chat import Chat, render
    render(template, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    chat = Chat.from_pretrained("hf-dir", system="Be brief.")
    chat.send("Hi", on_text=lambda s: print(s, end=""))

The command line: ``npgpt chat --model DIR`` (npgpt/chat/cli.py).
"""
from .session import Chat, end_of_turn_ids
from .template import TemplateError, load_template, render, special_token_strings

__all__ = ["Chat", "render", "load_template", "special_token_strings", "end_of_turn_ids",
           "TemplateError"]
