"""Package layout: the top-level folders are subpackages of ``rowgym`` (see README.md, "Layout").

Kept in setup.py (not pyproject) only because the package list is computed: every
subpackage under a mapped folder is found, so adding ``envs/newfamily/`` needs no edit here.
"""

from setuptools import find_packages, setup

FOLDERS = ["envs", "agents", "rollouts", "rewards", "trainers", "sandboxes", "evals"]

package_dir = {"rowgym": "rowgym", **{f"rowgym.{f}": f for f in FOLDERS}}
packages = ["rowgym", *find_packages(where=".", include=["rowgym.*"])]  # core subpackages, e.g. rowgym.store
for folder in FOLDERS:
    packages.append(f"rowgym.{folder}")
    packages += [f"rowgym.{folder}.{p}" for p in find_packages(where=folder)]

# the data files are named by package_data alone: include_package_data would also take every tracked
# file under a package, and warn that folders like envs/shop/templates look like unlisted packages
setup(package_dir=package_dir, packages=sorted(set(packages)), include_package_data=False,
      package_data={"": ["*.jinja", "*.html", "*.css", "*.json", "*.txt", "templates/*", "static/*"]})
