#!/usr/bin/env bash
# Set up fusefs in this checkout: system packages (as root, on Debian/Ubuntu), then .venv with fusefs
# installed in editable mode and the test tools.  Idempotent, and quick when already done:
#   scripts/setup.sh && .venv/bin/fusefs mount /mnt/fusefs
# Environment: PYTHON=/path/to/python3.11+ picks the interpreter for .venv (default: the system
# python3 if it is 3.11 or newer, else python3 on PATH).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.fusefs-setup"

# fuse3 (fusermount3) and libfuse3-dev + pkg-config + a C compiler + Python headers: pyfuse3 is built
# from source.  The rest are the tools the integration tests drive on a real mount.
packages=(
    fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv
    bindfs sqlite3 rsync git attr acl tar findutils util-linux passwd
)

# CPython's own test suites (test_os, test_shutil, ...) run on a mount by the integration tests; Debian
# ships them apart from the interpreter.
if command -v /usr/bin/python3 >/dev/null; then
    packages+=("$(/usr/bin/python3 -c 'import sys; print("libpython%d.%d-testsuite" % sys.version_info[:2])')")
fi

say() { echo "setup: $*" >&2; }

install_packages() {
    if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
        say "no apt-get here: install these yourself if missing: ${packages[*]}"
        return
    fi
    local missing=()
    for package in "${packages[@]}"; do
        # "install ok installed" only for a package that is fully installed.
        if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ "$(id -u)" != 0 ]]; then
        say "missing packages (run as root, or: sudo apt-get install ${missing[*]}): ${missing[*]}"
        return
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

choose_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
        return
    fi
    # The system interpreter first: a venv made from it works for every user of the machine (a
    # pyenv interpreter under /root would not be reachable by an unprivileged user).
    local candidate
    for candidate in /usr/bin/python3 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    say "no Python 3.11 or newer with the venv module found (set PYTHON=...)"
    exit 1
}

make_venv() {
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        return
    fi
    local python
    python="$(choose_python)"
    say "creating $venv with $python"
    rm -rf "$venv"
    "$python" -m venv "$venv"
}

install_project() {
    # Reinstall only when pyproject.toml changed since the last successful install.
    local want
    want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import fusefs.cli, pyfuse3' 2>/dev/null; then
        return
    fi
    say "installing fusefs and its dependencies into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo[test,bench]"
    echo "$want" >"$stamp"
}

# mount(8) runs /sbin/mount.fuse.fusefs for `mount -t fuse.fusefs` and fstab lines of that type.
install_mount_helper() {
    local helper=/sbin/mount.fuse.fusefs
    if [[ "$(id -u)" != 0 ]]; then
        say "not root: $helper not installed (as root: ln -sf $venv/bin/mount.fuse.fusefs $helper)"
        return
    fi
    if [[ "$(readlink "$helper" 2>/dev/null)" != "$venv/bin/mount.fuse.fusefs" ]]; then
        say "linking $helper to $venv/bin/mount.fuse.fusefs"
        ln -sf "$venv/bin/mount.fuse.fusefs" "$helper"
    fi
}

install_packages
make_venv
install_project
install_mount_helper
say "ready: $venv/bin/fusefs (try: $venv/bin/fusefs --help)"
