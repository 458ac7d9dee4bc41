"""Pick a model from the ones this machine holds (core/formats/model_scan.py): name, format,
parameters, size, whether the fast path applies (and why not), whether it fits in the
RAM free now. The scan runs in a thread (headers only, but a home folder is large);
double-click or Use puts the model's fastest faithful spec into the Model field."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.core.formats import model_scan

COLUMNS = ("Model", "Format", "Parameters", "Size", "Fast path", "Fits in free RAM", "Where")


class _Scan(QObject):
    done = Signal(list, float)
    failed = Signal(str)


class ModelPicker(QDialog):
    """``chosen`` carries the picked model's path and the quant that suits it."""

    chosen = Signal(str, str)

    def __init__(self, parent: QWidget | None = None, roots=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models on this machine")
        screen = (parent.screen() if parent is not None else None) or self.screen()
        free = screen.availableGeometry()  # larger screens get room for the paths
        self.resize(max(900, min(1500, int(free.width() * 0.8))),
                    max(420, min(800, int(free.height() * 0.6))))
        layout = QVBoxLayout(self)
        try:  # found once: shown here and scanned below
            where = roots if roots is not None else model_scan.default_roots()
        except OSError:
            where = []
        self.status = QLabel("Looking in " + ", ".join(str(r) for r in where) + " …")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self._use())
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use = buttons.addButton("Use", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use.setEnabled(False)
        buttons.accepted.connect(self._use)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.found: list[model_scan.FoundModel] = []
        self._scan = _Scan(self)
        self._scan.done.connect(self._show)
        self._scan.failed.connect(self.status.setText)
        done, failed = self._scan.done, self._scan.failed

        def run() -> None:
            try:
                done.emit(model_scan.scan(where), model_scan.free_mb())
            except Exception as exc:  # the dialog says so instead of "Looking in" forever
                failed.emit(f"The scan failed: {type(exc).__name__}: {exc}")

        threading.Thread(target=run, daemon=True, name="model-scan").start()

    def _show(self, found: list, free: float) -> None:
        self.found = found
        self.table.setRowCount(len(found))
        for row, m in enumerate(found):
            fits = m.fits(free)
            cells = (m.name, m.fmt if m.kind == "gguf" else f"folder ({m.fmt})",
                     model_scan.human_params(m.params), f"{m.size_mb / 1e3:.2f} GB",
                     m.problem or ("yes" if m.fast is None else "no"),
                     "?" if fits is None else (f"yes (needs ~{m.need_mb / 1e3:.1f} GB)" if fits
                                               else f"no: needs ~{m.need_mb / 1e3:.1f} GB"),
                     str(m.path))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tip = m.problem or m.fast or "gguf-native on the one-call native step"
                item.setToolTip(tip if col == 4 else str(m.path))
                if col == 5 and fits is False:
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(row, col, item)
        self.status.setText(f"{len(found)} models found; {free / 1e3:.1f} GB of RAM free now. "
                            "Fast path: the file's own blocks on the one-call native step "
                            "(hover for why not)." if found else
                            "No GGUF files or model folders found in the usual places; type a "
                            "path in the Model field instead.")
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self.use.setEnabled(bool(self.table.selectedItems())))

    def _use(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if not rows:
            return
        m = self.found[rows.pop()]
        if m.problem:
            self.status.setText(f"{m.name}: {m.problem}")
            return
        self.chosen.emit(str(m.path), "gguf-native" if m.kind == "gguf" and m.fast is None
                         else "none")
        self.accept()
