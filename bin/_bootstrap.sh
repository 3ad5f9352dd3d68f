# Sourced by bin/run and bin/test: a virtual environment with the pinned requirements.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python 3.12 or newer is needed (set PYTHON=/path/to/python3.12)." >&2
  return 1
}

VENV="${VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating the virtual environment in $VENV"
  "$(find_python)" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when a requirements file changed since the last install.
requirements_file="${1:-requirements.txt}"
stamp="$VENV/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$requirements_file")"
if [ ! -f "$stamp" ]; then
  echo "==> installing $requirements_file"
  "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$requirements_file"
  touch "$stamp"
fi
