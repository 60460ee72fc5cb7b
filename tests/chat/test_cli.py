"""``npgpt chat``: scripted from stdin (as a process), and the terminal loop's keys."""
import io
import json
import os
import subprocess
import sys
import time

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


def run_in_process(args, stdin, monkeypatch, capsys):
    """``npgpt chat ARGS`` in this process, with ``stdin`` as its (non-terminal) input."""
    from npgpt.cli import main
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["chat", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_empty_stdin_and_a_model_without_template_are_one_line_errors(chat_dir, tmp_path,
                                                                      monkeypatch, capsys):
    code, out, err = run_in_process(["--model", str(chat_dir)], "\n\n", monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "no message" in err and out == ""
    code, _, err = run_in_process(["--model", str(tmp_path / "nothing")], "hi\n", monkeypatch,
                                  capsys)
    assert code == 2 and err.count("\n") == 1


def test_template_flag_replaces_the_models_template(chat_dir, tmp_path, monkeypatch, capsys):
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    (tmp_path / "t.jinja").write_text(template, encoding="utf-8")
    code, out, err = run_in_process(["--model", str(chat_dir), "--template", str(tmp_path / "t.jinja"),
                                     "--temperature", "0", "--max-new-tokens", "4"], "hello\n",
                                    monkeypatch, capsys)
    assert code == 0, err
    chat = Chat.from_pretrained(chat_dir, template=template, temperature=0, max_new_tokens=4)
    assert out == chat.send("hello") + "\n\n"


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


class _Terminal:
    """The master side of a pseudo-terminal: ``expect(marker)`` reads up to and including
    ``marker`` (what came after it stays for the next call)."""

    def __init__(self, fd):
        self.fd, self.pending = fd, b""

    def expect(self, marker, timeout=120.0):
        import select
        end = time.monotonic() + timeout
        while marker not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(end - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no {marker!r} on the terminal; it showed "
                                     f"{self.pending[-300:]!r}")
            try:
                self.pending += os.read(self.fd, 4096)
            except OSError:                  # the other side closed
                raise AssertionError(f"the terminal closed before {marker!r}: "
                                     f"{self.pending[-300:]!r}") from None
        cut = self.pending.index(marker) + len(marker)
        seen, self.pending = self.pending[:cut], self.pending[cut:]
        return seen


def test_ctrl_c_on_a_real_terminal_ends_the_reply_not_the_program(chat_dir, tmp_path):
    """On a pseudo-terminal, SIGINT (what the terminal sends for Ctrl-C) during a reply that
    would run for thousands of tokens stops it; the prompt comes back and /quit ends with
    status 0."""
    import pty
    import shutil
    import signal
    folder = tmp_path / "long"
    shutil.copytree(chat_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 4096          # room for a reply that does not end
    (folder / "config.json").write_text(json.dumps(config))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", "chat", "--model", str(folder),
                             "--temperature", "0", "--max-new-tokens", "3000"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    os.close(slave)
    terminal = _Terminal(master)
    try:
        terminal.expect(b"> ")
        os.write(master, b"hello\n")
        terminal.expect(b"hello\r\n")                  # the echo; then the reply streams
        while len(terminal.pending) < 40:
            terminal.pending += os.read(master, 4096)
        proc.send_signal(signal.SIGINT)
        terminal.expect(b" [stopped]\r\n")
        terminal.expect(b"> ")
        os.write(master, b"/quit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(master)
