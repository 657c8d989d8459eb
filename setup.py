"""Build siteiso: the Cython and cffi extensions and the static C programs.

The C programs (holder, entry) and the Apache module mod_siteiso (with apxs,
from apache2-dev or httpd-devel) are compiled here with -Wall -Wextra -Werror
and shipped as package data in siteiso/_bin; `siteiso install` copies them
to their system places (the entry setuid root, the module to Apache's
module directory).
"""

import os
import shutil
import subprocess
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

PROGRAMS = {
    "siteiso-holder": ["native/holder.c", "native/mountplan.c", "native/seccomp.c",
                       "native/util.c"],
    "siteiso-enter": ["native/enter.c", "native/seccomp.c", "native/util.c"],
}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-std=gnu11",
          "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"]
APACHE_MODULE = "native/mod_siteiso.c"
MODULE_CFLAGS = ["-Wall", "-Wextra", "-Werror", "-std=gnu11"]


def build_apache_module(out: str) -> None:
    """mod_siteiso.so into `out`. Without apxs the module is not built: the
    vhost includes then fall back to `Options None` (no .htaccess rewrites
    for isolated sites; fails closed) and `siteiso doctor` says so."""
    apxs = shutil.which("apxs") or shutil.which("apxs2")
    if apxs is None:
        print("warning: apxs not found (apache2-dev / httpd-devel): "
              "mod_siteiso is not built")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # apxs (libtool) leaves its objects next to the source: build a copy.
        shutil.copy(APACHE_MODULE, tmp)
        cmd = [apxs, "-c", *(f"-Wc,{f}" for f in MODULE_CFLAGS),
               os.path.basename(APACHE_MODULE)]
        print(" ".join(cmd))
        subprocess.run(cmd, check=True, cwd=tmp)
        shutil.copyfile(os.path.join(tmp, ".libs", "mod_siteiso.so"),
                        os.path.join(out, "mod_siteiso.so"))


class BuildWithPrograms(build_py):
    """Compile the C programs into the package's _bin directory."""

    def run(self) -> None:
        super().run()
        out = os.path.join(self.build_lib, "siteiso", "_bin")
        os.makedirs(out, exist_ok=True)
        for name, sources in PROGRAMS.items():
            cmd = ["gcc", *CFLAGS, "-static", "-Inative", "-o",
                   os.path.join(out, name), *sources]
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
        build_apache_module(out)


setup(
    ext_modules=cythonize(
        [Extension("siteiso._procscan", ["native/procscan.pyx"]),
         Extension("siteiso._core", ["native/core.pyx"])],
        language_level=3,
    ),
    cffi_modules=["native/sys_build.py:ffibuilder"],
    cmdclass={"build_py": BuildWithPrograms},
)
