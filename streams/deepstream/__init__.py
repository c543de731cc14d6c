"""DeepStream backend for GPU nodes (a leaf adapter: ``pyds`` is injected, never imported here).

**Not integrated yet.** No decoder choice selects it: stream workers decode with
``services.streams.decoder`` (``pyav`` by default, or NVDEC through PyNvVideoCodec). This
package is a building block tested on CPU against a named fake ``pyds``
(``tests/streams/deepstream/``); wiring it in is future work.

* :mod:`streams.deepstream.pipeline` builds the GStreamer pipeline description
  (``nvurisrcbin`` → ``nvstreammux`` → ``nvinferserver`` → ``nvtracker`` → probe), or a
  CPU stand-in (``uridecodebin`` → ``videoconvert`` → ``appsink``/``fakesink``) for tests.
* :mod:`streams.deepstream.configs` writes the nvinferserver, tracker and mux configs.
* :mod:`streams.deepstream.probe` turns ``NvDsBatchMeta`` into :class:`FrameResult` s.
* :mod:`streams.deepstream.runtime` adds and removes sources of a running pipeline
  (DeepStream's ``runtime_source_add_delete`` pattern).

GPU node requirements (details in ``streams/deepstream/README.md``): the DeepStream 7.1
Triton container image (``nvcr.io/nvidia/deepstream:7.1-triton-multiarch``, ``pyds`` from
the SDK's bindings), the driver it is qualified with (R560), and
``NVIDIA_DRIVER_CAPABILITIES=compute,utility,video`` (``video`` mounts NVDEC).
Never ``pip install pyds``: that name on PyPI is unrelated.
"""
