"""DeepStream backend for GPU nodes (a leaf adapter: ``pyds`` is injected, never imported here).

* :mod:`streams.deepstream.pipeline` builds the GStreamer pipeline description
  (``nvurisrcbin`` → ``nvstreammux`` → ``nvinferserver`` → ``nvtracker`` → probe), or a
  CPU stand-in (``uridecodebin`` → ``videoconvert`` → ``appsink``/``fakesink``) for tests.
* :mod:`streams.deepstream.configs` writes the nvinferserver, tracker and mux configs.
* :mod:`streams.deepstream.probe` turns ``NvDsBatchMeta`` into :class:`FrameResult` s.

GPU node requirements: the DeepStream container image (``nvcr.io/nvidia/deepstream``,
which carries ``pyds`` or ``pyservicemaker``), an NVIDIA driver the image supports
(DeepStream 9.x: 590+), and ``NVIDIA_DRIVER_CAPABILITIES`` including ``video`` (NVDEC) as
well as ``compute,utility``. Never ``pip install pyds``: that name on PyPI is unrelated.
"""
