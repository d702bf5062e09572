#!/usr/bin/env bash
# gpu-check.sh: the GPU checks of issue 12, on a machine with an NVIDIA driver, Python and
# PyTorch (2.x, CUDA 12/13), no Go toolchain and no network. It takes the binaries built
# elsewhere by `make gpu-check-bundle` (build/gpu-check.tar.xz: the CUDA build's test binary
# of package compute and bin/ddpm-studio-cuda) and prints one table:
#   1. every op's kernels on the GPU against the CPU op, forward and gradients (cuBLAS and
#      the own sgemm kernel for the matrix products): max relative error, tolerance 1e-5;
#   2. the mnist and cifar10 networks, same weights and inputs, two training steps: masks,
#      loss, gradient norm, every gradient, Adam's moments, weights, EMA and ε̂, GPU against
#      CPU: relative error below 1e-4;
#   3. cifar10: training step at batch 128 and forward at batch 256, ours and PyTorch
#      (bench/torchref, float32 without TF32) on this GPU, medians, the ratio, peak memory;
#   4. 1000-step DDPM sampling of 64 cifar10 images, ours and PyTorch; 200 mnist training
#      steps on the GPU whose checkpoint then resumes on the CPU.
# Run from the repository root: scripts/gpu-check.sh [bundle]. Exit status 0 when every
# check passed, 1 when one failed, 2 when there is no GPU to check (said in one line).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=${1:-build/gpu-check.tar.xz}
budget=${GPU_CHECK_SECONDS:-470} # the whole script stays within 8 minutes
start=$SECONDS
say() { echo "gpu-check: $*" >&2; }

[ -f "$bundle" ] || { say "no $bundle: build it with make gpu-check-bundle and carry it with the working tree"; exit 2; }
command -v python3 >/dev/null || { say "no python3"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$work" || { say "cannot unpack $bundle"; exit 2; }
chmod +x "$work"/compute.test "$work"/ddpm-studio-cuda

# cuBLAS: the Python wheels' (nvidia-cublas-cu13 or -cu12) where PyTorch came with them.
blas=$(python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia.cublas as m
    for p in m.__path__:
        if os.path.isdir(os.path.join(p, "lib")):
            print(os.path.join(p, "lib"))
            break
except Exception:
    pass
EOF
)
[ -n "$blas" ] && export LD_LIBRARY_PATH="$blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

rows=$work/rows
: >"$rows"
# The device line: which GPU, driver and cuBLAS the binaries find, or why none.
devline=$(cd compute && DDPM_GPU_TABLE=1 "$work/compute.test" -test.run '^TestOpenDeviceSaysWhy$' 2>&1 | sed -n 's/^DEVICE|//p' | head -1)
echo "device: ${devline:-unknown}"
case "$devline" in
GPU:*) ;;
*)
	say "no GPU to check on this machine (${devline:-the test binary did not say why}); nothing was run"
	exit 2
	;;
esac
if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
	say "PyTorch sees no GPU: the comparisons with PyTorch (parts 3 and 4) will be missing"
fi

# part runs one command with what is left of the time budget (at most its own limit), and
# keeps its GPUCHECK lines; a part that fails or runs out of time is a row of its own.
part() {
	local name=$1 limit=$2
	shift 2
	local left=$((budget - (SECONDS - start)))
	if [ "$left" -lt 20 ]; then
		echo "GPUCHECK|$name|-|not run: the 8-minute budget is spent|||FAIL" >>"$rows"
		return
	fi
	[ "$limit" -gt "$left" ] && limit=$left
	local log=$work/$name.log
	timeout "$limit" "$@" >"$log" 2>&1
	local rc=$?
	grep '^GPUCHECK|' "$log" >>"$rows"
	if [ $rc -eq 124 ]; then
		echo "GPUCHECK|$name|-|timed out after ${limit}s (log: $(tail -c 300 "$log" | tr '\n|' '  '))|||FAIL" >>"$rows"
	elif [ $rc -ne 0 ] && ! grep -q '|FAIL$' "$log"; then
		echo "GPUCHECK|$name|-|exit $rc: $(grep -m3 -E 'FAIL|Error|error|panic' "$log" | tr '\n|' '  ' | cut -c1-300)|||FAIL" >>"$rows"
	fi
	say "$name done at $((SECONDS - start))s"
}

