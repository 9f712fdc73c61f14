"""Package discovery under the installed names.

The checkout keeps the design card's layout (core/, api/, watchers/, migrations/ at the top)
while an installed Strata imports them as strata.core, strata.api, … A hand-written
package list forgets new folders (a plain install once shipped without the command
modules), so every package below each top-level folder is discovered here instead.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("core", "api", "watchers", "migrations")

package_dir = {f"strata.{folder}": folder for folder in TOP_LEVEL}
packages = [
    f"strata.{folder}{'.' + sub if sub else ''}"
    for folder in TOP_LEVEL
    for sub in ("", *find_packages(folder))
]

setup(package_dir=package_dir, packages=packages)
