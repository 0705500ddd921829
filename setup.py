from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="vqcodec",
    version="0.1.0",
    description="Extreme low-bitrate learned image codec with fine-tuned VQGAN codebooks",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["vqcodec", "vqcodec.*"]),
    package_data={"vqcodec.assets": ["*.safetensors", "README.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",  # torch.load(weights_only=True) is only safe from 2.6 (CVE-2025-32434)
        "numpy",
        "Pillow>=10",
        "safetensors>=0.4",
        "constriction~=0.5.0",  # defines the payload bytes: tests/test_golden.py pins them
        "taming-transformers-rom1504>=0.0.6",
        "einops",
        "pyyaml",
        "scipy",
        "tqdm",
    ],
    extras_require={
        "train": ["lpips>=0.1.4", "torchvision", "scikit-learn>=1.3"],
        "eval": ["lpips>=0.1.4", "torchvision", "pytorch-msssim>=1.0", "piq>=0.8", "pillow-heif", "pillow-jxl-plugin", "matplotlib", "scikit-learn>=1.3"],
        "test": ["pytest>=7", "ruff", "hypothesis", "pytorch-msssim>=1.0", "piq>=0.8", "nbclient", "nbformat", "ipykernel", "matplotlib", "lpips>=0.1.4", "torchvision", "scikit-learn>=1.3",
                 "ray[data]>=2.9"],
        "ray": ["ray[data]>=2.9"],  # corpus mode: vqcodec encode/decode DIR -o OUTDIR --ray
    },
    entry_points={"console_scripts": ["vqcodec=vqcodec.cli:main"]},
)
