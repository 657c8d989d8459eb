"""Build siteiso: the Cython and cffi extensions and the static C programs.

The C programs (holder, entry) are compiled here with -Wall -Wextra -Werror
and shipped as package data in siteiso/_bin; `siteiso install` copies them
to their system places (the entry setuid root).
"""

import os
import subprocess

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


setup(
    ext_modules=cythonize(
        [Extension("siteiso._procscan", ["native/procscan.pyx"]),
         Extension("siteiso._core", ["native/core.pyx"])],
        language_level=3,
    ),
    cffi_modules=["native/sys_build.py:ffibuilder"],
    cmdclass={"build_py": BuildWithPrograms},
)
