"""GPT-2's byte <-> printable character table, which byte-level BPE files are written in."""


def bytes_to_unicode():
    """byte -> the printable character GPT-2 writes for it: {33: '!', ..., 32: 'Ġ', ...}."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
