"""LayerNorm vs BatchNorm on the seed's exam scores (seed 000 "Residual Connection and Layer
Norm").

A table of students (rows) by subjects (columns). BatchNorm normalises each subject over all
the students (every column gets mean 0, std 1: how a student ranks in that subject); LayerNorm
normalises each student over their subjects (every row gets mean 0, std 1: which subjects a
student is strong or weak in). A token in a transformer is a row: LayerNorm needs no batch.

    python examples/04_layernorm_batchnorm.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers import BatchNorm, LayerNorm

SUBJECTS = ["Chinese", "Math", "English", "Physics", "Chemistry"]


def show(title, table, names):
    print(title)
    print("           " + " ".join(f"{s:>9s}" for s in SUBJECTS))
    for name, row in zip(names, table):
        print(f"  {name:8s} " + " ".join(f"{v:9.2f}" for v in row))


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    n = 6
    names = [f"student{i}" for i in range(n)]
    ability = rng.normal(70, 10, size=(n, 1))
    scores = np.clip(ability + rng.normal(0, 8, size=(n, 5)) + [5, -5, 0, -10, 3], 0, 100)
    show("exam scores (students x subjects):", scores, names)

    section("BatchNorm: each column (subject) over the students")
    bn = BatchNorm(5, dtype=np.float64)
    b = bn(scores)
    show("after BatchNorm:", b, names)
    print("column means:", b.mean(0).round(6), " column stds:", b.std(0).round(4))
    print("row means (not normalised):", b.mean(1).round(3))

    section("LayerNorm: each row (student) over the subjects")
    ln = LayerNorm(5, dtype=np.float64)
    lnorm = ln(scores)
    show("after LayerNorm:", lnorm, names)
    print("row means:", lnorm.mean(1).round(6), " row stds:", lnorm.std(1).round(4))

    section("why transformers use LayerNorm")
    one = ln(scores[:1])
    print("LayerNorm of student0 alone == inside the batch:", np.allclose(one, lnorm[:1]))
    bn_small = BatchNorm(5, dtype=np.float64)(scores[:2])
    print("BatchNorm of a batch of 2 changes student0's numbers:",
          not np.allclose(bn_small[0], b[0]), "->", bn_small[0].round(2))
    print("a batch of 1 cannot be batch-normalised: every value becomes",
          BatchNorm(5, dtype=np.float64)(scores[:1]).round(2)[0])

    plt = pyplot()
    if plt is None:
        skipped("04_layernorm_batchnorm.png")
    else:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for a, data, title in zip(axes, (scores, b, lnorm),
                                  ("scores", "BatchNorm (per column)", "LayerNorm (per row)")):
            im = a.imshow(data, cmap="coolwarm")
            a.set_xticks(range(5), SUBJECTS, rotation=30)
            a.set_yticks(range(n), names)
            a.set_title(title)
            fig.colorbar(im, ax=a)
        save(fig, args, "04_layernorm_batchnorm.png")
    done(args)


if __name__ == "__main__":
    main()
