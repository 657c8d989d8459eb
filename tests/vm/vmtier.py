#!/usr/bin/env python3
"""The VM tier: run a command (by default part of siteiso's kernel tier) on
Debian 12's stock kernel under qemu, with nothing downloaded but Debian
packages through apt.

    kernel    linux-image-amd64's dependency, fetched with `apt-get download`,
              unpacked with `dpkg-deb -x`; the uncompressed vmlinux is cut out
              of the bzImage once and cached (no emulated decompression).
    initramfs busybox (static, from Debian) + the modules this kernel needs to
              mount the host's / (virtio-pci, 9p, overlay …), written as a
              newc cpio by this file; loaded with insmod in dependency order.
    root      the host's / over 9p, read-only (multidevs=remap), with a tmpfs
              overlay on top: the guest sees the installed product
              (/opt/siteiso, /usr/libexec/siteiso, /usr/local/sbin) and this
              checkout, and can change anything without touching the host.
    results   a second 9p share, read-write, on a fresh directory made for the
              run: the job script goes in, its exit status, output, `siteiso
              doctor` and a junit file come out. The console carries a status
              marker too, so a lost share still gives a result.
    network   none (-nodefaults, -nic none).

Everything is stdlib Python so it runs with any host python3. Used by
test_vm_tier.py and run.sh; `python3 vmtier.py --help` for the options.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
CACHE = Path(os.environ.get("SITEISO_VM_CACHE", HERE / ".cache"))

KERNEL_META = "linux-image-amd64"  # Debian 12: depends on linux-image-6.1.*-amd64

# Modules the guest needs before it can mount its root, by module name. Each
# is skipped when this kernel has it built in; dependencies are found from
# the modules' own .modinfo. The optional ones only make the guest faster.
MODULES_NEEDED = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
MODULES_OPTIONAL = ("virtio_rng",)

# The kernel-tier subset run by default: one test for each kernel mechanism
# the product leans on (views and mount propagation, openat2, pidfd setns,
# PID namespace and procfs, seccomp and user namespaces, Landlock, cgroups,
# unmount following), chosen to stay within ~5 minutes of emulation: a test
# costs 15-35 s in the guest (README.md has the measurements). --full (or
# SITEISO_VM_FULL=1) runs the three whole files instead (~15 minutes).
_E = "tests/kernel/test_escape.py::"
DEFAULT_TESTS = (
    _E + "test_sibling_files_do_not_exist",
    _E + "test_escape_through_proc_of_a_sibling_process",
    _E + "test_escape_through_symlink_and_dotdot",
    _E + "test_escape_through_mount_and_user_namespace",
    _E + "test_mount_added_later_on_a_shared_host_is_not_visible",
    _E + "test_sibling_unix_socket_is_unreachable",
    _E + "test_failed_namespace_entry_never_runs_the_command",
    _E + "test_seccomp_and_core_limit",
    _E + "test_sibling_abstract_unix_socket_is_unreachable",
    "tests/kernel/test_layouts.py::test_layout_case[3]",
    "tests/kernel/test_follow_unmount.py",
)
FULL_TESTS = (
    "tests/kernel/test_escape.py",
    "tests/kernel/test_layouts.py",
    "tests/kernel/test_follow_unmount.py",
)

MARKER = "SITEISO-VM-STATUS"
GUEST_DIR = "/vm"          # in the guest's root (tmpfs layer): busybox, stage 2
GUEST_OUT = "/vm/out"      # the results share


def log(msg: str) -> None:
    print(f"vm: {msg}", file=sys.stderr, flush=True)


class VMError(RuntimeError):
    """The VM tier could not be set up (not a failure inside the guest)."""


# ---------------------------------------------------------------------------
# Debian packages


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise VMError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stderr.strip()}")
    return r


def kernel_package_name() -> str:
    """The versioned package linux-image-amd64 depends on, as apt sees it."""
    if os.environ.get("SITEISO_VM_KERNEL_PKG"):
        return os.environ["SITEISO_VM_KERNEL_PKG"]
    out = _run(["apt-cache", "depends", "--important", KERNEL_META]).stdout
    for line in out.splitlines():
        m = re.match(r"\s*(?:\|)?Depends:\s*(linux-image-\S+)", line)
        if m and not m.group(1).startswith("<"):
            return m.group(1)
    raise VMError(f"apt-cache does not know what {KERNEL_META} depends on:\n{out}")


def apt_download(package: str, dest: Path) -> Path:
    """`apt-get download` one package into dest; the .deb's path."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.deb"))
    # As root into a directory _apt cannot write, apt would warn and download
    # unsandboxed anyway; say so explicitly instead.
    argv = ["apt-get", "download", "-q", package]
    if os.geteuid() == 0:
        argv[2:2] = ["-o", "APT::Sandbox::User=root"]
    _run(argv, cwd=dest)
    debs = sorted(set(dest.glob("*.deb")) - before) or sorted(
        dest.glob(f"{package}_*.deb"))
    if not debs:
        raise VMError(f"apt-get download {package} left no .deb in {dest}")
    return debs[-1]


