"""Padding (seed 002's open question: "当输入的长度小于block_size时，Transformer是怎么处理的？").

Sequences shorter than the longest in a batch are padded to one length. A key padding mask
(True = real token) gives padded keys zero attention weight, and the loss ignores padded
targets (ignore_index), so a padded token changes no real output and gets zero gradient. In a
causal decoder, right padding is already hidden by the causal mask; in an encoder (attention
in both directions, as in 03's classifier and the seq2seq encoder) only the padding mask
hides it.

    python examples/09_padding.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.models import GPT, GPTConfig

PAD = 0
IGNORE = -100          # CrossEntropyLoss's ignore_index


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    V, T = 12, 8
    # an untied head, so the pad token's embedding row is used by the lookup alone
    config = GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16,
                       tie_embeddings=False, dtype="float64")
    model = GPT(config, seed=args.seed)
    for block in model.h:
        block.attn.attention.keep_weights = True
        block.attn.c_attn.weight.data *= 10         # visible attention patterns

    section("a batch of sequences shorter than block_size, right-padded to one length")
    seqs = [rng.integers(1, V, size=n) for n in (3, 5, 8)]
    idx = np.full((len(seqs), T), PAD)
    mask = np.zeros((len(seqs), T), dtype=bool)
    for b, s in enumerate(seqs):
        idx[b, :len(s)] = s
        mask[b, :len(s)] = True
    print(f"idx (B, T) = {idx.shape}, pad id {PAD}:\n{idx}")
    print(f"key padding mask (True = real token):\n{mask.astype(int)}")

    logits, _ = model.forward(idx, key_padding_mask=mask)
    weights = model.h[0].attn.weights                # (B, H, T, T)
    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    print(f"layer 0, head 0 weights for the 3-token sequence (padded keys are columns 3..7):\n"
          f"{weights[0, 0]}")
    on_padding = weights * ~mask[:, None, None, :]
    print("total attention weight on padded keys (every layer-0 head and query):",
          float(on_padding.sum()))

    section("the real positions do not see the padding")
    for b, s in enumerate(seqs):
        alone, _ = model.forward(s[None])
        diff = np.abs(alone[0] - logits[b, :len(s)]).max()
        print(f"sequence {b} ({len(s)} tokens) run alone vs padded in the batch: max |diff| = {diff:.1e}")
    unmasked, _ = model.forward(idx)
    print(f"causal decoder without the padding mask: max |diff| = "
          f"{np.abs(unmasked[0, :3] - logits[0, :3]).max():.1e} (the causal mask hides right padding)")
    from npgpt.layers import MultiHeadAttention
    encoder_attn = MultiHeadAttention(16, 2, causal=False, dtype=np.float64, rng=rng)
    encoder_attn.c_attn.weight.data *= 10
    x = rng.standard_normal((len(seqs), T, 16))
    with_mask = encoder_attn(x, key_padding_mask=mask)
    without = encoder_attn(x)
    alone = encoder_attn(x[:1, :3])
    print(f"encoder (not causal) attention, sequence 0: with the mask max |diff| vs alone = "
          f"{np.abs(with_mask[0, :3] - alone[0]).max():.1e}, without it = "
          f"{np.abs(without[0, :3] - alone[0]).max():.3f}")

    section("zero gradient for padding: targets at padded positions are ignored")
    targets = np.roll(idx, -1, axis=1)
    targets[:, -1] = rng.integers(1, V, size=len(seqs))
    targets[~np.roll(mask, -1, axis=1)] = IGNORE      # no target where the next token is padding
    targets[~mask] = IGNORE
    model.zero_grad()
    _, loss = model.forward(idx, targets, key_padding_mask=mask)
    model.backward()
    print(f"targets:\n{targets}\nloss over {int((targets != IGNORE).sum())} real targets = "
          f"{float(loss):.4f}")
    print("gradient of the pad token's embedding row wte[0]: max |.| =",
          np.abs(model.wte.weight.grad[PAD]).max())
    print("gradient of a real token's row:            max |.| =",
          f"{np.abs(model.wte.weight.grad[seqs[0][0]]).max():.2e}")

    plt = pyplot()
    if plt is None:
        skipped("09_padding.png")
    else:
        fig, axes = plt.subplots(1, len(seqs), figsize=(12, 3.8))
        for b, a in enumerate(axes):
            a.imshow(weights[b, 0], cmap="viridis", vmin=0, vmax=1)
            a.set(title=f"sequence {b}: {len(seqs[b])} real tokens", xlabel="key", ylabel="query")
        save(fig, args, "09_padding.png")
    done(args)


if __name__ == "__main__":
    main()
