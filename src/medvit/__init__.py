"""medvit: medical-imaging pipelines on Kedro."""

import os

from medvit.console import quiet_third_parties

# Set before anything imports ultralytics, which every medvit import precedes:
# - ultralytics pip-installs missing optional packages at run time, and a locked uv environment
#   must not change under a running pipeline (a user can opt in with YOLO_AUTOINSTALL=true);
# - importing ultralytics sets OMP_NUM_THREADS=1 when it is unset, which would leave torch, and
#   every later model of the same Kedro run, on one thread: keep the default of every core.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
# conf/logging.yml imports medvit.console when Kedro configures logging, before Kedro loads
# its plugins, so these filters are in place before the first third-party warning.
quiet_third_parties()
