import numpy as np
import pytest
import torch
from PIL import Image

from stylexport.errors import StylexportError
from stylexport.image import find_images, read_image, save_image
from tests.conftest import swapped_srgb_profile


def test_a_float_tiff_in_zero_to_one_is_scaled_and_one_in_levels_is_kept(tmp_path):
    """A 32-bit float grey TIFF (PIL mode F) as imaging tools write it, in [0, 1], was read as levels 0 and 1:
    black. Values in [0, 1] are now scaled to 255; a float image in levels keeps them; NaN reads as black."""
    ramp = np.linspace(0.0, 1.0, 30 * 40, dtype=np.float32).reshape(30, 40)
    Image.fromarray(ramp, "F").save(tmp_path / "unit.tif")
    Image.fromarray(ramp * 200, "F").save(tmp_path / "levels.tif")
    holed = ramp.copy()
    holed[0, 0] = np.nan
    Image.fromarray(holed, "F").save(tmp_path / "nan.tif")
    unit, levels, nan = (read_image(tmp_path / name) for name in ("unit.tif", "levels.tif", "nan.tif"))
    assert unit[:, -1, -1].tolist() == [255.0] * 3 and unit[:, 15, 20].tolist() == [132.0] * 3  # 0.5171 * 255
    assert levels[:, -1, -1].tolist() == [200.0] * 3 and levels[:, 15, 20].tolist() == [103.0] * 3  # 0.5171 * 200
    assert nan[:, 0, 0].tolist() == [0.0] * 3 and nan[:, -1, -1].tolist() == [255.0] * 3


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=100)
    out = read_image(path)
    assert out.shape == (3, 40, 20)
    assert out[:, :5].mean() > 200 and out[:, -5:].mean() < 50  # white half is now on top


def test_modes_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((20, 20), 100, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    assert torch.equal(read_image(tmp_path / "g.png"), torch.full((3, 20, 20), 100.0))

    pal = Image.fromarray(np.full((20, 20, 3), (10, 200, 30), np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[:, 0, 0].tolist() == [10, 200, 30]

    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent red -> white
    rgba[:10, :, 3] = 255  # top half opaque red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[:, 0, 0].tolist() == [255, 0, 0]
    assert out[:, 19, 0].tolist() == [255, 255, 255]

    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.save(tmp_path / "c.jpg", quality=100)
    r, g, b = read_image(tmp_path / "c.jpg")[:, 10, 10].tolist()
    assert r > 240 and g < 15 and b < 15


def test_an_embedded_colour_profile_is_applied(tmp_path, caplog):
    """A photo tagged with a colour profile other than sRGB (a phone's Display P3, Adobe RGB) is converted to
    sRGB; a profile that cannot be used is ignored with a warning, never a failed read."""
    from PIL import ImageCms

    red = Image.new("RGB", (20, 20), (200, 0, 0))
    red.save(tmp_path / "swapped.png", icc_profile=swapped_srgb_profile())
    r, g, b = read_image(tmp_path / "swapped.png")[:, 5, 5].tolist()
    assert g > 150 and r < 30 and b < 30, (r, g, b)  # the tagged red channel is green in sRGB

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    red.save(tmp_path / "srgb.jpg", icc_profile=srgb, quality=100)
    red.save(tmp_path / "untagged.jpg", quality=100)
    assert (read_image(tmp_path / "srgb.jpg") - read_image(tmp_path / "untagged.jpg")).abs().max() <= 1

    rgba = Image.new("RGBA", (20, 20), (200, 0, 0, 0))  # transparent: white whatever the profile says
    rgba.save(tmp_path / "clear.png", icc_profile=swapped_srgb_profile())
    assert read_image(tmp_path / "clear.png")[:, 5, 5].tolist() == [255, 255, 255]

    red.save(tmp_path / "broken.png", icc_profile=b"not a colour profile at all" * 8)
    with caplog.at_level("WARNING"):
        assert read_image(tmp_path / "broken.png")[:, 5, 5].tolist() == [200, 0, 0]
    assert "colour profile of " + str(tmp_path / "broken.png") in caplog.text


def test_an_animation_reads_its_first_frame_and_points_to_video(tmp_path, caplog):
    frames = [Image.new("RGB", (30, 20), colour) for colour in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "still.gif")
    with caplog.at_level("WARNING"):
        r, g, b = read_image(tmp_path / "anim.gif")[:, 5, 5].tolist()
        read_image(tmp_path / "still.gif")
    assert r > 150 and g < 30 and b < 30  # the first frame
    assert caplog.text.count("has 3 frames: only the first is read") == 1
    assert f"stylexport video {tmp_path / 'anim.gif'} -o OUT.gif" in caplog.text


def test_16bit_png_scaled_to_8bit(tmp_path):
    arr = np.full((20, 20), 65535, np.uint16)
    arr[:, 10:] = 32896  # ~ 128 * 257
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png")
    assert out[0, 0, 0] == 255 and out[0, 0, 15] == 128


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"not an image at all", "cannot read image")])
def test_bad_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(StylexportError, match=match) as err:
        read_image(path)
    assert "bad.jpg" in str(err.value) and "\n" not in str(err.value)


