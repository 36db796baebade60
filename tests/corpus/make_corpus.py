#!/usr/bin/python3
"""make_corpus.py OUTDIR [--with-12mp] - the image test corpus, made fresh.

Usage: /usr/bin/python3 tests/corpus/make_corpus.py OUTDIR [--with-12mp]
Needs only the stdlib and the `vips` CLI (Debian libvips-tools). Deterministic
and quick (about 1.5 s of CPU). Prints one line per file.

The photograph: Dragonfly_by_Bolly.jpg (CC-BY-SA-4.0) from the Debian package
lomiri-wallpapers-16.04 (/usr/share/backgrounds/). When that package is not
installed a synthetic textured image (seeded Perlin noise and grain) of the
same size stands in, so every name and size below holds either way.

Valid images (name: stored size, what it exercises):
  photo.jpg           2000x1500 RGB JPEG, EXIF (orientation 1, make/model, GPS) + XMP
  photo_orient6.jpg   2000x1500 stored, EXIF orientation 6: shows as 1500x2000;
                      a pure red 200x200 block at the STORED top-left must end
                      up at the DISPLAYED top-right
  small.jpg           500x375 JPEG (narrower than every default variant)
  alpha.png           1200x900 8-bit RGBA PNG; alpha ramps 0 (left) to 255 (right)
  photo.webp          1200x900 lossy WebP with the same kind of alpha ramp
  anim.gif            400x300 animated GIF, 4 frames; frame 0 is blue with a
                      yellow square, frames 1-3 are red
  photo16.tif         1200x900 16-bit RGB TIFF
  photo16.png         800x600 16-bit RGBA PNG (alpha ramp as alpha.png)
  cmyk_icc.jpg        800x600 CMYK JPEG with an embedded CMYK ICC profile
  cmyk_noicc.jpg      800x600 CMYK JPEG without a profile
  photo12mp.jpg       4000x3000 baseline JPEG, only with --with-12mp (benchmarks)
Hostile inputs (name: what it is, the error a service should give):
  empty.jpg           0 bytes                                -> unsupported
  text.jpg            plain text named .jpg                  -> unsupported
  truncated.jpg       photo.jpg cut at 40%                   -> corrupt
  truncated.png       alpha.png cut at 50%                   -> corrupt
  bomb.png            valid PNG header claiming 60000x60000 RGBA, tiny body -> pixels
  bomb.jpg            small.jpg with its SOF patched to 65000x65000         -> pixels
  image.svg           an SVG                                 -> unsupported
  svg_as.jpg          the same SVG named .jpg                -> unsupported
  doc.pdf             a one-page PDF                         -> unsupported
  pdf_as.jpg          the same PDF named .jpg                -> unsupported
  page.html           an HTML page                           -> unsupported
"""
import os
import struct
import subprocess
import sys
import tempfile
import zlib

PHOTO = "/usr/share/backgrounds/Dragonfly_by_Bolly.jpg"


def vips(*args):
    subprocess.run(["vips"] + [str(a) for a in args], check=True,
                   stdout=subprocess.DEVNULL)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ---- EXIF / XMP, written by hand so no extra tool is needed ----

def tiff_entry(tag, typ, count, value_bytes, data_offset, extra):
    """One IFD entry; values over 4 bytes go to extra at data_offset."""
    if len(value_bytes) <= 4:
        return struct.pack("<HHI", tag, typ, count) + value_bytes.ljust(4, b"\0")
    off = data_offset + len(extra)
    extra += value_bytes
    if len(extra) % 2:
        extra += b"\0"
    return struct.pack("<HHII", tag, typ, count, off)


def exif_app1(orientation):
    """An APP1 Exif segment: IFD0 (Make, Model, Orientation, GPS pointer) and a
    GPS IFD (latitude), enough for a test to see that metadata is stripped."""
    ascii_t, short_t, long_t, rational_t = 2, 3, 4, 5
    ifd0_off = 8
    n0 = 4
    gps_off = ifd0_off + 2 + n0 * 12 + 4
    ngps = 2
    data_off = gps_off + 2 + ngps * 12 + 4
    extra = bytearray()
    make = b"ResizerTestCam\0"
    model = b"Model 6\0"
    e0 = [
        tiff_entry(0x010F, ascii_t, len(make), make, data_off, extra),
        tiff_entry(0x0110, ascii_t, len(model), model, data_off, extra),
        tiff_entry(0x0112, short_t, 1, struct.pack("<H", orientation), data_off, extra),
        tiff_entry(0x8825, long_t, 1, struct.pack("<I", gps_off), data_off, extra),
    ]
    lat = struct.pack("<IIIIII", 48, 1, 51, 1, 2400, 100)
    eg = [
        tiff_entry(0x0001, ascii_t, 2, b"N\0", data_off, extra),
        tiff_entry(0x0002, rational_t, 3, lat, data_off, extra),
    ]
    tiff = b"II*\0" + struct.pack("<I", ifd0_off)
    tiff += struct.pack("<H", n0) + b"".join(e0) + struct.pack("<I", 0)
    tiff += struct.pack("<H", ngps) + b"".join(eg) + struct.pack("<I", 0)
    assert len(tiff) == data_off
    payload = b"Exif\0\0" + tiff + bytes(extra)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def xmp_app1():
    xml = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
           b'dc:creator="resizer test corpus"/></rdf:RDF></x:xmpmeta>')
    payload = b"http://ns.adobe.com/xap/1.0/\0" + xml
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert_segments(jpeg, segments):
    """Put APPn segments right after SOI (and after JFIF APP0 if present)."""
    assert jpeg[:2] == b"\xff\xd8"
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]


