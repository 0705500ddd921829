import numpy as np
import torch
from PIL import Image

import vqcodec
from vqcodec import Codec


def test_encode_decode_api(tiny_model_path, photo):
    data = vqcodec.encode(Image.fromarray(photo), level=16, model=str(tiny_model_path), device="cpu")
    out = vqcodec.decode(data, model=str(tiny_model_path), device="cpu")
    assert isinstance(out, Image.Image) and out.size == (57, 40)


def test_codec_batches(tiny_model_path):
    codec = Codec.from_pretrained(tiny_model_path, device="cpu")
    x = torch.rand(3, 3, 33, 47)
    idx = codec.encode_indices(x, level=16)
    assert idx.shape == (3, 3, 3)
    y = codec.decode_indices(idx, level=16)
    assert y.shape == (3, 3, 48, 48) and 0 <= float(y.min()) and float(y.max()) <= 1
    single = codec.encode_indices(x[1:2], level=16)
    assert torch.equal(single[0], idx[1])


def test_path_input(tiny_model_path, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "p.png")
    codec = Codec.from_pretrained(tiny_model_path, device="cpu")
    assert codec.encode(tmp_path / "p.png").data == codec.encode(photo).data
    assert np.asarray(codec.decode(codec.encode(photo).data)).shape == photo.shape
