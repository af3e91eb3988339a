"""Tumour detection with ultralytics YOLO: the export it trains from, training, inference."""