def jpeg_patch_sof(jpeg, width, height):
    """Rewrite the frame size in the first SOFn marker."""
    pos = 2
    while pos + 4 <= len(jpeg):
        marker = jpeg[pos + 1]
        seglen = struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out = bytearray(jpeg)
            struct.pack_into(">HH", out, pos + 5, height, width)
            return bytes(out)
        pos += 2 + seglen
    raise SystemExit("no SOF marker")


# ---- PNG bomb: a valid header, a body that is far too short ----

def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + width * 4) * 2, 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


# ---- animated GIF, written by hand (the vips CLI cannot set page-height) ----

def gif_lzw_uncompressed(pixels, min_code_size=7):
    """LZW stream that never grows the table: a clear code every 100 symbols
    keeps every code 8 bits wide, which any decoder accepts."""
    clear = 1 << min_code_size
    end = clear + 1
    codes = []
    for i, p in enumerate(pixels):
        if i % 100 == 0:
            codes.append(clear)
        codes.append(p)
    codes.append(end)
    return bytes(codes)  # 8-bit codes pack byte-aligned


def gif_sub_blocks(data):
    out = bytearray()
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out.append(len(chunk))
        out += chunk
    out.append(0)
    return bytes(out)


def gif_frame_pixels(w, h, frame):
    # palette: 0 blue, 1 yellow, 2 red, 3 white
    rows = []
    for y in range(h):
        row = bytearray()
        for x in range(w):
            if frame == 0:
                row.append(1 if 150 <= x < 250 and 100 <= y < 200 else 0)
            else:
                sq = 40 + frame * 60
                row.append(3 if sq <= x < sq + 60 and 120 <= y < 180 else 2)
        rows.append(bytes(row))
    return b"".join(rows)


def animated_gif(w, h, nframes):
    palette = [(0, 0, 255), (255, 255, 0), (255, 0, 0), (255, 255, 255)]
    palette += [(0, 0, 0)] * (128 - len(palette))
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", w, h, 0xF6, 0, 0)  # global table, 128 entries
    out += b"".join(bytes(c) for c in palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for f in range(nframes):
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 20) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        out += bytes([7]) + gif_sub_blocks(gif_lzw_uncompressed(gif_frame_pixels(w, h, f)))
    out += b"\x3b"
    return bytes(out)


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
       b'width="20000" height="20000"><rect width="100%" height="100%" '
       b'fill="red"/></svg>\n')

HTML = (b"<!DOCTYPE html>\n<html><head><title>not an image</title></head>"
        b"<body><img src=x onerror=alert(1)></body></html>\n")


def minimal_pdf():
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


def make_base(tmp, path_out, width, height):
    """The 'photograph' every valid file is made from."""
    if os.path.exists(PHOTO):
        # 4224x3168: DCT-shrink on load, then an exact Lanczos3 resize
        shrink = 2 if width * 2 <= 4224 else 1
        w0, h0 = 4224 // shrink, 3168 // shrink
        vips("resize", "%s[shrink=%d]" % (PHOTO, shrink), path_out, width / w0,
             "--vscale", height / h0)
        return "photo " + PHOTO
    bands = []
    for seed in (1, 2, 3):
        p = os.path.join(tmp, "perlin%d.v" % seed)
        vips("perlin", p, width, height, "--cell-size", 96, "--seed", seed)
        bands.append(p)
    vips("bandjoin", " ".join(bands), os.path.join(tmp, "pj.v"))
    vips("gaussnoise", os.path.join(tmp, "grain.v"), width, height, "--sigma", 0.08, "--seed", 7)
    vips("add", os.path.join(tmp, "pj.v"), os.path.join(tmp, "grain.v"), os.path.join(tmp, "pn.v"))
    vips("linear", os.path.join(tmp, "pn.v"), os.path.join(tmp, "pl.v"), 110, 128)
    vips("cast", os.path.join(tmp, "pl.v"), os.path.join(tmp, "pc.v"), "uchar")
    vips("copy", os.path.join(tmp, "pc.v"), path_out, "--interpretation", "srgb")
    return "synthetic (install lomiri-wallpapers-16.04 for a real photograph)"


