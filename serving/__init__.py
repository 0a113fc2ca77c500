"""Serving a trained dispatch policy: ONNX export, a torch-free runtime and an HTTP server.

* ``serving.export``: checkpoint -> ``policy.onnx`` + ``policy.onnx.json`` manifest, verified against torch
  (the only module here that imports torch);
* ``serving.manifest``: the manifest's schema, the schema version and the checks a server runs at load;
* ``serving.schema``: the HTTP API's request and response models (a JSON snapshot of the live system);
* ``serving.runtime``: ``Dispatcher``, snapshot -> decision with onnxruntime and the simulator;
* ``serving.app``: the FastAPI app and ``lastmile serve``;
* ``serving.snapshot``: the client side, a simulator's decision point as a request (parity test, benchmark).

This package imports nothing itself, so ``serving.runtime`` and ``serving.app`` never pull in torch.
"""
