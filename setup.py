"""Maps the top-level architecture folders onto one import namespace.

`edge/`, `cloud/` and `models/` sit at the top of the repository so the layout shows the data
flow, but they install as `storelens.edge`, `storelens.cloud` and `storelens.models` so that
no generic top-level name (`models`!) collides with other distributions. pyproject's static
`packages.find` cannot express that mapping for sub-packages, hence this file.
"""

from setuptools import find_packages, setup

MAPPED = {"edge": "storelens.edge", "cloud": "storelens.cloud", "models": "storelens.models"}

packages = find_packages(include=["storelens", "storelens.*"])
package_dir = {"storelens": "storelens"}
for folder, name in MAPPED.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
