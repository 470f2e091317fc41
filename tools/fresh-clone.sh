#!/usr/bin/env bash
# What a newcomer does, timed: clone this repository into a scratch folder, run .ci/run there
# (packages, npm ci with the addon build, the tests), then the README's first command
# (`npx difftune demo`, and `--quick` before it), and print each phase's wall time with the BLAS
# that served the matmuls. Every time figure in the README and the model cards comes from here.
#
#   tools/fresh-clone.sh [--no-demo] [--no-tests] [SCRATCH]      (as root: .ci/run installs packages)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
demo=1; tests=1; scratch=""
for a in "$@"; do
  case "$a" in
    --no-demo) demo=0 ;;
    --no-tests) tests=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) scratch="$a" ;;
  esac
done
scratch="${scratch:-$(mktemp -d /tmp/difftune-fresh.XXXXXX)}"
clone="$scratch/difftune"
log="$scratch/fresh-clone.log"
git clone -q "$repo" "$clone"
# CI runs with a copy of shared/ (the golden fixtures) beside the clone; so does this.
if [ -d "$repo/../shared" ] && [ ! -e "$scratch/shared" ]; then ln -s "$(cd "$repo/../shared" && pwd)" "$scratch/shared"; fi
cd "$clone"
results=()
timed() {
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  set +e
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local t1; t1=$(date +%s.%N)
  results+=("$(awk -v n="$name" -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN { printf "%-16s %8.1f s  exit %s", n, b - a, rc }')")
  if [ "$rc" != 0 ]; then printf '%s\n' "${results[@]}"; exit "$rc"; fi
}
if [ "$tests" = 1 ]; then
  timed ".ci/run" env CI=true bash .ci/run
else
  timed "npm ci" npm ci --no-audit --no-fund
fi
if [ "$demo" = 1 ]; then
  timed "demo --quick" npx difftune demo --quick --out "$scratch/demo-quick"
  timed "demo" npx difftune demo --out "$scratch/demo"
fi
echo
echo "fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $clone, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME")"
npx difftune info | grep -E '^(BLAS|CPU|matmul)'
grep -E '^ci: phase' "$log" || true
printf '%s\n' "${results[@]}"
