"""Config files DeepStream elements read, generated from our config."""

from __future__ import annotations

from pathlib import Path

from citysight.config import StreamsService


def nvinferserver_config(
    model_name: str,
    *,
    triton_grpc_url: str = "localhost:8001",
    max_batch: int = 8,
    unique_id: int = 1,
    num_classes: int = 1,
    gpu_id: int = 0,
) -> str:
    """``nvinferserver`` config (protobuf text) talking gRPC to the node's Triton.

    CUDA buffer sharing avoids copying frames to the Triton on the same node.
    """
    return f"""infer_config {{
  unique_id: {unique_id}
  gpu_ids: [{gpu_id}]
  max_batch_size: {max_batch}
  backend {{
    triton {{
      model_name: "{model_name}"
      version: -1
      grpc {{
        url: "{triton_grpc_url}"
        enable_cuda_buffer_sharing: true
      }}
    }}
  }}
  preprocess {{
    network_format: IMAGE_FORMAT_RGB
    tensor_order: TENSOR_ORDER_LINEAR
    maintain_aspect_ratio: 1
    normalize {{
      scale_factor: 0.0039215686
    }}
  }}
  postprocess {{
    detection {{
      num_detected_classes: {num_classes}
      nms {{
        confidence_threshold: 0.3
        iou_threshold: 0.5
        topk: 100
      }}
    }}
  }}
}}
input_control {{
  process_mode: PROCESS_MODE_FULL_FRAME
  interval: 0
}}
output_control {{
  output_tensor_meta: false
}}
"""


def tracker_config(max_targets_per_stream: int = 150) -> str:
    """NvDCF/IOU low-level tracker config (YAML)."""
    return f"""%YAML:1.0
BaseConfig:
  minDetectorConfidence: 0.2
TargetManagement:
  maxTargetsPerStream: {max_targets_per_stream}
  minIouDiff4NewTarget: 0.5
  probationAge: 3
  maxShadowTrackingAge: 30
  earlyTerminationAge: 1
DataAssociator:
  dataAssociatorType: 0
  associationMatcherType: 0
  checkClassMatch: 1
  minMatchingScore4Overall: 0.0
  minMatchingScore4SizeSimilarity: 0.6
  minMatchingScore4Iou: 0.0
"""


def mux_config(cfg: StreamsService, max_fps: float = 30.0) -> str:
    """New-nvstreammux config (``config-file-path``), from our batching settings."""
    return f"""[property]
algorithm-type=1
batch-size={cfg.max_batch}
overall-max-fps-n={int(max_fps)}
overall-max-fps-d=1
overall-min-fps-n=1
overall-min-fps-d=1
max-same-source-frames=1
adaptive-batching=1
"""


def write_configs(
    out_dir: str | Path, cfg: StreamsService, model_name: str, triton_grpc_url: str
) -> dict[str, Path]:
    """Write the three files; returns their paths by name."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "infer": (
            d / "nvinferserver.txt",
            nvinferserver_config(
                model_name, triton_grpc_url=triton_grpc_url, max_batch=cfg.max_batch
            ),
        ),
        "tracker": (d / "tracker.yml", tracker_config()),
        "mux": (d / "mux.txt", mux_config(cfg)),
    }
    for path, text in files.values():
        path.write_text(text, encoding="utf-8")
    return {k: p for k, (p, _) in files.items()}
