"""Tumour detection with ultralytics YOLO: the export it trains from, training, inference."""

import os

# Ultralytics pip-installs missing optional packages at run time; a locked uv environment must
# not change under a running pipeline. A user can still opt in with YOLO_AUTOINSTALL=true.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