# ---------------------------------------------------------------------------
# vmlinux out of a bzImage


def _decompressors() -> list[tuple[bytes, str]]:
    return [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x5d\x00\x00", "lzma"),
        (b"BZh", "bzip2"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x02\x21\x4c\x18", "lz4"),
        (b"\x89LZO", "lzo"),
    ]


def _decompress(kind: str, data: bytes) -> bytes:
    """Decompress one stream that may be followed by anything (the build
    appends the uncompressed size)."""
    if kind == "xz":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return d.decompress(data)
    if kind == "lzma":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        return d.decompress(data)
    if kind == "gzip":
        import zlib
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return z.decompress(data)
    if kind == "bzip2":
        import bz2
        return bz2.BZ2Decompressor().decompress(data)
    if kind in ("zstd", "lz4", "lzo"):
        tool = {"zstd": ["zstd", "-dc"], "lz4": ["lz4", "-dc"],
                "lzo": ["lzop", "-dc"]}[kind]
        if shutil.which(tool[0]) is None:
            raise VMError(f"the kernel is {kind}-compressed and {tool[0]} is missing")
        r = subprocess.run(tool, input=data, capture_output=True)
        return r.stdout  # trailing bytes make these tools complain; the ELF is out
    raise VMError(f"unknown compression {kind}")


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage.

    The x86 boot header (Documentation/x86/boot.rst) says where the payload
    is: setup_sects at 0x1f1, "HdrS" at 0x202, payload_offset/payload_length
    at 0x248/0x24c (protocol 2.08+), the payload starting after the setup
    sectors. If that fails, every compression magic in the file is tried."""
    candidates: list[int] = []
    if bzimage[0x202:0x206] == b"HdrS":
        version = struct.unpack_from("<H", bzimage, 0x206)[0]
        setup_sects = bzimage[0x1F1] or 4
        if version >= 0x208:
            payload_offset = struct.unpack_from("<I", bzimage, 0x248)[0]
            candidates.append((setup_sects + 1) * 512 + payload_offset)
    for magic, _kind in _decompressors():
        pos = bzimage.find(magic)
        while pos != -1:
            candidates.append(pos)
            pos = bzimage.find(magic, pos + 1)
    tried = set()
    for pos in candidates:
        if pos in tried:
            continue
        tried.add(pos)
        for magic, kind in _decompressors():
            if bzimage[pos:pos + len(magic)] != magic:
                continue
            try:
                out = _decompress(kind, bzimage[pos:])
            except (OSError, EOFError, lzma.LZMAError, ValueError):
                continue
            if out[:4] == b"\x7fELF":
                return out
    raise VMError("no ELF kernel found inside the bzImage")


# ---------------------------------------------------------------------------
# modules: dependencies from .modinfo


def _elf_section(data: bytes, wanted: str) -> bytes:
    """One section of an ELF64 little-endian file, by name."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise VMError("not an ELF64 little-endian module")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, stroff, strsize = header(shstrndx)
    names = data[stroff:stroff + strsize]
    for i in range(shnum):
        name, offset, size = header(i)
        end = names.index(b"\0", name)
        if names[name:end].decode() == wanted:
            return data[offset:offset + size]
    return b""


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        data = lzma.decompress(data)
    elif path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc", str(path)], capture_output=True,
                              check=True).stdout
    return data


