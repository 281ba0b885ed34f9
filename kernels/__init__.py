"""Backend choice and element kernels (installed as ``fem.kernels``); imports nothing of the project."""
