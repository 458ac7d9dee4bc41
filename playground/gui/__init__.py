"""The Qt desktop app (PySide6 + pyqtgraph) on top of playground.core."""
