// Image IO through libpng, libjpeg(-turbo) and LittleCMS, reading files as stylexport's Python reader (Pillow) does.
#include <cstdio>  // jpeglib.h needs FILE and size_t declared before it
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <lcms2.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "stylexport/engine.hpp"

namespace stylexport {
namespace {

std::string lower_suffix(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool starts_with_bytes(const std::string& path, const unsigned char* magic, size_t n) {
  std::ifstream f(path, std::ios::binary);
  std::string head(n, '\0');
  if (!f.read(head.data(), static_cast<std::streamsize>(n))) return false;
  return std::equal(head.begin(), head.end(), magic, [](char a, unsigned char b) { return static_cast<unsigned char>(a) == b; });
}

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg's warnings stay off stderr, but a file cut short (decoded as grey to its end) is an error, as Python's
// reader (Pillow) makes it one: "image file is truncated".
void jpeg_warning(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit(cinfo);
}

// The EXIF orientation (tag 0x0112) in a TIFF-structured EXIF block: 1 (upright, also when absent or unreadable)
// to 8. Phones store a portrait photo on its side with this tag; Python's reader (PIL's exif_transpose) applies
// it, so this host does too. A small reader of the TIFF header and IFD0, where libexif would be one more
// dependency.
int tiff_orientation(const unsigned char* tiff, size_t size) {
  if (size < 8) return 1;
  const bool little = tiff[0] == 'I' && tiff[1] == 'I';
  if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> unsigned { return little ? tiff[at] | tiff[at + 1] << 8 : tiff[at] << 8 | tiff[at + 1]; };
  auto u32 = [&](size_t at) -> size_t {
    return little ? size_t{tiff[at]} | size_t{tiff[at + 1]} << 8 | size_t{tiff[at + 2]} << 16 | size_t{tiff[at + 3]} << 24
                  : size_t{tiff[at]} << 24 | size_t{tiff[at + 1]} << 16 | size_t{tiff[at + 2]} << 8 | size_t{tiff[at + 3]};
  };
  const size_t ifd = u32(4);
  if (ifd + 2 > size) return 1;
  const unsigned entries = u16(ifd);
  for (unsigned i = 0; i < entries; ++i) {
    const size_t at = ifd + 2 + size_t{i} * 12;
    if (at + 12 > size) return 1;
    if (u16(at) == 0x0112 && u16(at + 2) == 3) {  // Orientation, a SHORT stored in the entry itself
      const unsigned value = u16(at + 8);
      return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
    }
  }
  return 1;
}

// A JPEG's orientation: the EXIF block of its APP1 segment ("Exif\0\0" then TIFF).
int exif_orientation(const jpeg_decompress_struct& cinfo) {
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 14 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      return tiff_orientation(m->data + 6, m->data_length - 6);
    }
  }
  return 1;
}

// Python's reader warns when it ignores an image's colour profile; so does the host, with the same words.
void warn_profile_ignored(const std::string& path, const std::string& why) {
  std::cerr << "warning: ignoring the embedded colour profile of " << path << " (" << why
            << "); its pixels are read as sRGB\n";
}

// A transform from an image's embedded colour profile (a phone's Display P3, Adobe RGB, a print CMYK) to sRGB,
// as Python's reader makes it (Pillow's ImageCms.profileToProfile: LittleCMS, perceptual intent, no flags), or
// nullptr where there is no profile or LittleCMS cannot use it for these pixels (a broken profile, a CMYK
// profile on an RGB image): then, as in Python, the pixels are read as sRGB, with a warning. The caller frees
// it with cmsDeleteTransform.
cmsHTRANSFORM srgb_transform(const unsigned char* icc, size_t size, cmsUInt32Number in_format,
                             cmsUInt32Number out_format, const std::string& path) {
  if (icc == nullptr || size == 0) return nullptr;
  cmsHPROFILE embedded = cmsOpenProfileFromMem(icc, static_cast<cmsUInt32Number>(size));
  cmsHPROFILE srgb = cmsCreate_sRGBProfile();
  cmsHTRANSFORM transform = embedded && srgb ? cmsCreateTransform(embedded, in_format, srgb, out_format,
                                                                  INTENT_PERCEPTUAL, out_format == TYPE_RGBA_8 ?
                                                                  cmsFLAGS_COPY_ALPHA : 0) : nullptr;
  if (embedded) cmsCloseProfile(embedded);
  if (srgb) cmsCloseProfile(srgb);
  if (transform == nullptr) warn_profile_ignored(path, "LittleCMS cannot use it for these pixels");
  return transform;
}

// The picture as it is meant to be seen: orientation 2-8 flips and/or turns it, as PIL's exif_transpose does.
Image orient(const Image& in, int orientation) {
  if (orientation == 1) return in;
  const int h = in.height, w = in.width;
  const bool swap = orientation >= 5;  // 5-8 turn a quarter: the sides swap
  Image out;
  out.height = swap ? w : h;
  out.width = swap ? h : w;
  out.pixels.resize(in.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sy = y, sx = x;  // where out(y, x) comes from in the stored picture
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                      // mirrored
        case 3: sy = h - 1 - y; sx = w - 1 - x; break;      // half a turn
        case 4: sy = h - 1 - y; break;                      // upside down, mirrored
        case 5: sy = x; sx = y; break;                      // transposed
        case 6: sy = h - 1 - x; sx = y; break;              // a quarter turn clockwise
        case 7: sy = h - 1 - x; sx = w - 1 - y; break;      // transversed
        case 8: sy = x; sx = w - 1 - y; break;              // a quarter turn anticlockwise
      }
      std::memcpy(&out.pixels[(static_cast<size_t>(y) * out.width + x) * 3],
                  &in.pixels[(static_cast<size_t>(sy) * w + sx) * 3], 3);
    }
  }
  return out;
}

