"""``npgpt chat``: talk with a model in the terminal, or run a scripted conversation.

    npgpt chat --model hf-dir --system "Be brief." --temperature 0.7
    printf 'Hi\\nTell me more\\n' | npgpt chat --model hf-dir --temperature 0

On a terminal: a prompt per turn, the reply streamed as it is sampled; Ctrl-C ends the reply
being written (the conversation goes on), Ctrl-C at the prompt clears the line, Ctrl-D or
``/quit`` ends the program, ``/reset`` starts a new conversation.  Not on a terminal: every
non-empty line of stdin is one user message, and each reply is written on its own line(s)
followed by an empty line.
"""
import sys

from ..errors import ConfigError, NpgptError, describe

COMMANDS = {"/quit": "end the program", "/exit": "end the program",
            "/reset": "start a new conversation (the system message stays)"}


def add_chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model that has a chat template, streaming "
                                    "its replies")
    p.add_argument("--model", required=True,
                   help="a HuggingFace model directory (with a chat template) or an npgpt "
                        "checkpoint (with --template)")
    p.add_argument("--system", default=None,
                   help="a system message opening the conversation (default: none)")
    p.add_argument("--template", default=None, metavar="FILE",
                   help="a Jinja chat template file to use instead of the model's")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default: 0.7)")
    p.add_argument("--top-k", type=int, default=None,
                   help="sample among the k most likely tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample among the most likely tokens adding up to p (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=512,
                   help="the longest reply, in tokens (default: 512)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the sampler (default: a fresh one each run)")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args) -> int:
    from .session import Chat
    if not str(args.model).strip():
        raise ConfigError(f"--model={args.model!r} is empty: expected a model directory")
    template = None
    if args.template is not None:
        try:
            with open(args.template, encoding="utf-8") as f:
                template = f.read()
        except OSError as e:
            raise ConfigError(f"--template: cannot read {args.template}: {e}") from None
    chat = Chat.from_pretrained(args.model, template=template, system=args.system,
                                temperature=args.temperature, top_k=args.top_k,
                                top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                seed=args.seed)
    if sys.stdin.isatty():
        return interactive(chat, input, sys.stdout)
    return scripted(chat, sys.stdin, sys.stdout)


def _write(out):
    def write(text):
        out.write(text)
        out.flush()
    return write


def interactive(chat, read_line, out) -> int:
    """The terminal loop; ``read_line(prompt)`` is ``input``."""
    write = _write(out)
    write("chat: /reset starts over, /quit (or Ctrl-D) ends, Ctrl-C stops a reply\n")
    while True:
        try:
            line = read_line("> ")
        except EOFError:
            write("\n")
            return 0
        except KeyboardInterrupt:       # at the prompt: a fresh line, not the end
            write("\n")
            continue
        message = line.strip()
        if message in ("/quit", "/exit"):
            return 0
        if message == "/reset":
            chat.reset()
            write("(new conversation)\n")
            continue
        if not message:
            continue
        try:
            chat.send(line, on_text=write)
        except KeyboardInterrupt:        # before the reply began: the message is withdrawn
            write(" [stopped]\n")
            continue
        except NpgptError as e:          # e.g. a message longer than the context: say so, go on
            write(f"(not sent: {describe(e)})\n")
            continue
        write(" [stopped]\n" if chat.interrupted else "\n")


def scripted(chat, lines, out) -> int:
    """Each non-empty line of ``lines`` a user message, each reply then an empty line."""
    write, turns = _write(out), 0
    for line in lines:
        message = line.rstrip("\r\n")
        if not message.strip():
            continue
        if message.strip() == "/reset":
            chat.reset()
            continue
        if message.strip() in ("/quit", "/exit"):
            break
        chat.send(message, on_text=write)
        write("\n\n")
        turns += 1
    if turns == 0:
        raise ConfigError("stdin held no message: give one user message per line")
    return 0
