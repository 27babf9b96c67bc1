"""trainer: RLlib training, Ray Tune search, evaluation, ONNX export and model pushes."""
