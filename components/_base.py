"""The one way components are declared: the trainer image, nothing installed at run time.

The image (and, for the local runner, the project's environment) already holds ``distillery`` and the
pinned ``kfp``, so neither ``packages_to_install`` nor KFP's own per-task ``pip install kfp`` is needed:
a task starts without touching a package index, which a cluster without internet access requires.
"""

import functools

from kfp import dsl

from distillery.images import TRAINER_IMAGE

component = functools.partial(dsl.component, base_image=TRAINER_IMAGE, packages_to_install=[],
                              install_kfp_package=False)