export DDPM_GPU_TABLE=1 DDPM_GPU_CHECK=1 DDPM_REQUIRE_GPU=1
t=$work/compute.test
part op 120 bash -c "cd compute && '$t' -test.run '^TestDeviceOpsMatchCPU\$/^cuda' -test.v -test.timeout 10m"
part net 180 bash -c "cd compute && '$t' -test.run '^TestGPUNetworkMatchesCPU\$' -test.v -test.timeout 10m"
part speed-ours 100 bash -c "cd compute && '$t' -test.run '^TestGPUSpeed\$' -test.v -test.timeout 10m"
part speed-torch 100 python3 bench/torchref/gpu_bench.py --parts speed
part sample-ours 120 bash -c "cd compute && '$t' -test.run '^TestGPUSampleDDPM\$' -test.v -test.timeout 10m"
part sample-torch 120 python3 bench/torchref/gpu_bench.py --parts sample
part resume 120 bash -c "cd compute && '$t' -test.run '^TestGPUTrainResumesOnCPU\$' -test.v -test.timeout 10m"
# The CUDA binary itself, as a user runs it: 200 mnist steps on the GPU, then 5 more from
# that checkpoint on the CPU (the run folder is the same on both devices).
part cli 150 bash -c "
	b='$work/ddpm-studio-cuda'; r='$work/cli-run'
	\$b train --data mnist --run \$r --preset mnist --steps 200 --sample-every 0 --device cuda >'$work/cli-gpu.txt' 2>&1 &&
	\$b train --run \$r --steps 205 --device cpu >'$work/cli-cpu.txt' 2>&1 || { tail -3 '$work'/cli-*.txt; exit 1; }
	echo \"GPUCHECK|cli|ddpm-studio-cuda|train 200 steps \$(grep -o 'on CUDA:.*' '$work/cli-gpu.txt' | head -1 | cut -c1-80)|||ok\"
	echo \"GPUCHECK|cli|ddpm-studio-cuda|resume on the CPU to 205: \$(tail -1 '$work/cli-cpu.txt' | cut -c1-60)|||ok\"
"

python3 - "$rows" <<'EOF'
import sys

rows = [l.rstrip("\n").split("|")[1:] for l in open(sys.argv[1]) if l.startswith("GPUCHECK|")]
rows = [r + [""] * (6 - len(r)) for r in rows]
# Ratios ours/PyTorch for the timed rows that both sides report.
timed = {}
for sec, dev, what, val, tol, ok in rows:
    if sec in ("speed", "sample") and dev in ("ours", "torch"):
        timed.setdefault(what.replace("cifar10 ", "").replace("DDPM 1000 steps, 64 cifar10 images", "DDPM 1000 steps, 64 images"), {})[dev] = val
extra = []
for what, d in timed.items():
    if "ours" in d and "torch" in d:
        o, p = float(d["ours"].split()[0]), float(d["torch"].split()[0])
        unit = d["ours"].split()[1]
        target = unit == "s" and "sampl" not in what and "DDPM" not in what
        verdict = ("target met" if o / p <= 1.5 else "above target") if target else ""
        extra.append(["ratio", "ours/torch", what, f"{o / p:.2f}", "≤ 1.5 (aim ≤ 1.0)" if target else "", verdict])
rows += extra
w = [max(len(r[i]) for r in rows + [["part", "device", "what", "value (max rel err, time or size)", "tolerance", "result"]]) for i in range(6)]
head = ["part", "device", "what", "value (max rel err, time or size)", "tolerance", "result"]
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
fails = sum(r[5] == "FAIL" for r in rows)
print(f"\n{len([r for r in rows if r[5] == 'ok'])} passed, {fails} failed")
sys.exit(1 if fails else 0)
EOF
status=$?
echo "gpu-check: $((SECONDS - start)) s"
exit $status
