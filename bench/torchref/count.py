"""Print (and check) the parameter counts of the preset U-Net configurations.

    /usr/bin/python3 bench/torchref/count.py [--check]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from unet import PRESETS, model_from_config, num_params  # noqa: E402

# Official counts: CIFAR-10 and 256x256 from the DDPM paper/code; mnist is ours.
EXPECTED = {"mnist": 1_623_169, "cifar10": 35_746_307, "celebahq256": 113_673_219}


def main():
    torch.set_num_threads(1)
    check = "--check" in sys.argv[1:]
    ok = True
    for name, cfg in PRESETS.items():
        n = num_params(model_from_config(cfg))
        want = EXPECTED.get(name)
        status = "" if want is None else ("OK" if n == want else f"MISMATCH (want {want:,})")
        ok = ok and (want is None or n == want)
        print(f"{name:12s} {n:>13,d}  {status}")
    if check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