// libpng's errors end in png_longjmp; the message is kept for the user's one line. Its warnings (an unknown
// chunk, a bad CRC in an ancillary one it skips) are not the user's concern, but for a colour profile it drops:
// Python warns that it ignores one, and so does the host.
struct PngReader {
  std::string message;
  std::string icc_warning;  // libpng drops a colour profile it finds broken, with a warning
};

void png_fail(png_structp png, png_const_charp message) {
  static_cast<PngReader*>(png_get_error_ptr(png))->message = message;
  png_longjmp(png, 1);
}

void png_warn(png_structp png, png_const_charp message) {
  if (std::strncmp(message, "iCCP", 4) == 0) static_cast<PngReader*>(png_get_error_ptr(png))->icc_warning = message;
}

// Decodes ``file`` into 8-bit RGBA as PIL reads a PNG (and stylexport's Python reader then converts it): a
// palette to RGB, its transparency as alpha; grey below 8 bits scaled to 8; 16-bit grey scaled to 8 bits,
// rounded (Python's rule for PIL's I;16); any other 16-bit image by its high byte (PIL's); a grey or RGB image's
// single transparent colour (tRNS) ignored, as PIL's conversion to RGB ignores it; gAMA not applied; an RGB(A)
// image's colour profile handed back in ``icc`` (read_png applies it). No C++ object lives in this frame: libpng's
// errors longjmp out of it.
bool decode_png(FILE* file, PngReader* reader, Image* image, std::vector<unsigned char>* rgba,
                std::vector<png_bytep>* rows, int* orientation, std::vector<unsigned char>* icc) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, png_fail, png_warn);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_init_io(png, file);
  png_read_info(png, info);
  const png_byte color = png_get_color_type(png, info);
  const png_byte depth = png_get_bit_depth(png, info);
  const bool palette_alpha = color == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS);
  png_charp icc_name = nullptr;
  png_bytep icc_data = nullptr;
  png_uint_32 icc_size = 0;
  int icc_compression = 0;
  // Python applies a profile to RGB and RGBA images only (not to grey or palette ones, as PIL opens them)
  if ((color == PNG_COLOR_TYPE_RGB || color == PNG_COLOR_TYPE_RGB_ALPHA) &&
      png_get_iCCP(png, info, &icc_name, &icc_compression, &icc_data, &icc_size) != 0 && icc_data != nullptr) {
    icc->assign(icc_data, icc_data + icc_size);
  }
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (palette_alpha) png_set_tRNS_to_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && color == PNG_COLOR_TYPE_GRAY) png_set_scale_16(png);
  if (depth == 16 && color != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
  if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  if (!(color & PNG_COLOR_MASK_ALPHA) && !palette_alpha) png_set_add_alpha(png, 0xFF, PNG_FILLER_AFTER);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width) * 4) png_error(png, "unexpected row layout");
  image->width = static_cast<int>(width);
  image->height = static_cast<int>(height);
  rgba->resize(static_cast<size_t>(width) * height * 4);
  rows->resize(height);
  for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = rgba->data() + static_cast<size_t>(y) * width * 4;
  png_read_image(png, rows->data());
  png_read_end(png, info);  // an eXIf chunk may come after the image data
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_size, &exif) != 0 && exif != nullptr) *orientation = tiff_orientation(exif, exif_size);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

