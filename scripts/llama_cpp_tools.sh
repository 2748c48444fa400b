#!/usr/bin/env bash
# scripts/llama_cpp_tools.sh [VERSION]: fetch llama.cpp's HF → GGUF converter
# (convert_hf_to_gguf.py with its own gguf-py/) matched to the installed
# llama-cpp-python. The converter is not in that package's wheel, only in its
# source distribution, so the sdist is downloaded once with pip and unpacked to
#   ${INFEROPT_CACHE_DIR:-~/.cache/inferopt}/llama.cpp/<version>/
# (the folder holding vendor/llama.cpp). Idempotent: nothing is fetched when the
# folder is complete. VERSION defaults to the llama-cpp-python installed in
# .venv; without one installed this does nothing. Never committed to the repo.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

PYTHON="$VENV/bin/python"
[ -x "$PYTHON" ] || PYTHON="${PYTHON_FALLBACK:-python3}"
version="${1:-}"
if [ -z "$version" ]; then
  version="$("$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.version("llama-cpp-python"))
except m.PackageNotFoundError:
    pass')"
fi
if [ -z "$version" ]; then
  log "llama-cpp-python is not installed: skipping the GGUF converter"
  exit 0
fi

cache="${INFEROPT_CACHE_DIR:-$HOME/.cache/inferopt}/llama.cpp/$version"
converter="$cache/vendor/llama.cpp/convert_hf_to_gguf.py"
if [ -f "$converter" ] && [ -f "$cache/vendor/llama.cpp/gguf-py/gguf/__init__.py" ]; then
  exit 0
fi

log "fetching llama.cpp's converter from the llama-cpp-python $version source distribution"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/inferopt-llama-cpp.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
# --no-binary for this package only: its build dependencies (needed to read its
# metadata) still come as wheels, which takes seconds instead of minutes.
"$PYTHON" -m pip download --disable-pip-version-check -q --no-deps --no-binary llama-cpp-python \
  "llama-cpp-python==$version" -d "$scratch"
archive="$(find "$scratch" -maxdepth 1 -name 'llama_cpp_python-*.tar.gz' | head -n 1)"
[ -n "$archive" ] || die "pip download gave no llama_cpp_python-$version sdist"
mkdir -p "$scratch/unpacked"
# Only what the converter needs: the script, its gguf-py package and its helper modules.
tar -xzf "$archive" -C "$scratch/unpacked" --wildcards \
  '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
  '*/vendor/llama.cpp/gguf-py/*' \
  '*/vendor/llama.cpp/conversion/*' 2>/dev/null ||
  tar -xzf "$archive" -C "$scratch/unpacked" --wildcards \
    '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/gguf-py/*'
top="$(find "$scratch/unpacked" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
[ -f "$top/vendor/llama.cpp/convert_hf_to_gguf.py" ] || die "the sdist has no vendor/llama.cpp/convert_hf_to_gguf.py"
mkdir -p "$(dirname "$cache")"
rm -rf "$cache.partial"
mv "$top" "$cache.partial"
rm -rf "$cache"
mv "$cache.partial" "$cache" # publish complete or not at all
log "GGUF converter ready: $converter"