def modinfo(path: Path) -> dict[str, list[str]]:
    info: dict[str, list[str]] = {}
    for item in _elf_section(_read_module(path), ".modinfo").split(b"\0"):
        if b"=" in item:
            k, _, v = item.decode(errors="replace").partition("=")
            info.setdefault(k, []).append(v)
    return info


def _modname(filename: str) -> str:
    return re.sub(r"\.ko(\.(xz|gz|zst))?$", "", filename).replace("-", "_")


def resolve_modules(moddir: Path, needed: tuple[str, ...],
                    optional: tuple[str, ...]) -> list[Path]:
    """Module files to insmod, dependencies first."""
    files: dict[str, Path] = {}
    for p in (moddir / "kernel").rglob("*.ko*"):
        files[_modname(p.name)] = p
    builtin: set[str] = set()
    bfile = moddir / "modules.builtin"
    if bfile.exists():
        builtin = {_modname(Path(line.strip()).name)
                   for line in bfile.read_text().splitlines() if line.strip()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            raise VMError(f"module dependency loop: {' -> '.join(chain + (name,))}")
        path = files.get(name)
        if path is None:
            raise VMError(f"module {name} is neither built in nor in {moddir}")
        for dep in ",".join(modinfo(path).get("depends", [""])).split(","):
            if dep:
                visit(dep, chain + (name,))
        seen.add(name)
        order.append(path)

    for name in needed:
        visit(name, ())
    for name in optional:
        if name.replace("-", "_") in files:
            visit(name, ())
    return order


# ---------------------------------------------------------------------------
# initramfs: a newc cpio


@dataclass
class Cpio:
    entries: list[tuple[str, int, bytes, int, int]] = field(default_factory=list)

    def dir(self, name: str, mode: int = 0o755) -> None:
        self.entries.append((name, 0o040000 | mode, b"", 0, 0))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.entries.append((name, 0o100000 | mode, data, 0, 0))

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.entries.append((name, 0o020000 | mode, b"", major, minor))

    def bytes(self) -> bytes:
        out = bytearray()

        def pad() -> None:
            out.extend(b"\0" * (-len(out) % 4))

        for ino, (name, mode, data, rmaj, rmin) in enumerate(
                [*self.entries, ("TRAILER!!!", 0, b"", 0, 0)], start=1):
            raw = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin,
                      len(raw), 0)
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.extend(raw)
            pad()
            out.extend(data)
            pad()
        out.extend(b"\0" * (-len(out) % 512))
        return bytes(out)


def _is_static_elf(path: Path) -> bool:
    data = path.read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    full = path.read_bytes()
    for i in range(phnum):
        if struct.unpack_from("<I", full, phoff + i * phentsize)[0] == 3:  # PT_INTERP
            return False
    return True


def busybox_binary() -> Path:
    """Debian's static busybox: the installed busybox-static, or the package
    fetched into the cache."""
    for cand in (os.environ.get("SITEISO_VM_BUSYBOX"), "/bin/busybox",
                 "/usr/bin/busybox"):
        if cand and Path(cand).is_file() and _is_static_elf(Path(cand)):
            return Path(cand)
    target = CACHE / "busybox" / "busybox"
    if target.is_file():
        return target
    log("fetching busybox-static with apt-get download")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        deb = apt_download("busybox-static", Path(tmp))
        _run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f"{tmp}/x/bin/busybox", target)
    return target


