"""Maps the top-level architecture folders onto one import namespace.

`edge/`, `cloud/`, `models/` and `tools/` sit at the top of the repository so the layout shows
the data flow and the layering (benches, seeds and the demo in `tools/`, above the product),
but they install as `storelens.edge`, `storelens.cloud`, `storelens.models` and
`storelens.tools` so that no generic top-level name (`models`!) collides with other
distributions. pyproject's static `packages.find` cannot express that mapping for
sub-packages, hence this file.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {
    "edge": "storelens.edge",
    "cloud": "storelens.cloud",
    "models": "storelens.models",
    "tools": "storelens.tools",
}

packages = find_namespace_packages(include=["storelens", "storelens.*"], exclude=["*__pycache__*"])
package_dir = {"storelens": "storelens"}
for folder, name in MAPPED.items():
    package_dir[name] = folder
    packages.append(name)
    # Namespace discovery so data-only folders (web templates, static files) ship too.
    subs = find_namespace_packages(folder, exclude=["*__pycache__*"])
    packages += [f"{name}.{sub}" for sub in subs]

setup(packages=packages, package_dir=package_dir)
