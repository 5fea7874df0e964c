from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.data.images import content_hash, load_image, to_uint8
from tools.domain import InputError


def _write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _ramp(h: int = 16, w: int = 16) -> np.ndarray:
    return np.tile(np.arange(w, dtype=np.float64), (h, 1))


def test_png_8bit_is_scaled_by_255(tmp_path):
    arr = np.tile(np.array([[0, 51, 255], [102, 204, 153]], dtype=np.uint8), (8, 6))
    Image.fromarray(arr, mode="L").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (16, 18)
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_png_16bit_keeps_full_depth(tmp_path):
    arr = np.tile(np.array([[0, 1000, 65535], [30000, 40000, 50000]], dtype=np.uint16), (8, 6))
    Image.fromarray(arr).save(tmp_path / "a16.png")
    out = load_image(tmp_path / "a16.png")
    np.testing.assert_allclose(out, arr / 65535.0, atol=1e-6)
    # 1000/65535 would be 0 in an 8-bit reading: depth must be kept
    assert 0 < out[0, 1] < 0.02


def test_jpeg_rgb_becomes_grayscale(tmp_path):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:, 8:] = 200
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "a.jpg", quality=95)
    out = load_image(tmp_path / "a.jpg")
    assert out.ndim == 2
    assert out[:, :6].mean() < 0.05 and abs(out[:, 10:].mean() - 200 / 255) < 0.03


def test_dicom_rescale_and_window(tmp_path):
    raw = (_ramp() * 100).astype(np.uint16)  # 0..1500
    # rescale to -1000..500 "HU"; window centre 0 width 1000 -> -500..500 maps onto 0..1
    _write_dicom(tmp_path / "w.dcm", raw, slope=1.0, intercept=-1000.0, window=(0.0, 1000.0))
    out = load_image(tmp_path / "w.dcm")
    hu = raw.astype(float) - 1000.0
    assert out[0, 0] == pytest.approx(0.0)  # -1000 is below the window
    assert out[0, -1] == pytest.approx(1.0)  # 500 is at the top of the window
    inside = (hu > -450) & (hu < 450)
    assert np.all(np.diff(out[0][inside[0]]) > 0)  # strictly increasing inside the window


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = (_ramp() * 10).astype(np.uint16)
    _write_dicom(tmp_path / "m2.dcm", raw, photometric="MONOCHROME2")
    _write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1")
    m2, m1 = load_image(tmp_path / "m2.dcm"), load_image(tmp_path / "m1.dcm")
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[0, 0] == 0.0 and m1[0, 0] == 1.0


def test_dicom_without_suffix_is_detected(tmp_path):
    _write_dicom(tmp_path / "noext", (_ramp() * 10).astype(np.uint16))
    assert load_image(tmp_path / "noext").shape == (16, 16)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.png", None, "missing.png: file not found"),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "broken.png: corrupt image"),
        ("text.png", b"hello, not an image", "text.png: not an image"),
        ("notes.txt", b"just text", "notes.txt: not an image file"),
        ("fake.dcm", b"not a dicom at all" * 10, "fake.dcm: not a DICOM file"),
    ],
)
def test_bad_images_raise_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_image(path)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_truncated_png_is_corrupt(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png: corrupt image"):
        load_image(tmp_path / "t.png")


def test_content_hash_is_by_content_not_path(tmp_path):
    arr = np.full((4, 4), 7, dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    Image.fromarray(arr + 1).save(tmp_path / "c.png")
    assert content_hash(tmp_path / "a.png") == content_hash(tmp_path / "b.png")
    assert content_hash(tmp_path / "a.png") != content_hash(tmp_path / "c.png")


def test_to_uint8_round_trip():
    arr = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    assert np.array_equal(to_uint8(arr).ravel(), np.arange(256, dtype=np.uint8))
