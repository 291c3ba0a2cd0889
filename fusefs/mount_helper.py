"""``mount.fuse.fusefs``: what mount(8) runs for ``mount -t fuse.fusefs NAME DIR -o OPTIONS`` and for an
/etc/fstab line of type ``fuse.fusefs``; it becomes ``fusefs mount --store URL --name NAME ... DIR``.

mount(8) calls ``mount.fuse.fusefs NAME DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]``.  The options are
fusefs's own mount options (``ro``, ``shared``, ``metrics=IP:PORT``, ...), four that become ``fusefs
mount`` arguments (``store=URL``, ``log_file=PATH``, ``log_level=LEVEL``, ``debug``), and mount(8)'s and
systemd's generic ones, which mean nothing to a FUSE daemon here or were acted on before the helper ran
(``_netdev`` orders the mount after the network, ``noauto`` keeps ``mount -a`` away): those are dropped.
``nofail`` is honoured here too: mount(8) would count a failed helper as a failed ``mount -a``, so with
``nofail`` the helper reports the failure on stderr and exits 0 (systemd excuses it by itself).  ``-s``
(sloppy) drops unknown options instead of refusing them."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from fusefs import cli
from fusefs.commands.common import MOUNT_OPTIONS, UsageError

#: Options with a ``fusefs mount`` argument of their own.
ARGUMENT_OPTIONS = {"store": "--store", "log_file": "--log-file", "log_level": "--log-level"}
#: Generic options of mount(8), fstab and systemd, meaningless to the daemon (FUSE mounts are nosuid
#: and nodev already; atime is the filesystem's own business).
GENERIC_OPTIONS = {
    "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail",
    "nosuid", "suid", "nodev", "dev", "noexec", "exec", "async", "relatime", "norelatime", "noatime",
    "atime", "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "silent", "loud",
}  # fmt: skip
#: Prefixes of options meant for mount(8) or systemd (``x-systemd.requires=...``, ``comment=...``).
GENERIC_PREFIXES = ("x-", "comment=")


@dataclass
class HelperCall:
    #: The ``fusefs`` arguments, or None for a fake mount (``-f``).
    arguments: list[str] | None
    nofail: bool
    #: ``-v``: let ``fusefs mount`` say what it mounted (a helper is otherwise silent, as mount(8) is).
    verbose: bool


def translate(argv: Sequence[str]) -> list[str] | None:
    """mount(8)'s arguments as ``fusefs`` arguments; None for a fake mount (``-f``)."""
    return parse(argv).arguments


def parse(argv: Sequence[str]) -> HelperCall:
    positional: list[str] = []
    options: list[str] = []
    flags = ""
    words = iter(argv)
    for word in words:
        if word in ("-o", "-t", "-N"):
            value = next(words, None)
            if value is None:
                raise UsageError(f"{word} needs a value")
            if word == "-o":
                options += [option for option in value.split(",") if option]
        elif word.startswith("-") and len(word) > 1:
            unknown = set(word[1:]) - set("sfnvw")
            if unknown:
                raise UsageError(f"unknown flag -{sorted(unknown)[0]}")
            flags += word[1:]
        else:
            positional.append(word)
    if len(positional) != 2:
        raise UsageError("expected NAME MOUNTPOINT (the filesystem's name and the directory)")
    nofail, verbose = "nofail" in options, "v" in flags
    if "f" in flags:
        return HelperCall(None, nofail, verbose)
    name, mountpoint = positional
    arguments, mount_options = ["mount", "--name", name.removeprefix("fusefs#")], []
    for option in options:
        key, equals, value = option.partition("=")
        if key in ARGUMENT_OPTIONS and equals:
            arguments += [ARGUMENT_OPTIONS[key], value]
        elif option == "debug":
            arguments.append("--debug")
        elif option in GENERIC_OPTIONS or option.startswith(GENERIC_PREFIXES):
            continue
        elif key in MOUNT_OPTIONS:
            mount_options.append(option)
        elif "s" not in flags:
            raise UsageError(f"unsupported mount option {option!r} (mount -s ignores unknown options)")
    if mount_options:
        arguments += ["-o", ",".join(mount_options)]
    return HelperCall([*arguments, mountpoint], nofail, verbose)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        call = parse(argv)
    except UsageError as error:
        print(f"mount.fuse.fusefs: error: {error}", file=sys.stderr)
        return 2
    if call.arguments is None:
        return 0
    with contextlib.nullcontext() if call.verbose else contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(call.arguments)  # a failure was printed as one line already
    if status and call.nofail:
        print("mount.fuse.fusefs: nofail: the failure above is not counted", file=sys.stderr)
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