def with_alpha_ramp(tmp, src, dst):
    """src plus an alpha band: 0 at the left edge, 255 from 2/3 across."""
    w = int(subprocess.run(["vipsheader", "-f", "width", src], check=True,
                           capture_output=True, text=True).stdout)
    h = int(subprocess.run(["vipsheader", "-f", "height", src], check=True,
                           capture_output=True, text=True).stdout)
    vips("grey", os.path.join(tmp, "ramp.v"), w, h)
    vips("linear", os.path.join(tmp, "ramp.v"), os.path.join(tmp, "ramp2.v"), 382, 0)
    vips("cast", os.path.join(tmp, "ramp2.v"), os.path.join(tmp, "ramp3.v"), "uchar")
    vips("bandjoin", "%s %s" % (src, os.path.join(tmp, "ramp3.v")), dst)


def make_valid(out, tmp, with_12mp):
    base = os.path.join(tmp, "base.v")
    src = make_base(tmp, base, 2000, 1500)
    print("source:", src)

    plain = os.path.join(tmp, "photo_plain.jpg")
    vips("jpegsave", base, plain, "--Q", 90, "--strip")
    write(os.path.join(out, "photo.jpg"),
          jpeg_insert_segments(read(plain), [exif_app1(1), xmp_app1()]))

    vips("black", os.path.join(tmp, "blk.v"), 200, 200, "--bands", 3)
    vips("linear", os.path.join(tmp, "blk.v"), os.path.join(tmp, "red.v"),
         "1 1 1", "255 0 0", "--uchar")
    vips("insert", base, os.path.join(tmp, "red.v"), os.path.join(tmp, "marked.v"), 0, 0)
    vips("jpegsave", os.path.join(tmp, "marked.v"), plain, "--Q", 90, "--strip")
    write(os.path.join(out, "photo_orient6.jpg"),
          jpeg_insert_segments(read(plain), [exif_app1(6)]))

    vips("resize", base, os.path.join(out, "small.jpg") + "[Q=90,strip]", 0.25)

    mid = os.path.join(tmp, "mid.v")
    vips("resize", base, mid, 0.6)
    with_alpha_ramp(tmp, mid, os.path.join(tmp, "mid_a.v"))
    vips("pngsave", os.path.join(tmp, "mid_a.v"), os.path.join(out, "alpha.png"),
         "--compression", 1)

    vips("webpsave", os.path.join(tmp, "mid_a.v"), os.path.join(out, "photo.webp"),
         "--Q", 80, "--effort", 1)

    write(os.path.join(out, "anim.gif"), animated_gif(400, 300, 4))

    vips("colourspace", mid, os.path.join(tmp, "mid16.v"), "rgb16")
    vips("tiffsave", os.path.join(tmp, "mid16.v"), os.path.join(out, "photo16.tif"))
    small_a = os.path.join(tmp, "small_a.v")
    vips("resize", os.path.join(tmp, "mid_a.v"), small_a, 2 / 3)
    vips("colourspace", small_a, os.path.join(tmp, "mid_a16.v"), "rgb16")
    vips("pngsave", os.path.join(tmp, "mid_a16.v"), os.path.join(out, "photo16.png"),
         "--bitdepth", 16, "--compression", 1)

    cmyk = os.path.join(tmp, "cmyk.v")
    vips("resize", mid, os.path.join(tmp, "mid800.v"), 2 / 3)
    vips("icc_transform", os.path.join(tmp, "mid800.v"), cmyk, "cmyk", "--input-profile", "srgb")
    vips("jpegsave", cmyk, os.path.join(out, "cmyk_icc.jpg"), "--Q", 90)
    vips("jpegsave", cmyk, os.path.join(out, "cmyk_noicc.jpg"), "--Q", 90, "--strip")

    if with_12mp:
        b12 = os.path.join(tmp, "b12.v")
        make_base(tmp, b12, 4000, 3000)
        vips("jpegsave", b12, os.path.join(out, "photo12mp.jpg"), "--Q", 90, "--strip")


def make_hostile(out):
    write(os.path.join(out, "empty.jpg"), b"")
    write(os.path.join(out, "text.jpg"), b"This is not an image, just text.\n" * 4)
    jpg = read(os.path.join(out, "photo.jpg"))
    write(os.path.join(out, "truncated.jpg"), jpg[:len(jpg) * 2 // 5])
    png = read(os.path.join(out, "alpha.png"))
    write(os.path.join(out, "truncated.png"), png[:len(png) // 2])
    write(os.path.join(out, "bomb.png"), png_bomb(60000, 60000))
    write(os.path.join(out, "bomb.jpg"),
          jpeg_patch_sof(read(os.path.join(out, "small.jpg")), 65000, 65000))
    write(os.path.join(out, "image.svg"), SVG)
    write(os.path.join(out, "svg_as.jpg"), SVG)
    pdf = minimal_pdf()
    write(os.path.join(out, "doc.pdf"), pdf)
    write(os.path.join(out, "pdf_as.jpg"), pdf)
    write(os.path.join(out, "page.html"), HTML)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit("usage: make_corpus.py OUTDIR [--with-12mp]")
    out = args[0]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rzcorpus") as tmp:
        make_valid(out, tmp, "--with-12mp" in sys.argv[1:])
    make_hostile(out)
    for name in sorted(os.listdir(out)):
        print("%-20s %9d" % (name, os.path.getsize(os.path.join(out, name))))


if __name__ == "__main__":
    main()
