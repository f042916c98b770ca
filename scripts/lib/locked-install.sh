# Installs from the lock files in requirements/ (scripts/lock makes them): exact versions, each file
# checked against its sha256, wheels only (a source build would fetch build tools no lock pins).
# pip installs build.txt (pip, uv, the build backend); uv installs the rest, in less than half of
# pip's time (bench/results/lock-installs-2026-12-07.md), compiling the bytecode as pip does: this
# machine sets PYTHONDONTWRITEBYTECODE, so without it every process would compile TensorFlow again.
# uv checks TLS against the system's CA bundle, as pip does (its default is a built-in one).
# Sourced, not executed.
LOCKED=(--require-hashes --only-binary :all:)
LOCKS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../requirements" && pwd)

# install_build_tools VENV: pip, uv and the build backend from build.txt, with VENV's pip.
install_build_tools() {
  "$1/bin/pip" install -q "${LOCKED[@]}" -r "$LOCKS_DIR/build.txt"
}

# uv_install VENV ARGS...: `uv pip install ARGS` into VENV, with VENV's uv.
uv_install() {
  local venv=$1; shift
  SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} \
    "$venv/bin/uv" pip install -q --compile-bytecode --python "$venv/bin/python" "$@"
}
