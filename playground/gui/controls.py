"""The model and optimization panel: every control maps onto one RunConfig key."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from playground.core.config import (
    BACKENDS,
    KV_TYPES,
    LLAMACPP_QUANTS,
    ONNX_QUANTS,
    PRUNE_METHODS,
    QAT_QUANTS,
    QUANT_GROUPS,
    QUANTS,
    TORCH_QUANTS,
    RunConfig,
)
from playground.gui import file_dialogs

DEVICES = ("cpu", "auto", "cuda", "mps")
# What each quantization does to weights and activations; its measured cost in quality
# (KL, top-1 against the baseline) is in the Compare tab and BENCHMARKS.md.
QUANT_TIPS = {
    "none": "float32 weights and activations: the baseline",
    "fp16": "weights and activations in float16 (GPU; often slower on a CPU)",
    "bf16": "weights and activations in bfloat16: half the memory, close to float32",
    "int8-dynamic": "int8 weights AND int8 activations (one scale per tensor, per call): "
                    "fast, but loses much quality on small models — check its KL",
    "int8-weight": "int8 weights, one scale per output channel; activations stay "
                   "high precision: near-lossless, about 3x smaller than float32",
    "int4-weight": "int4 weights in groups (Quant group) with a scale and zero each; "
                   "activations stay high precision: smallest and fastest, some quality cost",
    "gguf-native": "a GGUF model's own quantized blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, "
                   "Q5_K, Q6_K) and F16/BF16 matrices computed as they are: the file's exact "
                   "weights, loaded without a float copy (model=default or a .gguf); any other "
                   "type (Q2_K, Q3_K, IQ*) is computed in float32 and named in the model panel",
    "bnb-8bit": "bitsandbytes LLM.int8 weights (slower than float32 on a CPU)",
    "q8_0": "llama.cpp: the GGUF re-quantized to Q8_0 by llama.cpp's quantizer (once, cached)",
    "q4_0": "llama.cpp: re-quantized to Q4_0 (once, cached); from a quantized file the "
            "rounding errors add up: compare it with the file's own blocks (none)",
    "q4_k_m": "llama.cpp: re-quantized to Q4_K_M (once, cached)",
    "q5_k_m": "llama.cpp: re-quantized to Q5_K_M (once, cached)",
    "q6_k": "llama.cpp: re-quantized to Q6_K (once, cached)",
    "bnb-4bit-nf4": "bitsandbytes 4-bit NormalFloat weights, float compute",
    "bnb-4bit-fp4": "bitsandbytes 4-bit float weights, float compute",
}


def auto_threads_text() -> str:
    """What threads=0 runs in the app, said where it is chosen (the worker's policy)."""
    import os

    from playground.core.optimize.device import leave_a_core

    cores = os.cpu_count() or 1
    auto = leave_a_core(RunConfig()).threads
    return f"auto: {auto} of {cores} cores" + (" (1 for the window)" if auto < cores else "")


class WheelGuard(QObject):
    """The mouse wheel over a spin box, slider or list that does not have the focus
    scrolls the panel instead of changing the value: scrolling the controls used to
    change Max new tokens or Seed under the pointer without anyone noticing."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and not watched.hasFocus():
            event.ignore()  # passes to the parent: the scroll area scrolls
            return True
        return False


class ControlsPanel(QWidget):
    apply_requested = Signal()

    def __init__(self, present_devices: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        self.model = QLineEdit("default")
        self.model.setToolTip("default, a local folder, a .gguf file or a hub id in the HF cache")
        form.addRow("Model", self.model)
        buttons = QHBoxLayout()
        self.open_folder = QPushButton("Folder…")
        self.open_gguf = QPushButton("GGUF…")
        self.open_folder.clicked.connect(self._pick_folder)
        self.open_gguf.clicked.connect(self._pick_gguf)
        self.browse = QPushButton("Models…")
        self.browse.setToolTip("the GGUF files and model folders on this machine, with size, "
                               "format, parameters, fast path and whether each fits in free RAM")
        self.browse.clicked.connect(lambda: self.pick_model())  # clicked(bool) is not roots
        buttons.addWidget(self.browse)
        buttons.addWidget(self.open_folder)
        buttons.addWidget(self.open_gguf)
        form.addRow(buttons)
        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText("none: the local model above")
        self.endpoint.setToolTip("An OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI, "
                                 "playground serve…), e.g. http://host:8000/v1: chat and the "
                                 "charts run against it. Its API key is read from the "
                                 "environment variable OPENAI_API_KEY, never stored.")
        self.endpoint.textChanged.connect(self._sync_enabled)
        form.addRow("Endpoint", self.endpoint)
        self.endpoint_model = QLineEdit()
        self.endpoint_model.setPlaceholderText("the server's first model")
        form.addRow("Endpoint model", self.endpoint_model)
        self.model_info = QLabel("not loaded")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        layout.addWidget(model_box)

        opt_box = QGroupBox("Optimizations")
        self.opt_box = opt_box
        opt = QFormLayout(opt_box)
        self.backend = QComboBox()
        self.backend.addItems(BACKENDS)
        self.backend.setToolTip("torch: every optimization below; onnxruntime: the model "
                                "exported once to ONNX and run by ONNX Runtime GenAI "
                                "(fp32, int8-weight, int4-weight). Its int4 is symmetric, "
                                "with int8 activations, and quantizes the embeddings too: "
                                "it loses more than torch's int4-weight (see its KL in "
                                "Compare); llamacpp: a GGUF's own blocks on llama.cpp "
                                "(llama-cpp-python, make llamacpp)")
        from playground.core.backends.llamacpp_engine import available

        self.llamacpp_reason = available()
        if self.llamacpp_reason:  # offered, disabled, with the command that builds it
            item = self.backend.model().item(BACKENDS.index("llamacpp"))
            item.setEnabled(False)
            item.setToolTip(self.llamacpp_reason)
        self.backend.currentTextChanged.connect(self._sync_enabled)
        opt.addRow("Backend", self.backend)
        self.quant = QComboBox()
        self.quant.addItems(QUANTS)
        for i, name in enumerate(QUANTS):
            self.quant.setItemData(i, QUANT_TIPS.get(name, ""), Qt.ItemDataRole.ToolTipRole)
        self.quant.currentTextChanged.connect(self._sync_enabled)
        opt.addRow("Quantization", self.quant)
        self.quant_group = QComboBox()
        self.quant_group.addItems([str(g) for g in QUANT_GROUPS])
        self.quant_group.setToolTip("int4-weight: inputs that share one scale and zero "
                                    "(smaller groups: closer to the model, slightly larger)")
        opt.addRow("Quant group", self.quant_group)
        self.qat = QCheckBox("QAT weights")
        self.quant_group.currentTextChanged.connect(self.refresh_qat)
        self.quant.currentTextChanged.connect(self.refresh_qat)
        opt.addRow(self.qat)
        prune_row = QHBoxLayout()
        self.prune = QSlider(Qt.Orientation.Horizontal)
        self.prune.setRange(0, 90)
        self.prune.setSingleStep(5)
        self.prune.setPageStep(10)
        self.prune_label = QLabel("0%")
        self.prune.valueChanged.connect(lambda v: self.prune_label.setText(f"{v}%"))
        prune_row.addWidget(self.prune)
        prune_row.addWidget(self.prune_label)
        opt.addRow("Pruning", prune_row)
        self.prune_method = QComboBox()
        self.prune_method.addItems(PRUNE_METHODS)
        opt.addRow("Prune method", self.prune_method)
        self.distilled = QCheckBox("Distilled student")
        self.speculative = QCheckBox("Speculative (student drafts)")
        self.distilled.toggled.connect(self._sync_enabled)
        self.speculative.toggled.connect(self._sync_enabled)
        opt.addRow(self.distilled)
        opt.addRow(self.speculative)
        self.model.editingFinished.connect(self.refresh_student)
        self.model.editingFinished.connect(self.refresh_qat)
        self.device = QComboBox()
        for name in DEVICES:
            self.device.addItem(name)
            if name not in present_devices and name != "auto":
                item = self.device.model().item(self.device.count() - 1)
                item.setEnabled(False)
                item.setToolTip(f"{name} is not present on this machine "
                                f"(present: {', '.join(present_devices)})")
        opt.addRow("Device", self.device)
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText(auto_threads_text())
        opt.addRow("Threads", self.threads)
        self.kv_cache = QCheckBox("KV cache")
        self.prefix_cache = QCheckBox("Prefix cache (across turns)")
        self.response_cache = QCheckBox("Response cache (repeats)")
        self.response_cache.setToolTip("an exact repeat of a conversation with the same config "
                                       "is answered from memory (replayed, marked as a hit)")
        self.compile = QCheckBox("torch.compile")
        self.kv_cache.toggled.connect(self._sync_enabled)
        for box in (self.kv_cache, self.prefix_cache, self.response_cache, self.compile):
            opt.addRow(box)
        # llama.cpp's own settings (backend=llamacpp), two compact rows
        self.kv_type = QComboBox()
        self.kv_type.addItems(KV_TYPES)
        self.kv_type.setToolTip("the KV cache's precision; q8_0 and q4_0 need flash attention. "
                                "At a 4k context on the default model: q8_0 half the memory "
                                "for KL 0.004; q4_0 a quarter, but KL 0.057 (top-1 86%) and "
                                "slower there (BENCHMARKS.md)")
        self.flash_attn = QCheckBox("Flash attention")
        kv_row = QHBoxLayout()
        kv_row.addWidget(self.kv_type)
        kv_row.addWidget(self.flash_attn)
        opt.addRow("llama.cpp KV", kv_row)
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("all")
        self.gpu_layers.setToolTip("layers offloaded to the GPU (device=cuda or mps, with a "
                                   "GPU build of llama-cpp-python); the rest stay on the CPU")
        self.batch = QSpinBox()
        self.batch.setRange(1, 8192)
        self.batch.setToolTip("prompt tokens llama.cpp computes a pass")
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(QLabel("GPU layers"))
        gpu_row.addWidget(self.gpu_layers)
        gpu_row.addWidget(QLabel("Batch"))
        gpu_row.addWidget(self.batch)
        opt.addRow("llama.cpp", gpu_row)
        self.kv_type.currentTextChanged.connect(self._sync_enabled)
        self.device.currentTextChanged.connect(self._sync_enabled)
        layout.addWidget(opt_box)

        sample_box = QGroupBox("Sampling")
        sample = QFormLayout(sample_box)
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setRange(1, 8192)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setSpecialValueText("0 (greedy)")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        sample.addRow("Max new tokens", self.max_new_tokens)
        sample.addRow("Temperature", self.temperature)
        sample.addRow("Top-p", self.top_p)
        sample.addRow("Seed", self.seed)
        layout.addWidget(sample_box)

        self.apply = QPushButton("Load / apply")
        self.apply.clicked.connect(self.apply_requested)
        layout.addWidget(self.apply)
        self.busy_reason = QLabel("")
        self.busy_reason.setWordWrap(True)
        layout.addWidget(self.busy_reason)
        layout.addStretch(1)
        self.wheel_guard = WheelGuard(self)
        kinds = (QComboBox, QSpinBox, QDoubleSpinBox, QSlider)
        for widget in [w for kind in kinds for w in self.findChildren(kind)]:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel does not focus it
            widget.installEventFilter(self.wheel_guard)
        self.set_config(RunConfig())

    # -- RunConfig <-> widgets -----------------------------------------------
    def config(self) -> RunConfig:
        """The RunConfig the controls show (raises ConfigError for a bad combination)."""
        endpoint = self.endpoint.text().strip()
        if endpoint:  # a remote server runs its own model: only sampling applies
            return RunConfig(
                endpoint=endpoint, endpoint_model=self.endpoint_model.text().strip(),
                max_new_tokens=self.max_new_tokens.value(),
                temperature=round(self.temperature.value(), 2),
                top_p=round(self.top_p.value(), 2), seed=self.seed.value())
        return RunConfig(
            model=self.model.text().strip() or "default",
            variant="distilled" if self.distilled.isChecked() else "base",
            draft="distilled" if self.speculative.isChecked() else "none",
            quant=self.quant.currentText(),
            backend=self.backend.currentText(),
            quant_group=int(self.quant_group.currentText()),
            qat=self.qat.isChecked() and self.qat.isEnabled(),
            prune=self.prune.value() / 100.0,
            prune_method=self.prune_method.currentText(),
            device=self.device.currentText(),
            threads=self.threads.value(),
            kv_cache=self.kv_cache.isChecked(),
            prefix_cache=self.prefix_cache.isChecked() and self.kv_cache.isChecked(),
            response_cache=self.response_cache.isChecked(),
            compile=self.compile.isChecked(),
            max_new_tokens=self.max_new_tokens.value(),
            temperature=round(self.temperature.value(), 2),
            top_p=round(self.top_p.value(), 2),
            seed=self.seed.value(),
            **self._llamacpp_settings(),
        )

    def _llamacpp_settings(self) -> dict:
        """llama.cpp's keys where it runs; elsewhere their defaults (other backends refuse
        them)."""
        if self.backend.currentText() != "llamacpp":
            return {}
        gpu = self.gpu_layers.value() if self.gpu_layers.isEnabled() else 0
        return dict(kv_type=self.kv_type.currentText(), flash_attn=self.flash_attn.isChecked(),
                    gpu_layers=gpu, batch=self.batch.value())

    def set_config(self, cfg: RunConfig) -> None:
        self.endpoint.setText(cfg.endpoint)
        self.endpoint_model.setText(cfg.endpoint_model)
        self.model.setText(cfg.model)
        self.refresh_student()
        self.distilled.setChecked(cfg.variant == "distilled")
        self.speculative.setChecked(cfg.draft == "distilled")
        self.backend.setCurrentText(cfg.backend)
        self.quant.setCurrentText(cfg.quant)
        self.quant_group.setCurrentText(str(cfg.quant_group))
        self.refresh_qat()
        self.qat.setChecked(cfg.qat)
        self.prune.setValue(round(cfg.prune * 100))
        self.prune_method.setCurrentText(cfg.prune_method)
        self.device.setCurrentText(cfg.device if cfg.device in DEVICES else "cpu")
        self.threads.setValue(cfg.threads)
        self.kv_cache.setChecked(cfg.kv_cache)
        self.prefix_cache.setChecked(cfg.prefix_cache)
        self.response_cache.setChecked(cfg.response_cache)
        self.compile.setChecked(cfg.compile)
        self.max_new_tokens.setValue(cfg.max_new_tokens)
        self.temperature.setValue(cfg.temperature)
        self.top_p.setValue(cfg.top_p)
        self.seed.setValue(cfg.seed)
        self.kv_type.setCurrentText(cfg.kv_type)
        self.flash_attn.setChecked(cfg.flash_attn)
        self.gpu_layers.setValue(cfg.gpu_layers)
        self.batch.setValue(cfg.batch)
        self._sync_enabled()

    def set_busy(self, reason: str | None) -> None:
        """Disable every control while the worker is busy, saying why."""
        for child in self.findChildren(QWidget):
            if child is not self.busy_reason and child is not self.model_info:
                child.setEnabled(reason is None)
        self.busy_reason.setText(f"Controls locked: {reason}" if reason else "")
        if reason is None:
            self.apply.setText("Load / apply")
            self.apply.setToolTip("")
            self._sync_enabled()

    def offer_stop(self, what: str) -> None:
        """While a load runs, its button stops it (the other controls stay locked)."""
        self.apply.setText(f"Stop {what}")
        self.apply.setToolTip("stops at the load's next stage; no model is loaded then")
        self.apply.setEnabled(True)

    def refresh_student(self) -> None:
        """Enable the student toggles only when a student is available for the model."""
        from playground.core import registry
        from playground.core.models import ModelError

        try:
            student = registry.student_for(self.model.text().strip() or "default")
            self.student_reason = None
            tip = f"student: {student}"
        except ModelError as exc:
            self.student_reason = str(exc)
            tip = str(exc)
        for box in (self.distilled, self.speculative):
            box.setToolTip(tip)
        self._sync_enabled()

    def refresh_qat(self) -> None:
        """Enable 'QAT weights' only where `playground qat` trained weights for this model,
        quant and group; the tooltip says which command builds them otherwise."""
        from playground.core.quant import qat

        quant = self.quant.currentText()
        self.qat_reason = f"QAT trains for {', '.join(QAT_QUANTS)}, not {quant}"
        if quant in QAT_QUANTS:
            probe = RunConfig(model=self.model.text().strip() or "default", quant=quant,
                              quant_group=int(self.quant_group.currentText()))
            try:
                qat.trained_for(probe)
                self.qat_reason = None
            except qat.QatMissing as exc:
                self.qat_reason = str(exc)
        self.qat.setToolTip(self.qat_reason or "use the weights trained with QAT for this "
                            "quantization (playground qat)")
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        remote = bool(self.endpoint.text().strip())
        why = "an endpoint runs its own model: clear Endpoint to use these" if remote else ""
        local = (self.opt_box, self.model, self.open_folder, self.open_gguf)
        tips = self.__dict__.setdefault("_local_tips", {w: w.toolTip() for w in local})
        for widget in local:
            widget.setEnabled(not remote)
            widget.setToolTip(why or tips[widget])
        self.endpoint_model.setEnabled(remote)
        available = getattr(self, "student_reason", "x") is None
        if not available:
            for box in (self.distilled, self.speculative):
                box.setChecked(False)
        # One or the other: the student answers, or the student drafts for the teacher.
        self.distilled.setEnabled(available and not self.speculative.isChecked())
        self.speculative.setEnabled(available and not self.distilled.isChecked())
        backend = self.backend.currentText()
        onnx = backend == "onnxruntime"
        self._sync_backend(backend)
        self.prefix_cache.setEnabled(self.kv_cache.isChecked())
        # ONNX Runtime's int8 is block-wise too; torch's int8-weight is per channel
        grouped = ("int4-weight", "int8-weight") if onnx else ("int4-weight",)
        self.quant_group.setEnabled(self.quant.currentText() in grouped)
        qat_ok = (getattr(self, "qat_reason", "x") is None and not self.distilled.isChecked()
                  and backend != "llamacpp")
        self.qat.setEnabled(qat_ok)
        if not qat_ok:
            self.qat.setChecked(False)
        self.quant.setToolTip(QUANT_TIPS.get(self.quant.currentText(), ""))
        if not self.kv_cache.isChecked():
            self.prefix_cache.setToolTip("needs the KV cache on")
        else:
            self.prefix_cache.setToolTip("reuse the keys/values of the conversation so far: "
                                         "a turn prefills only its new tokens")

    def _sync_backend(self, backend: str) -> None:
        """ONNX Runtime runs fp32 and weight-only int8/int4 only, llama.cpp a GGUF's own
        blocks (none) or its own quantizer's types: the rest is disabled with the reason,
        and a quant it cannot run falls back to none (visible)."""
        other = backend != "torch"
        allowed = {"onnxruntime": ONNX_QUANTS, "llamacpp": LLAMACPP_QUANTS}.get(backend,
                                                                               TORCH_QUANTS)
        runs = f"backend={backend} runs {', '.join(allowed)}"
        why = f"torch only: {runs}" if other else "llama.cpp's quantizer: backend=llamacpp only"
        for i, name in enumerate(QUANTS):
            item = self.quant.model().item(i)
            ok = name in allowed
            item.setEnabled(ok)
            item.setToolTip(QUANT_TIPS.get(name, "") if ok else why)
        if self.quant.currentText() not in allowed:
            self.quant.setCurrentText("none")
        for box in (self.speculative, self.compile):
            if other:
                box.setChecked(False)
        if other:
            self.kv_cache.setChecked(True)
            self.prune.setValue(0)
        for widget in (self.prune, self.prune_method, self.compile, self.kv_cache):
            widget.setEnabled(not other)
            widget.setToolTip(f"torch only ({runs})" if other else "")
        if other:
            self.speculative.setEnabled(False)
        if backend == "llamacpp":  # the file's own weights: no student, no QAT weights
            for box in (self.distilled, self.qat):
                box.setChecked(False)
                box.setEnabled(False)
        llama = backend == "llamacpp"
        only = "" if llama else "backend=llamacpp only"
        for widget in (self.kv_type, self.flash_attn, self.batch):
            widget.setEnabled(llama)
        quantized_kv = llama and self.kv_type.currentText() != "f16"
        if quantized_kv:  # llama.cpp quantizes the V cache only with flash attention
            self.flash_attn.setChecked(True)
        self.flash_attn.setEnabled(llama and not quantized_kv)
        self.flash_attn.setToolTip(only or ("on: a quantized KV cache needs it" if quantized_kv
                                            else "llama.cpp's fused attention"))
        gpu = llama and self.device.currentText() in ("cuda", "mps")
        self.gpu_layers.setEnabled(gpu)
        self.gpu_layers.setToolTip(only or ("" if gpu else "needs device=cuda or mps")
                                   or "layers offloaded to the GPU; the rest stay on the CPU")

    def _pick_folder(self) -> None:
        folder = file_dialogs.open_folder(self, "Hugging Face model folder")
        if folder:
            self.model.setText(folder)

    def pick_model(self, roots=None) -> None:
        from playground.gui.model_picker import ModelPicker

        picker = ModelPicker(self.window(), roots)
        picker.chosen.connect(self._use_model)
        picker.open()  # not exec(): the scan and the app keep running
        self.picker = picker

    def _use_model(self, path: str, quant: str) -> None:
        self.endpoint.setText("")  # a remote endpoint would run instead of the picked model
        self.model.setText(path)
        self.quant.setCurrentText(quant)
        self.refresh_student()
        self.refresh_qat()
        self.apply_requested.emit()  # Use loads it, as Enter in the Model field does

    def _pick_gguf(self) -> None:
        path = file_dialogs.open_file(self, "GGUF model", "GGUF (*.gguf)")
        if path:
            self.model.setText(path)
