"""``npgpt chat``: scripted from stdin (as a process), and the terminal loop's keys."""
import io
import os
import subprocess
import sys

from npgpt.chat import Chat
from npgpt.chat.cli import interactive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_chat(args, stdin):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "npgpt", "chat", *args], input=stdin,
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_scripted_conversation_from_stdin_streams_the_replies(chat_dir):
    done = run_chat(["--model", str(chat_dir), "--temperature", "0", "--max-new-tokens", "8",
                     "--system", "Be brief."], "To be\n\nor not to be\n")
    assert done.returncode == 0, done.stderr
    chat = Chat.from_pretrained(chat_dir, system="Be brief.", temperature=0, max_new_tokens=8)
    expect = "".join(chat.send(m) + "\n\n" for m in ("To be", "or not to be"))
    assert done.stdout == expect


def test_empty_stdin_and_a_model_without_template_are_one_line_errors(chat_dir, tmp_path):
    done = run_chat(["--model", str(chat_dir)], "\n\n")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no message" in done.stderr
    done = run_chat(["--model", str(tmp_path / "nothing")], "hi\n")
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_template_flag_replaces_the_models_template(chat_dir, tmp_path):
    (tmp_path / "t.jinja").write_text(
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}", encoding="utf-8")
    done = run_chat(["--model", str(chat_dir), "--template", str(tmp_path / "t.jinja"),
                     "--temperature", "0", "--max-new-tokens", "4"], "hello\n")
    assert done.returncode == 0, done.stderr
    chat = Chat.from_pretrained(chat_dir, template="{% for m in messages %}{{ m['content'] }}\n"
                                "{% endfor %}", temperature=0, max_new_tokens=4)
    assert done.stdout == chat.send("hello") + "\n\n"


def test_terminal_loop_ctrl_c_at_the_prompt_and_in_a_reply_then_ctrl_d(chat_dir):
    chat = Chat.from_pretrained(chat_dir, temperature=1.0, seed=1, max_new_tokens=40)
    keys = iter(["hello", KeyboardInterrupt, "/reset", "again", EOFError])

    def read_line(prompt):
        key = next(keys)
        if isinstance(key, type):
            raise key()
        return key

    class Out(io.StringIO):
        """Ctrl-C pressed while the first reply's third piece is being written."""
        pieces = 0

        def write(self, text):
            super().write(text)
            if chat.messages and chat.messages[-1]["role"] == "user" and len(chat.messages) == 1:
                Out.pieces += 1
                if Out.pieces == 3:
                    raise KeyboardInterrupt
            return len(text)
    out = Out()
    assert interactive(chat, read_line, out) == 0
    text = out.getvalue()
    assert " [stopped]\n" in text and "(new conversation)" in text
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]    # after /reset
    assert chat.messages[0]["content"] == "again" and not chat.interrupted