Image read_png(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error("cannot open image " + path + "; check the path");
  PngReader reader;
  Image image;
  std::vector<unsigned char> rgba;
  std::vector<png_bytep> rows;
  std::vector<unsigned char> icc;
  int orientation = 1;
  const bool ok = decode_png(file, &reader, &image, &rgba, &rows, &orientation, &icc);
  std::fclose(file);
  if (!ok) {
    throw Error("cannot decode image " + path + ": " + (reader.message.empty() ? "out of memory" : reader.message) +
                "; the file may be truncated");
  }
  if (!reader.icc_warning.empty()) warn_profile_ignored(path, "libpng: " + reader.icc_warning);
  // The colour profile first, the alpha kept (Python converts RGB and puts the alpha back), then the blend.
  if (cmsHTRANSFORM transform = srgb_transform(icc.data(), icc.size(), TYPE_RGBA_8, TYPE_RGBA_8, path)) {
    std::vector<unsigned char> converted(rgba.size());
    cmsDoTransform(transform, rgba.data(), converted.data(),
                   static_cast<cmsUInt32Number>(static_cast<size_t>(image.width) * image.height));
    cmsDeleteTransform(transform);
    rgba.swap(converted);
  }
  // Alpha composited on white with PIL's integer arithmetic (alpha_composite over an opaque white image, as the
  // Python reader does), so a semi-transparent pixel gets Python's value, not a blend in linear light.
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
  for (size_t i = 0, n = static_cast<size_t>(image.width) * image.height; i < n; ++i) {
    const unsigned a = rgba[i * 4 + 3];
    for (int c = 0; c < 3; ++c) {
      const unsigned blend = rgba[i * 4 + c] * (a << 7) + 255u * ((255u - a) << 7) + (0x80u << 7);
      image.pixels[i * 3 + c] = static_cast<unsigned char>((((blend >> 8) + blend) >> 8) >> 7);
    }
  }
  return orient(image, orientation);
}

