/* One training sample's crop, resize, flip (and, on a CPU, normalisation) in one call.

   train/decoders.py calls crop_resize() through ctypes from ffcv's numba-compiled decode loop:
   once per image, from several threads at once. Each thread keeps its own scratch memory.

   Why C++: libjpeg's partial decoding is reachable only through its C API, and OpenCV's
   SIMD resize only through its C++ one.
   - ffcv's imdecode crops with tjTransform, a lossless re-encode of the crop that costs more
     than decoding the whole image. Here the rows below the crop are never read, the rows
     above it only entropy-decoded (jpeg_skip_scanlines), the columns beside it not
     transformed (jpeg_crop_scanline), and all of it at DCT scale 1/2, 1/4 or 1/8 whenever
     the crop is at least that many times the output. (Scales like 5/8 or 7/8 are not used:
     libjpeg-turbo has no SIMD code for them and they decode slower than the full image.)
   - What remains is a shrink by less than 2x (or an enlargement): bilinear, without
     aliasing. Raw-stored images are first halved (2x2 box averages, OpenCV's fast integer
     INTER_AREA) while at least twice the output. ffcv's own decoder resizes with INTER_AREA
     at the crop's fractional factor, which costs ~8x more than this.
   - The flip and the float conversion are folded into one last pass over the output. */