INIT = r"""#!/bin/busybox sh
# Stage 1 (initramfs): modules, the host's / read-only over 9p, a tmpfs
# overlay on top, the results share; then switch_root into it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
die() {
    echo "siteiso-vm: stage 1: $*"
    echo "@MARKER@=125"
    poweroff -f
}
echo "siteiso-vm: stage 1 up after $(cut -d' ' -f1 /proc/uptime)s"
for m in $(cat /modules/order); do
    insmod "/modules/$m" || die "insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=@MSIZE@
mount -t 9p -o "$opts,ro,cache=@CACHE@" hostroot /lower || die "9p root"
mount -t tmpfs -o mode=0755 layer /layer || die "tmpfs layer"
mkdir -p /layer/upper /layer/work
mount -t overlay -o lowerdir=/lower,upperdir=/layer/upper,workdir=/layer/work \
    root /newroot || die "overlay root"
mkdir -p /newroot@GUEST_DIR@
cp /bin/busybox /stage2 /newroot@GUEST_DIR@/
mkdir -p /newroot@GUEST_OUT@
mount -t 9p -o "$opts,rw,cache=none" vmout /newroot@GUEST_OUT@ || die "9p out"
for d in dev proc sys; do
    mount --move /$d /newroot/$d || die "move /$d"
done
exec switch_root /newroot @GUEST_DIR@/busybox sh @GUEST_DIR@/stage2
"""

STAGE2 = r"""# Stage 2: PID 1 on the overlay root. Runs the job, reports, powers off.
B=@GUEST_DIR@/busybox
OUT=@GUEST_OUT@
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Fresh /tmp and /run as after a boot, except where the host keeps what the
# job needs (a checkout in /tmp): the host lists them in $OUT/fresh.
while read -r dir mode; do
    $B mount -t tmpfs -o "mode=$mode" fresh "$dir"
done < $OUT/fresh
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$B mount -t tmpfs -o mode=1777 shm /dev/shm
$B mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
$B hostname siteiso-vm
$B ip link set lo up 2>/dev/null
echo "siteiso-vm: stage 2 up after $($B cut -d' ' -f1 /proc/uptime)s"
# The job's output goes to the results share and, live, to the console.
{ /bin/sh $OUT/job.sh < /dev/null; echo "$?" > $OUT/status; } 2>&1 \
    | $B tee $OUT/job.log
rc=$($B cat $OUT/status 2>/dev/null || echo 125)
echo "siteiso-vm: job finished after $($B cut -d' ' -f1 /proc/uptime)s"
echo "@MARKER@=$rc"
$B sync
$B umount $OUT
$B poweroff -f
"""


def _fill(text: str, **values: object) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    return text


@dataclass
class Kernel:
    name: str
    vmlinux: Path
    modules: list[Path]
    release: str


