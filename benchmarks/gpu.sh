#!/usr/bin/env bash
# Everything this project measures on a CUDA GPU, in one go: the GPU tests, the CUDA determinism
# findings, profiles of one MSD step (bare and with the lagged AdaptiveBudget), the per-player
# gradients' vmap against loop, and the step-time benchmark. Logs go to $OUT (or ./gpu-out).
#   bash benchmarks/gpu.sh [tests] [determinism] [profile] [profile-ab] [gradients] [bench-msd]
#                          [bench-ab] [bench-all]
# With no argument it runs every part (their limits add up to 27 min). One device call may run
# 600 s; the parts' time limits add up in groups that fit:
#   tests bench-ab profile-ab (420 s) | gradients bench-msd (570 s) | profile bench-all (420 s)
#   | determinism (180 s)
# The first group alone decides issue 7's open goals (the MSD step and AdaptiveBudget's overhead,
# both `fast`): at most 7 min, plus the machine's start (a minute or more), in a 15-min lease.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/tests:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export CUBLAS_WORKSPACE_CONFIG=:4096:8
known="tests bench-ab profile-ab gradients bench-msd profile bench-all determinism"
parts=${*:-$known}
for part in $parts; do  # a mistyped part fails here, before any device time is spent
  case " $known " in *" $part "*) ;; *) echo "unknown part '$part'; parts: $known" >&2; exit 2 ;; esac
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$OUT/gpu.txt"
for part in $parts; do
  start=$(date +%s)
  case $part in
    tests) timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/tests.log" | tail -15 ;;
    determinism) timeout 180 python3 benchmarks/cuda_determinism.py 2>&1 | grep -v Warn | tee "$OUT/determinism.log" ;;
    profile) timeout 150 python3 benchmarks/profile_step.py --out "$OUT/profile.txt" 2>&1 | tail -45 ;;
    profile-ab) timeout 150 python3 benchmarks/profile_step.py --adaptive l2 --probe-steps 2 \
      --variants fast --out "$OUT/profile_ab.txt" 2>&1 | grep -v Warn | tail -45 ;;
    gradients) timeout 240 python3 benchmarks/player_gradients.py --model preact --batch 128 \
      --compile default,reduce-overhead --amp both 2>&1 | grep -v Warn | tee "$OUT/gradients.log" ;;
    bench-msd) timeout 330 python3 benchmarks/step_time.py --model preact --batch 128 --device cuda \
      --methods msd --adaptive none \
      --variants fp32,amp,amp+compile,amp+cudagraphs,amp+cudagraphs+cudnn-benchmark \
      --peak-tflops 800 --json "$OUT/bench_msd.json" 2>&1 | grep -v Warn | tee "$OUT/bench_msd.log" ;;
    bench-ab) timeout 150 python3 benchmarks/step_time.py --model preact --batch 128 --device cuda \
      --methods msd --adaptive none,l2 --variants fast --probe-steps 2 --no-baseline \
      --peak-tflops 800 --json "$OUT/bench_ab.json" 2>&1 | grep -v Warn | tee "$OUT/bench_ab.log" ;;
    bench-all) timeout 270 python3 benchmarks/step_time.py --model preact --batch 128 --device cuda \
      --methods max,avg --variants amp,fast --peak-tflops 800 \
      --json "$OUT/bench_all.json" 2>&1 | grep -v Warn | tee "$OUT/bench_all.log" ;;
  esac
  echo "== $part took $(( $(date +%s) - start )) s"
done