Image read_jpeg(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error("cannot open image " + path + "; check the path");
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  err.pub.emit_message = jpeg_warning;
  Image image;
  std::vector<unsigned char> four;  // a CMYK row; declared before setjmp, as every object longjmp passes over
  std::vector<unsigned char> ink;   // that row as PIL holds CMYK, for a print profile
  cmsHTRANSFORM volatile transform = nullptr;  // volatile: set after setjmp, read after a longjmp
  if (setjmp(err.jump)) {
    if (transform != nullptr) cmsDeleteTransform(transform);
    jpeg_destroy_decompress(&cinfo);
    std::fclose(file);
    throw Error("cannot decode image " + path + ": " + err.message + "; pass a valid PNG or JPEG file");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, file);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);  // EXIF, for the orientation
  jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xFFFF);  // the colour profile (ICC_PROFILE, in one or more parts)
  jpeg_read_header(&cinfo, TRUE);
  // Grey and YCbCr come out as RGB from libjpeg; CMYK and YCCK (print files) do not: they come out as CMYK and
  // are converted here as PIL converts them (Adobe's inverted storage), through the colour profile where there
  // is one (a grey JPEG's is not applied, as in Python).
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  if (cinfo.jpeg_color_space != JCS_GRAYSCALE) {
    JOCTET* icc = nullptr;
    unsigned int icc_size = 0;
    if (jpeg_read_icc_profile(&cinfo, &icc, &icc_size)) {
      transform = srgb_transform(icc, icc_size, cmyk ? TYPE_CMYK_8 : TYPE_RGB_8, TYPE_RGB_8, path);
      std::free(icc);
    }
  }
  jpeg_start_decompress(&cinfo);
  image.height = static_cast<int>(cinfo.output_height);
  image.width = static_cast<int>(cinfo.output_width);
  image.pixels.resize(static_cast<size_t>(image.height) * image.width * 3);
  four.resize(cmyk ? static_cast<size_t>(image.width) * 4 : 0);
  ink.resize(cmyk && transform != nullptr ? four.size() : 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    unsigned char* rgb = image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * 3;
    JSAMPROW row = cmyk ? four.data() : rgb;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (transform != nullptr && cmyk) {  // PIL's CMYK is the stored values inverted; the profile maps it to sRGB
      for (size_t i = 0; i < four.size(); ++i) ink[i] = static_cast<unsigned char>(255 - four[i]);
      cmsDoTransform(transform, ink.data(), rgb, static_cast<cmsUInt32Number>(image.width));
      continue;
    }
    if (transform != nullptr) {
      cmsDoTransform(transform, rgb, rgb, static_cast<cmsUInt32Number>(image.width));  // same layout: in place
      continue;
    }
    for (int x = 0; cmyk && x < image.width; ++x) {
      const unsigned char* p = &four[static_cast<size_t>(x) * 4];
      const int k = p[3];  // stored inverted (Adobe's convention, which PIL assumes for every CMYK JPEG): 255 - K
      for (int c = 0; c < 3; ++c) {
        const int ink = 255 - p[c];
        const int t = ink * k + 128;  // PIL's MULDIV255: ink * k / 255, rounded
        rgb[x * 3 + c] = static_cast<unsigned char>(std::clamp(k - (((t >> 8) + t) >> 8), 0, 255));
      }
    }
  }
  const int orientation = exif_orientation(cinfo);
  if (transform != nullptr) cmsDeleteTransform(transform);
  transform = nullptr;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(file);
  return orient(image, orientation);
}

void write_png(const Image& image, const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&png, path.c_str(), 0, image.pixels.data(), 0, nullptr)) {
    throw Error("cannot write " + path + ": " + png.message);
  }
}

void write_jpeg(const Image& image, const std::string& path, int quality = 95) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) throw Error("cannot write " + path + "; check that its folder exists and is writable");
  jpeg_compress_struct cinfo{};
  JpegErrorManager err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::fclose(file);
    throw Error("cannot write " + path + ": " + err.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, file);
  cinfo.image_width = static_cast<JDIMENSION>(image.width);
  cinfo.image_height = static_cast<JDIMENSION>(image.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image.pixels.data() + static_cast<size_t>(cinfo.next_scanline) * image.width * 3);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  if (std::fclose(file) != 0) throw Error("cannot write " + path + " (disk full?)");
}

}  // namespace

Image read_image(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error("image not found: " + path + "; check the path");
  static const unsigned char kPng[] = {0x89, 'P', 'N', 'G'};
  static const unsigned char kJpeg[] = {0xFF, 0xD8, 0xFF};
  if (starts_with_bytes(path, kPng, sizeof kPng)) return read_png(path);
  if (starts_with_bytes(path, kJpeg, sizeof kJpeg)) return read_jpeg(path);
  throw Error("cannot read image " + path + ": not a PNG or JPEG file; convert it first (the C++ host reads PNG and JPEG)");
}

void write_image(const Image& image, const std::string& path) {
  const std::string ext = lower_suffix(path);
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg") {
    throw Error("cannot write " + path + ": unknown image type '" + ext + "'; use .png or .jpg");
  }
  // Write next to the target, then rename: a reader never sees a half-written file.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + ext;
  try {
    if (ext == ".png") {
      write_png(image, tmp);
    } else {
      write_jpeg(image, tmp);
    }
    std::filesystem::rename(tmp, path);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

}  // namespace stylexport