class _cache_lock:
    """One process at a time fetches and builds into the cache."""

    def __enter__(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(CACHE / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                          0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def prepare_kernel() -> Kernel:
    """The cached vmlinux and modules of the current Debian kernel package,
    fetched and unpacked on first use."""
    deb_env = os.environ.get("SITEISO_VM_KERNEL_DEB")
    try:
        name = Path(deb_env).name.split("_")[0] if deb_env else kernel_package_name()
    except VMError:
        cached = sorted((CACHE / "kernels").glob("*/ready"))
        if not cached:
            raise
        name = cached[-1].parent.name
        log(f"apt-cache failed; using the cached {name}")
    kdir = CACHE / "kernels" / name
    if not (kdir / "ready").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            if deb_env:
                deb = Path(deb_env)
            else:
                log(f"fetching {name} with apt-get download")
                deb = apt_download(name, Path(tmp))
            log(f"unpacking {deb.name}")
            _run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"])
            vmlinuz = sorted(Path(f"{tmp}/x/boot").glob("vmlinuz-*"))
            if not vmlinuz:
                raise VMError(f"{deb.name} holds no /boot/vmlinuz-*")
            release = vmlinuz[0].name[len("vmlinuz-"):]
            t = time.monotonic()
            elf = extract_vmlinux(vmlinuz[0].read_bytes())
            log(f"vmlinux extracted ({len(elf) >> 20} MiB) in "
                f"{time.monotonic() - t:.1f}s")
            moddir = next(Path(f"{tmp}/x").glob(f"*lib/modules/{release}"))
            mods = resolve_modules(moddir, MODULES_NEEDED, MODULES_OPTIONAL)
            if kdir.exists():
                shutil.rmtree(kdir)
            (kdir / "modules").mkdir(parents=True)
            (kdir / "vmlinux").write_bytes(elf)
            order = []
            for i, m in enumerate(mods):
                dest = f"{i:02d}-{m.name}"
                (kdir / "modules" / dest).write_bytes(_read_module(m))
                order.append(dest)
            (kdir / "modules" / "order").write_text("\n".join(order) + "\n")
            config = Path(f"{tmp}/x/boot/config-{release}")
            if config.exists():
                shutil.copy2(config, kdir / "config")
            (kdir / "release").write_text(release + "\n")
            (kdir / "ready").write_text(deb.name + "\n")
        # One kernel is kept: an older package's files go.
        for other in (CACHE / "kernels").iterdir():
            if other.name != name and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
    order = (kdir / "modules" / "order").read_text().split()
    return Kernel(name, kdir / "vmlinux", [kdir / "modules" / m for m in order],
                  (kdir / "release").read_text().strip())


def build_initramfs(kernel: Kernel, msize: int, cache_mode: str) -> Path:
    busybox = busybox_binary()
    init = _fill(INIT, MARKER=MARKER, MSIZE=msize, CACHE=cache_mode,
                 GUEST_DIR=GUEST_DIR, GUEST_OUT=GUEST_OUT)
    stage2 = _fill(STAGE2, MARKER=MARKER, GUEST_DIR=GUEST_DIR,
                   GUEST_OUT=GUEST_OUT)
    bb = busybox.read_bytes()
    h = hashlib.sha256()
    for part in (init.encode(), stage2.encode(), bb,
                 *(m.read_bytes() for m in kernel.modules)):
        h.update(hashlib.sha256(part).digest())
    target = CACHE / "kernels" / kernel.name / f"initramfs-{h.hexdigest()[:16]}.cpio"
    if target.exists():
        return target
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "lower", "layer", "newroot", "modules"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", bb, 0o755)
    c.file("init", init.encode(), 0o755)
    c.file("stage2", stage2.encode(), 0o644)
    order = []
    for m in kernel.modules:
        c.file(f"modules/{m.name}", m.read_bytes())
        order.append(m.name)
    c.file("modules/order", ("\n".join(order) + "\n").encode())
    for old in target.parent.glob("initramfs-*.cpio"):
        old.unlink()
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(c.bytes())
    tmp.rename(target)
    return target


# ---------------------------------------------------------------------------
# acceleration


def kvm_usable() -> tuple[bool, str]:
    """KVM only where the CPU advertises hardware virtualization and a VM can
    be created: /dev/kvm alone is not enough (here it exists, KVM_CREATE_VM
    works, and qemu still aborts setting MSRs). run_vm also falls back to TCG
    when a KVM guest does not reach stage 1."""
    try:
        flags = set()
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        flags = set()
    if not flags & {"vmx", "svm"}:
        return False, "no vmx/svm CPU flag"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    try:
        if fcntl.ioctl(fd, 0xAE00, 0) != 12:  # KVM_GET_API_VERSION
            return False, "unexpected KVM API version"
        vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
        os.close(vm)
    except OSError as e:
        return False, f"KVM_CREATE_VM: {e.strerror}"
    finally:
        os.close(fd)
    return True, "vmx/svm and KVM_CREATE_VM"


# ---------------------------------------------------------------------------
# the run


@dataclass
class Result:
    status: int | None          # the job's exit status; None if there is none
    accel: str
    boot_seconds: float | None  # qemu start → stage 2 running the job
    total_seconds: float
    console: str
    job_log: str
    doctor: str
    outdir: Path

    def tail(self, lines: int = 80) -> str:
        text = self.job_log or self.console
        return "\n".join(text.splitlines()[-lines:])

    def tests(self) -> dict[str, list[str]]:
        """Test ids by outcome, from the guest's junit file (plus the known
        gaps the guest plugin deselected)."""
        import xml.etree.ElementTree as ET
        out: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": [],
                                     "deselected": []}
        junit = self.outdir / "junit.xml"
        if junit.exists():
            try:
                root = ET.parse(junit).getroot()
            except ET.ParseError:
                root = None
            for case in (root.iter("testcase") if root is not None else ()):
                module = (case.get("classname") or "").replace(".", "/")
                name = f"{module}.py::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    out["failed"].append(name)
                elif case.find("skipped") is not None:
                    out["skipped"].append(name)
                else:
                    out["passed"].append(name)
        gaps = self.outdir / "known-gaps.txt"
        if gaps.exists():
            out["deselected"] = [g for g in gaps.read_text().splitlines() if g]
        return out

    def summary(self) -> str:
        boot = f"{self.boot_seconds:.1f}s" if self.boot_seconds is not None else "n/a"
        t = self.tests()
        lines = [f"accel {self.accel}, boot to job {boot}, total "
                 f"{self.total_seconds:.1f}s, guest status {self.status}, "
                 f"{len(t['passed'])} passed, {len(t['failed'])} failed, "
                 f"{len(t['skipped'])} skipped, {len(t['deselected'])} known gaps; "
                 f"output in {self.outdir}"]
        lines += [f"  FAILED {n}" for n in t["failed"]]
        lines += [f"  SKIPPED {n}" for n in t["skipped"]]
        lines += [f"  KNOWN GAP {n}" for n in t["deselected"]]
        return "\n".join(lines)


def default_job(tests: list[str], python: str, pytest_args: list[str]) -> str:
    """The guest's job: `siteiso doctor`, then pytest on the tests, with the
    guest plugin (known gaps of the kernel) and a junit file for the host."""
    q = shlex.quote
    env = {"HOME": "/root", "LANG": "C.UTF-8", "CI": os.environ.get("CI", ""),
           "PYTHONPATH": str(HERE), "SITEISO_VM_DOCTOR": f"{GUEST_OUT}/doctor.txt",
           "SITEISO_VM_GAPS": f"{GUEST_OUT}/known-gaps.txt",
           "SITEISO_VM_STRICT": os.environ.get("SITEISO_VM_STRICT", "")}
    if os.environ.get("SITEISO_CASES"):
        env["SITEISO_CASES"] = os.environ["SITEISO_CASES"]
    exports = " ".join(f"{k}={q(v)}" for k, v in env.items())
    return f"""set -u
cd {q(str(CHECKOUT))}
export {exports}
echo "== guest: $(uname -r), $(nproc) cpus, $(cut -d' ' -f1 /proc/uptime)s up"
echo "== siteiso doctor"
siteiso doctor > {GUEST_OUT}/doctor.txt 2>&1
echo "(exit $?)" >> {GUEST_OUT}/doctor.txt
cat {GUEST_OUT}/doctor.txt
echo "== pytest ({len(tests)} paths)"
exec {q(python)} -m pytest -p guest_plugin -p no:cacheprovider -v -ra \\
    --junitxml={GUEST_OUT}/junit.xml {' '.join(q(a) for a in pytest_args)} \\
    {' '.join(q(t) for t in tests)}
"""


def fresh_dirs(job: str) -> list[tuple[str, str]]:
    """/tmp and /run get an empty tmpfs in the guest, unless the job uses
    something the host keeps there (a CI checkout in /tmp, a venv, the
    cache): then the host's (read-only, under the tmpfs layer) stays."""
    used = [str(CHECKOUT), str(CACHE), *re.findall(r"(/(?:tmp|run)/[^\s'\"]*)", job)]
    out = []
    for d, mode in (("/tmp", "1777"), ("/run", "0755")):
        if not any(u == d or u.startswith(d + "/") for u in used):
            out.append((d, mode))
    return out


def run_vm(job: str, *, accel: str = "auto", memory: int = 2048, cpus: int = 0,
           timeout: float = 1200, msize: int = 262144, cache_mode: str = "loose",
           echo: bool = False) -> Result:
    """Boot the guest, run `job` (a shell script) in it, return the result."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMError("qemu-system-x86_64 is missing (Debian: qemu-system-x86)")
    with _cache_lock():
        kernel = prepare_kernel()
        initramfs = build_initramfs(kernel, msize, cache_mode)
    if accel == "auto":
        ok, why = kvm_usable()
        accel = "kvm" if ok else "tcg"
        log(f"accelerator {accel} ({why})")
    cpus = cpus or max(1, min(4, os.cpu_count() or 1))
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # Keep the last few runs' output; never one that may still be running.
    for old in sorted(runs.iterdir())[:-5]:
        if time.time() - old.stat().st_mtime > 6 * 3600:
            shutil.rmtree(old, ignore_errors=True)
    outdir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"),
                                   dir=runs))
    (outdir / "job.sh").write_text(job)
    (outdir / "fresh").write_text("".join(
        f"{d} {m}\n" for d, m in fresh_dirs(job)))
    first = _boot(qemu, kernel, initramfs, outdir, accel, memory, cpus,
                  timeout, echo, fallback=(accel == "kvm"))
    if first is None:  # KVM never reached stage 1: emulate instead
        kvm_log = outdir / "console-kvm.log"
        (outdir / "console.log").rename(kvm_log)
        last = kvm_log.read_text(errors="replace").strip().splitlines()[-3:]
        log("the guest did not start under KVM; retrying with TCG"
            + (": " + " / ".join(last) if last else ""))
        accel = "tcg"
        first = _boot(qemu, kernel, initramfs, outdir, accel, memory, cpus,
                      timeout, echo, fallback=False)
    assert first is not None
    return first


def _boot(qemu: str, kernel: Kernel, initramfs: Path, outdir: Path, accel: str,
          memory: int, cpus: int, timeout: float, echo: bool,
          fallback: bool) -> Result | None:
    cmdline = ("console=ttyS0 rdinit=/init panic=-1 oops=panic quiet loglevel=4 "
               "mitigations=off tsc=reliable no_timer_check random.trust_cpu=on "
               "8250.nr_uarts=1")
    argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none",
            "-vga", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
            "-m", str(memory), "-smp", str(cpus),
            "-kernel", str(kernel.vmlinux), "-initrd", str(initramfs),
            "-append", cmdline,
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,"
                      "multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=vmout,path={outdir},security_model=none,"
                      "multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=vmout,mount_tag=vmout",
            "-object", "rng-random,id=rng0,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=rng0"]
    if accel == "kvm":
        argv += ["-machine", "pc,accel=kvm", "-cpu", "host"]
    else:
        argv += ["-machine", "pc", "-accel", "tcg,thread=multi,tb-size=512",
                 "-cpu", os.environ.get("SITEISO_VM_CPU", "max")]
    (outdir / "qemu.argv").write_text(json.dumps(argv, indent=1) + "\n")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    console: list[str] = []
    boot: list[float] = []
    stage1 = threading.Event()
    status_seen: list[int] = []

    def reader() -> None:
        assert proc.stdout is not None
        with open(outdir / "console.log", "w") as logf:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").replace("\r", "")
                console.append(line)
                logf.write(line)
                logf.flush()
                if echo:
                    sys.stderr.write(line)
                if "siteiso-vm: stage 1 up" in line:
                    stage1.set()
                if "siteiso-vm: stage 2 up" in line:
                    boot.append(time.monotonic() - start)
                m = re.match(rf"{MARKER}=(\d+)", line.strip())
                if m:
                    status_seen.append(int(m.group(1)))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    timed_out = False
    try:
        if fallback:  # KVM: stage 1 within a minute, or emulate instead
            while not stage1.wait(0.5) and proc.poll() is None \
                    and time.monotonic() - start < 60:
                pass
            if not stage1.is_set():
                _stop(proc)
                t.join(5)
                return None
        proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(proc)
    t.join(10)
    total = time.monotonic() - start
    status: int | None = None
    sfile = outdir / "status"
    if sfile.exists() and sfile.read_text().strip().isdigit():
        status = int(sfile.read_text().strip())
    elif status_seen:
        status = status_seen[-1]
    if timed_out:
        console.append(f"\nvm: timed out after {timeout:.0f}s\n")
        status = None

    def read(name: str) -> str:
        p = outdir / name
        return p.read_text(errors="replace") if p.exists() else ""

    return Result(status, accel, boot[0] if boot else None, total,
                  "".join(console), read("job.log"), read("doctor.txt"), outdir)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the qemu this file started (by its own handle, nothing else)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------


def python_with_pytest() -> str:
    """A host python that has pytest (the guest sees the host's files): the
    checkout's .venv-test, the one running this, or python3 on PATH. Its
    sys.executable is used, so a pyenv shim becomes the real interpreter."""
    cands = [os.environ.get("SITEISO_VM_PYTHON"),
             str(CHECKOUT / ".venv-test" / "bin" / "python"), sys.executable,
             shutil.which("python3")]
    for c in cands:
        if not c or not Path(c).exists():
            continue
        r = subprocess.run([c, "-c", "import pytest, sys; print(sys.executable)"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    raise VMError("no python with pytest found (run ./setup.sh test, or set "
                  "SITEISO_VM_PYTHON)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run siteiso's kernel tier (or any command) on Debian 12's "
                    "stock kernel under qemu.")
    ap.add_argument("tests", nargs="*", help="test paths or node ids (default: a "
                    "subset of the kernel tier, see DEFAULT_TESTS)")
    ap.add_argument("--full", action="store_true",
                    default=os.environ.get("SITEISO_VM_FULL") == "1",
                    help="run " + ", ".join(FULL_TESTS) + " whole")
    ap.add_argument("--cmd", help="run this shell command in the guest instead "
                    "(cwd: the checkout)")
    ap.add_argument("--accel", default=os.environ.get("SITEISO_VM_ACCEL", "auto"),
                    choices=("auto", "kvm", "tcg"))
    ap.add_argument("--memory", type=int, default=2048, help="MiB")
    ap.add_argument("--cpus", type=int, default=0)
    ap.add_argument("--timeout", type=float,
                    default=float(os.environ.get("SITEISO_VM_TIMEOUT", 0)),
                    help="seconds for the whole run (default 900, 2700 with --full)")
    ap.add_argument("--cache-mode", default="loose", choices=("none", "loose",
                    "mmap"), help="9p cache of the read-only root")
    ap.add_argument("-k", dest="keyword", help="pytest -k")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="do not echo the guest console")
    ap.add_argument("--prepare", action="store_true",
                    help="fetch and build the kernel and initramfs only")
    args = ap.parse_args(argv)
    try:
        if args.prepare:
            with _cache_lock():
                k = prepare_kernel()
                i = build_initramfs(k, 262144, args.cache_mode)
            print(f"{k.name} ({k.release}): {k.vmlinux}\n{i}")
            return 0
        if args.cmd:
            job = f"set -u\ncd {shlex.quote(str(CHECKOUT))}\n" \
                  "export HOME=/root LANG=C.UTF-8\n" + args.cmd + "\n"
        else:
            extra = ["-k", args.keyword] if args.keyword else []
            tests = args.tests or list(FULL_TESTS if args.full else DEFAULT_TESTS)
            job = default_job(tests, python_with_pytest(), extra)
        timeout = args.timeout or (2700 if args.full else 900)
        r = run_vm(job, accel=args.accel, memory=args.memory, cpus=args.cpus,
                   timeout=timeout, cache_mode=args.cache_mode,
                   echo=not args.quiet)
    except VMError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 125
    log(r.summary())
    if r.status is None:
        print(r.tail(), file=sys.stderr)
        return 125
    return r.status


if __name__ == "__main__":
    sys.exit(main())