#include <Python.h>  // only for the module stub at the end

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <jpeglib.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace {

// Per-thread scratch, kept for the thread's life: decoding into the same few hundred
// kilobytes every time keeps them in cache.
thread_local std::vector<uint8_t> decoded, halved[2], resized, flipped;

struct ErrorManager {
    jpeg_error_mgr pub;
    jmp_buf jump;
};

void on_error(j_common_ptr cinfo) { longjmp(reinterpret_cast<ErrorManager *>(cinfo->err)->jump, 1); }
void on_message(j_common_ptr, int) {}

// Rows [y0, y1) and at least columns [x0, x1) of the JPEG decoded at scale 1/denom, into
// `decoded` as RGB rows of *out_w pixels starting at column *out_x (iMCU-aligned, so at or
// left of x0). No C++ object lives in this frame: libjpeg reports errors by longjmp.
// (Keeping one decompressor per thread instead of creating one per image was no faster.)
bool decode_region(const uint8_t *src, uint64_t size, int denom, int y0, int y1, int x0, int x1,
                   int *out_x, int *out_w)
{
    jpeg_decompress_struct cinfo;
    ErrorManager err;
    JSAMPROW rows[32];
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, src, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
    jpeg_start_decompress(&cinfo);
    if (y1 > (int)cinfo.output_height || x1 > (int)cinfo.output_width)
        longjmp(err.jump, 1);
    JDIMENSION xoff = x0, width = x1 - x0;
    if (width < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &xoff, &width);
    size_t stride = (size_t)width * 3;
    if (decoded.size() < (size_t)(y1 - y0) * stride)
        decoded.resize((size_t)(y1 - y0) * stride);
    if (y0 > 0)
        jpeg_skip_scanlines(&cinfo, y0);
    // Many rows per call: libjpeg then writes whole row groups straight into place.
    while ((int)cinfo.output_scanline < y1) {
        int n = y1 - (int)cinfo.output_scanline;
        if (n > 32)
            n = 32;
        for (int i = 0; i < n; i++)
            rows[i] = decoded.data() + (cinfo.output_scanline - y0 + i) * stride;
        jpeg_read_scanlines(&cinfo, rows, n);
    }
    jpeg_destroy_decompress(&cinfo);  // without reading the rows below the crop
    *out_x = (int)xoff;
    *out_w = (int)width;
    return true;
}

// `region` -> out_h x out_w RGB in `resized`: 2x2 box averages while at least twice the
// output on both sides, then bilinear.
cv::Mat shrink(cv::Mat region, int out_h, int out_w)
{
    for (int i = 0; region.rows >= 2 * out_h && region.cols >= 2 * out_w; i ^= 1) {
        int h = region.rows / 2, w = region.cols / 2;
        halved[i].resize((size_t)h * w * 3);  // ping-pong: region may live in the other one
        cv::Mat half(h, w, CV_8UC3, halved[i].data());
        cv::resize(region(cv::Rect(0, 0, 2 * w, 2 * h)), half, half.size(), 0, 0, cv::INTER_AREA);
        region = half;
    }
    resized.resize((size_t)out_h * out_w * 3);
    cv::Mat out(out_h, out_w, CV_8UC3, resized.data());
    cv::resize(region, out, out.size(), 0, 0, cv::INTER_LINEAR);
    return out;
}

// The resized crop -> dst, mirrored if flip; uint8, or float32 value * scale[c] + shift[c].
void store(const cv::Mat &rgb, void *dst, bool flip, const float *scale, const float *shift)
{
    size_t n = (size_t)rgb.rows * rgb.cols * 3;
    if (!scale) {
        cv::Mat out(rgb.rows, rgb.cols, CV_8UC3, dst);
        if (flip)
            cv::flip(rgb, out, 1);
        else
            rgb.copyTo(out);
        return;
    }
    const uint8_t *in = rgb.data;
    if (flip) {
        flipped.resize(n);
        cv::Mat mirrored(rgb.rows, rgb.cols, CV_8UC3, flipped.data());
        cv::flip(rgb, mirrored, 1);
        in = flipped.data();
    }
    // The channel pattern repeats every 3 values: spelt out over 24 (a multiple of every
    // SIMD width) the compiler turns the inner loop into plain vector multiply-adds.
    float s[24], h[24];
    for (int k = 0; k < 24; k++) {
        s[k] = scale[k % 3];
        h[k] = shift[k % 3];
    }
    float *out = static_cast<float *>(dst);
    size_t i = 0;
    for (; i + 24 <= n; i += 24)
        for (int k = 0; k < 24; k++)
            out[i + k] = in[i + k] * s[k] + h[k];
    for (; i < n; i++)
        out[i] = in[i] * scale[i % 3] + shift[i % 3];
}

// The DCT scale 1/d to decode a crop at: the largest of 8, 4, 2, 1 that keeps the crop at
// least d times the output on both sides.
int dct_denominator(int crop_h, int crop_w, int out_h, int out_w)
{
    int d = 8;
    while (d > 1 && ((int64_t)crop_h < (int64_t)d * out_h || (int64_t)crop_w < (int64_t)d * out_w))
        d /= 2;
    return d;
}

// The crop (top, left, h, w) of an image (height x width) -> dst, out_h x out_w x 3, mirrored
// if flip: uint8 RGB, or float32 normalised as value * scale[c] + shift[c] when scale is not
// NULL. src is the stored image: a JPEG of `size` bytes when is_jpeg, else raw RGB.
// partial = 0 decodes JPEGs whole at full scale (the reference path of the tests).
// Returns 0, or -1 if the JPEG did not decode (the caller zeroes dst).
int crop_resize_or_throw(const uint8_t *src, uint64_t size, int is_jpeg, int height, int width,
                         int top, int left, int h, int w, void *dst, int out_h, int out_w, int flip,
                         int partial, const float *scale, const float *shift)
{
    cv::Mat region;
    if (!is_jpeg) {
        cv::Mat image(height, width, CV_8UC3, const_cast<uint8_t *>(src));
        region = image(cv::Rect(left, top, w, h));
    } else {
        int d = partial ? dct_denominator(h, w, out_h, out_w) : 1;
        // the crop in the image scaled by 1/d, rounded to whole pixels
        int sh_img = (height + d - 1) / d, sw_img = (width + d - 1) / d;
        int y0 = partial ? top / d : 0, y1 = partial ? std::min((top + h + d / 2) / d, sh_img) : sh_img;
        int x0 = partial ? left / d : 0, x1 = partial ? std::min((left + w + d / 2) / d, sw_img) : sw_img;
        int got_x, got_w;
        if (!decode_region(src, size, d, y0, y1, x0, x1, &got_x, &got_w)) {
            if (partial)  // a JPEG libjpeg will not decode in part: decode it whole
                return crop_resize_or_throw(src, size, is_jpeg, height, width, top, left, h, w, dst, out_h,
                                            out_w, flip, 0, scale, shift);
            return -1;
        }
        cv::Mat pixels(y1 - y0, got_w, CV_8UC3, decoded.data());
        if (partial)
            region = pixels(cv::Rect(x0 - got_x, 0, x1 - x0, y1 - y0));
        else
            region = pixels(cv::Rect(left, top, w, h));
    }
    store(shrink(region, out_h, out_w), dst, flip, scale, shift);
    return 0;
}

}  // namespace

extern "C" {

// crop_resize_or_throw, with dst zeroed and -1 returned on any failure: no C++ exception may
// cross into the numba caller, where it would abort the process.
int crop_resize(const uint8_t *src, uint64_t size, int is_jpeg, int height, int width,
                int top, int left, int h, int w, void *dst, int out_h, int out_w, int flip,
                int partial, const float *scale, const float *shift)
{
    int status;
    try {
        status = crop_resize_or_throw(src, size, is_jpeg, height, width, top, left, h, w, dst, out_h, out_w,
                                      flip, partial, scale, shift);
    } catch (...) {  // a crop outside the image's stated size (cv::Exception), out of memory
        status = -1;
    }
    if (status != 0)
        std::memset(dst, 0, (size_t)out_h * out_w * 3 * (scale ? sizeof(float) : 1));
    return status;
}

}  // extern "C"

// setuptools compiles this file as a Python extension module (so `pip install` builds it);
// Python reaches crop_resize() through ctypes, callable from numba, not through the module.
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_crop_resize",
                                 "crop_resize(): see train/crop_resize.cpp and train/decoders.py", -1, nullptr};
PyMODINIT_FUNC PyInit__crop_resize(void) { return PyModule_Create(&module_def); }
