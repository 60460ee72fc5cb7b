import math

import pytest

from npgpt.optim import cosine_schedule, decay_factor, schedule_lr, wsd_schedule


def test_cosine_schedule_is_schedule_lr_over_step_progress():
    for step in (0, 50, 99, 100, 500, 1999, 2000, 5000):
        ratio = (step - 100) / 1900
        expected = (1e-3 * (step + 1) / 100 if step < 100 else 1e-4 if step >= 2000 else
                    1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * 9e-4)
        assert cosine_schedule(step, 1e-3, 1e-4, 100, 2000) == expected


@pytest.mark.parametrize("cooldown", ["linear", "sqrt"])
def test_wsd_holds_then_decays_over_the_last_fraction(cooldown):
    lr, lo = 1e-3, 1e-5
    lrs = [wsd_schedule(s, lr, lo, 10, 110, cooldown_frac=0.25, cooldown=cooldown)
           for s in range(120)]
    assert lrs[:10] == [lr * (s + 1) / 10 for s in range(10)]           # warmup
    assert all(v == lr for v in lrs[10:86])                              # stable: 75 % of 100
    tail = lrs[86:110]
    assert all(a > b for a, b in zip(tail, tail[1:])) and tail[0] < lr  # strictly down
    assert all(v == lo for v in lrs[110:])
    x = (100 - 85) / 25                 # step 100: 15 of the 25 cooldown steps done
    want = 1 - x if cooldown == "linear" else 1 - math.sqrt(x)
    assert lrs[100] == pytest.approx(lo + want * (lr - lo), rel=1e-12)


def test_sqrt_cooldown_drops_faster_early_than_linear():
    assert decay_factor(0.85, "wsd", 0.2, "sqrt") < decay_factor(0.85, "wsd", 0.2, "linear")
    assert decay_factor(1.0, "wsd", 0.2, "sqrt") == 0.0 == decay_factor(1.0, "cosine")
    assert decay_factor(0.0, "wsd", 1.0, "linear") == 1.0 == decay_factor(0.0, "cosine")


def test_schedule_lr_by_progress_ignores_the_step_after_warmup():
    # a time budget: the same progress gives the same rate at any step count
    a = schedule_lr(0.5, 20, 1e-3, 0.0, 10, "cosine")
    b = schedule_lr(0.5, 20000, 1e-3, 0.0, 10, "cosine")
    assert a == b == pytest.approx(5e-4)
    assert schedule_lr(1.7, 20, 1e-3, 1e-4, 10) == 1e-4         # past the end: min_lr
