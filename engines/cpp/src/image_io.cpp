// Image IO through libpng (its simplified png_image API) and libjpeg(-turbo).
#include <cstdio>  // jpeglib.h needs FILE and size_t declared before it
// clang-format off
#include <jpeglib.h>
// clang-format on
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <filesystem>
#include <fstream>
#include <string>

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

Image read_png(const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    throw Error("cannot read image " + path + ": " + png.message + "; pass a valid PNG or JPEG file");
  }
  png.format = PNG_FORMAT_RGB;  // libpng converts grey, palette, 16-bit; alpha is composited on the background
  Image image;
  image.height = static_cast<int>(png.height);
  image.width = static_cast<int>(png.width);
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  png_color white{255, 255, 255};  // transparent pixels become white, as in the Python reader
  if (!png_image_finish_read(&png, &white, image.pixels.data(), 0, nullptr)) {
    std::string message = png.message;
    png_image_free(&png);
    throw Error("cannot decode image " + path + ": " + message + "; the file may be truncated");
  }
  return image;
}

Image read_jpeg(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error("cannot open image " + path + "; check the path");
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  Image image;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(file);
    throw Error("cannot decode image " + path + ": " + err.message + "; pass a valid PNG or JPEG file");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, file);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // grey and CMYK/YCCK are converted by libjpeg
  jpeg_start_decompress(&cinfo);
  image.height = static_cast<int>(cinfo.output_height);
  image.width = static_cast<int>(cinfo.output_width);
  image.pixels.resize(static_cast<size_t>(image.height) * image.width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(file);
  return image;
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
