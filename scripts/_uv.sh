# Sourced by scripts/run and scripts/test: find uv, installing it from PyPI if missing.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  echo "installing uv from PyPI (python3 -m pip install --user uv)" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  UV=(python3 -m uv)
fi
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-system}"
