"""Stand-in for torchvision, for the reference fixture script only.

walloc 1.2.1 imports ``ToPILImage`` and ``PILToTensor`` from
``torchvision.transforms``; the registry's torchvision wheel is a CUDA build
that does not load with the CPU torch. Nothing here is used by the library.
"""
