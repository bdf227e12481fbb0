"""Two fixed batches, each with its host buffer and its buffers on the provider's device.

While the model runs the batch in one slot, the next batch is copied into the other (and,
on a GPU, uploaded on a stream of its own), so neither the copy out of the image cache nor
the upload waits for the model, or the model for them. Every buffer is allocated once, at a
fixed address: a CUDA graph replays the addresses it captured, one graph a slot.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import onnxruntime as ort

from models.export import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger(__name__)

SLOTS = 2


class BatchSlots(Protocol):
    """Host batches to fill, bound to the model's input, and the model's output to read."""

    def staging(self, slot: int) -> np.ndarray:
        """The host batch to copy the slot's images into.

        Shape: (B, S, S, 3) uint8
        """
        ...

    def bind(self, binding: ort.IOBinding, slot: int) -> None:
        """Bind the slot's input and output buffers to `binding`, once."""
        ...

    def upload(self, slot: int) -> None:
        """Start moving the slot's host batch to its device input (returns at once)."""
        ...

    def wait_uploaded(self, slot: int) -> None:
        """Return when the slot's device input holds its host batch."""
        ...

    def download(self, slot: int) -> np.ndarray:
        """The slot's embeddings on the host, after the model ran it.

        Shape: (B, D) float32
        """
        ...


class HostSlots:
    """The CPU provider's slots: ONNX Runtime reads the host batch and writes the output in place.

    No copy in or out, and no allocation a batch.
    """

    def __init__(self, batch_shape: tuple[int, ...], dim: int) -> None:
        self._inputs = [np.zeros(batch_shape, dtype=np.uint8) for _ in range(SLOTS)]
        self._outputs = [np.zeros((batch_shape[0], dim), dtype=np.float32) for _ in range(SLOTS)]
        # The OrtValues borrow the arrays' memory; kept here so the bindings never outlive them.
        self._values = [
            (ort.OrtValue.ortvalue_from_numpy(i), ort.OrtValue.ortvalue_from_numpy(o))
            for i, o in zip(self._inputs, self._outputs, strict=True)
        ]

    def staging(self, slot: int) -> np.ndarray:
        """The slot's input itself."""
        return self._inputs[slot]

    def bind(self, binding: ort.IOBinding, slot: int) -> None:
        """Bind the slot's host arrays, which ONNX Runtime reads and writes in place."""
        images, embeddings = self._values[slot]
        binding.bind_ortvalue_input(INPUT_NAME, images)
        binding.bind_ortvalue_output(OUTPUT_NAME, embeddings)

    def upload(self, slot: int) -> None:
        """Nothing to move: the input is the host batch."""

    def wait_uploaded(self, slot: int) -> None:
        """Nothing to wait for: the input is the host batch."""

    def download(self, slot: int) -> np.ndarray:
        """The slot's output itself."""
        return self._outputs[slot]


class CudaSlots:
    """A GPU provider's slots: pinned host batches, uploaded on a copy stream of their own.

    Pinned (page-locked) memory is what lets a copy run asynchronously, by DMA, while the
    host goes on; a pageable array is first staged through a driver buffer, synchronously.
    PyTorch (already here for training) allocates the pinned and device buffers and owns
    the stream; ONNX Runtime is bound to their addresses.
    """

    def __init__(self, batch_shape: tuple[int, ...], dim: int, device_id: int = 0) -> None:
        import torch  # only where a GPU provider runs: its CUDA runtime is loaded then

        device = torch.device("cuda", device_id)
        self._device_id = device_id
        output_shape = (batch_shape[0], dim)
        self._pinned_inputs = [
            torch.empty(batch_shape, dtype=torch.uint8, pin_memory=True) for _ in range(SLOTS)
        ]
        self._device_inputs = [
            torch.empty(batch_shape, dtype=torch.uint8, device=device) for _ in range(SLOTS)
        ]
        self._device_outputs = [
            torch.empty(output_shape, dtype=torch.float32, device=device) for _ in range(SLOTS)
        ]
        self._pinned_outputs = [
            torch.empty(output_shape, dtype=torch.float32, pin_memory=True) for _ in range(SLOTS)
        ]
        self._copy_stream = torch.cuda.Stream(device)
        self._uploaded = [torch.cuda.Event() for _ in range(SLOTS)]

    def staging(self, slot: int) -> np.ndarray:
        """The slot's pinned host batch, as an array over the same memory."""
        return self._pinned_inputs[slot].numpy()

    def bind(self, binding: ort.IOBinding, slot: int) -> None:
        """Bind the slot's device buffers by address."""
        images, embeddings = self._device_inputs[slot], self._device_outputs[slot]
        binding.bind_input(
            INPUT_NAME, "cuda", self._device_id, np.uint8, tuple(images.shape), images.data_ptr()
        )
        binding.bind_output(
            OUTPUT_NAME, "cuda", self._device_id, np.float32, tuple(embeddings.shape), embeddings.data_ptr()
        )

    def upload(self, slot: int) -> None:
        """Queue the copy to the device on the copy stream, and an event after it."""
        import torch

        with torch.cuda.stream(self._copy_stream):
            self._device_inputs[slot].copy_(self._pinned_inputs[slot], non_blocking=True)
            self._uploaded[slot].record(self._copy_stream)

    def wait_uploaded(self, slot: int) -> None:
        """Wait for the slot's upload event."""
        # Recorded a whole batch earlier: in steady state this returns at once.
        self._uploaded[slot].synchronize()

    def download(self, slot: int) -> np.ndarray:
        """Copy the slot's embeddings into its pinned host output, and return that."""
        # ONNX Runtime's run has synchronised its stream: the output is complete. A (B, D)
        # float32 batch is a few hundred KB: copied synchronously, into pinned memory.
        self._pinned_outputs[slot].copy_(self._device_outputs[slot])
        return self._pinned_outputs[slot].numpy()


def pinned_memory_available() -> bool:
    """Whether PyTorch can pin host memory and drive the GPU: a CUDA build and a usable GPU."""
    import torch

    return bool(torch.cuda.is_available())


def batch_slots(on_gpu: bool, batch_shape: tuple[int, ...], dim: int) -> BatchSlots:
    """The slots for a session whose provider runs on a GPU (`on_gpu`) or on the CPU.

    On a GPU whose PyTorch is a CPU build, host slots: ONNX Runtime then copies each batch
    to the device and back itself, synchronously, and says so in a warning.
    """
    if on_gpu and pinned_memory_available():
        return CudaSlots(batch_shape, dim)
    if on_gpu:
        logger.warning(
            "PyTorch here cannot use the GPU (a CPU build?): embedding batches are copied to the "
            "GPU from pageable memory, synchronously, and embedding.cuda_graph is off"
        )
    return HostSlots(batch_shape, dim)