def test_truncated_file(tmp_path, make_image):
    good = make_image("t.png", 64, 64)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(StylexportError, match="cannot read image .*t.png"):
        read_image(good)


def test_too_small(make_image):
    with pytest.raises(StylexportError, match="is 12x40; each side must be at least 16"):
        read_image(make_image("small.png", 40, 12))


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(StylexportError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StylexportError, match="no images in folder"):
        find_images([tmp_path / "empty"])


def test_save_round_trip_clamps_and_leaves_no_temp(tmp_path):
    img = torch.rand(3, 20, 30) * 300 - 20
    path = save_image(img, tmp_path / "sub" / "out.png")
    back = read_image(path)
    torch.testing.assert_close(back, img.clamp(0, 255).round())
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]


def test_save_unknown_suffix(tmp_path):
    with pytest.raises(StylexportError, match="unknown image suffix '.xyz'"):
        save_image(torch.zeros(3, 20, 20), tmp_path / "o.xyz")
    assert not list(tmp_path.iterdir())


def test_the_stylize_path_imports_torchvision_only_to_resize(tmp_path):
    """torchvision's import pulls in torch._dynamo (seconds on a small CPU, longer than a stylize's inference):
    reading, stylizing at the image's own size (one the network pads inside) and saving never import it; a
    resize does, and resizes right."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from stylexport import stylize, video\n"
            "from stylexport.image import read_image, resize_max_side, save_image\n"
            "from stylexport.model import TransformerNet\n"
            "from stylexport.runtime.torch_backend import TorchRunner\n"
            f"save_image(torch.full((3, 30, 40), 100.0), {str(tmp_path / 'a.png')!r})\n"
            f"image = read_image({str(tmp_path / 'a.png')!r})\n"
            "out = stylize.stylize_tensor(TorchRunner(TransformerNet()), image)\n"
            f"save_image(out[0], {str(tmp_path / 'b.png')!r})\n"
            "print('torchvision' in sys.modules)\n"
            "small = resize_max_side(image, 20)\n"
            "print('torchvision' in sys.modules, tuple(small.shape), round(float(small.mean()), 3))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["False", "True (3, 15, 20) 100.0"]


def test_heic_photos_are_read_and_a_missing_plugin_is_one_line(tmp_path, monkeypatch):
    """An iPhone's photos are HEIC: a folder of them was "no images in folder", one of them "cannot read image".
    With pillow-heif (the `heic` extra) they are read, also under a wrong name; without it, one line says what to
    install."""
    import sys

    from tests.conftest import smooth_image

    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed: pip install "
                                                            "'stylexport[heic]'")
    pixels = smooth_image(48, 64)
    (tmp_path / "phone").mkdir()
    photo = tmp_path / "phone" / "IMG_0001.HEIC"
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(photo, quality=95)
    misnamed = tmp_path / "sent-as.jpg"
    misnamed.write_bytes(photo.read_bytes())

    monkeypatch.setattr(Image, "ID", [kind for kind in Image.ID if kind != "HEIF"])  # as before any was opened
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # not installed
    with pytest.raises(StylexportError, match=r"IMG_0001.HEIC is a HEIC/HEIF photo .* pip install "
                                              r"'stylexport\[heic\]'") as err:
        read_image(photo)
    assert "\n" not in str(err.value)
    monkeypatch.undo()

    assert find_images([tmp_path / "phone"]) == [photo]
    for path in (photo, misnamed):
        image = read_image(path)
        assert image.shape == (3, 48, 64)
        error = image - torch.from_numpy(pixels).permute(2, 0, 1).float()
        assert 10 * torch.log10(255 ** 2 / error.pow(2).mean()) > 30  # lossy, but the same picture
