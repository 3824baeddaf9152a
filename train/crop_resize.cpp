/* One training sample's crop, resize, flip (and, on a CPU, normalisation) in one call.

   train/decoders.py calls crop_resize() through ctypes from ffcv's numba-compiled decode loop:
   once per image, from several threads at once. Each thread keeps its own scratch memory.

   Why C++: libjpeg's partial decoding is reachable only through its C API, and OpenCV's
   SIMD resize only through its C++ one.
   - ffcv's imdecode crops with tjTransform, a lossless re-encode of the crop that costs more
     than decoding the whole image. Here JPEGs with restart markers (the converter writes
     them) are first cut down to the crop's segments in the compressed stream (splice()).
     Then the rows below the crop are never read, the rows above it (if any are left) only
     entropy-decoded (jpeg_skip_scanlines), the columns beside it not transformed
     (jpeg_crop_scanline), and all of it at DCT scale 1/2, 1/4 or 1/8 whenever the crop is
     at least that many times the output. (Scales like 5/8 or 7/8 are not used: libjpeg-turbo
     has no SIMD code for them and they decode slower than the full image.)
   - What remains is a shrink by less than 2x (or an enlargement): bilinear, without
     aliasing. Raw-stored images are first halved (2x2 box averages, OpenCV's fast integer
     INTER_AREA) while at least twice the output. ffcv's own decoder resizes with INTER_AREA
     at the crop's fractional factor, which costs ~8x more than this.
   - The bilinear is our own on x86 (SSSE3), the flip folded in: OpenCV's 3-channel
     INTER_LINEAR blends one pixel per step and resamples every source row along x, which
     made it most of a raw image's cost. Elsewhere OpenCV's does it. The two agree within 2
     grey levels (mean 0.15).
   - The float conversion (and the flip, if still to do) is one last pass over the output.
   The metadata comes from a file and is checked against the buffer before anything is read by
   it (consistent(), the JPEG's own header, splice()'s bounds): a sample that is not what it
   says leaves zeros and -1, at the cost of a few comparisons. */
#include <Python.h>  // only for the module stub at the end

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <jpeglib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace {

// Per-thread scratch, kept for the thread's life: decoding into the same few hundred
// kilobytes every time keeps them in cache. (In a shared library each use of a thread_local
// is a function call: hot loops take plain pointers first.)
thread_local std::vector<uint8_t> decoded, halved[2], resized, flipped, blended, shuffles, weights, spliced;
thread_local std::vector<size_t> segment_start, segment_end;
thread_local std::vector<int> window;

struct ErrorManager {
    jpeg_error_mgr pub;
    jmp_buf jump;
};

void on_error(j_common_ptr cinfo) { longjmp(reinterpret_cast<ErrorManager *>(cinfo->err)->jump, 1); }
// A warning (level -1) is corrupt data that libjpeg would paper over: a stream cut short gets
// grey rows, a lost restart marker a resynchronisation. Every JPEG of a .beton was written by
// libjpeg (our converter's or ffcv's cv2.imencode) and decodes without one: fail instead.
void on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        on_error(cinfo);
}

// The largest side a JPEG, and ffcv's uint16 metadata, can state.
constexpr int max_side = 65535;
bool plausible_side(int v) { return v > 0 && v <= max_side; }

// Whether the sample can be what its metadata says, checked before anything is read by it:
// sides a JPEG could have, the crop inside the image, a raw image exactly height x width x 3
// bytes, a JPEG that ends with its end-of-image marker (FF D9, as libjpeg writes it). A JPEG cut
// short anywhere fails whole, whichever crop is drawn: the segments a crop needs may all be
// there, but not the rest of the image. (That a JPEG's own header agrees is checked as it is
// read.)
bool consistent(const uint8_t *src, uint64_t size, int is_jpeg, int height, int width, int top, int left,
                int h, int w)
{
    if (!plausible_side(height) || !plausible_side(width) || !plausible_side(h) || !plausible_side(w))
        return false;
    if (top < 0 || left < 0 || top > height - h || left > width - w)
        return false;
    if (!is_jpeg)
        return size == (uint64_t)height * width * 3;
    return size >= 4 && src[size - 2] == 0xFF && src[size - 1] == 0xD9;
}

// Rows [y0, y1) and at least columns [x0, x1) of the JPEG, an image_h x image_w image by its
// header (else false), decoded at scale 1/denom, into `decoded` as RGB rows of *out_w pixels
// starting at column *out_x (iMCU-aligned, so at or left of x0). No C++ object lives in this
// frame: libjpeg reports errors by longjmp.
// (Keeping one decompressor per thread instead of creating one per image was no faster.)
bool decode_region(const uint8_t *src, uint64_t size, int image_h, int image_w, int denom, int y0, int y1,
                   int x0, int x1, int *out_x, int *out_w)
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
    if (cinfo.image_height != (JDIMENSION)image_h || cinfo.image_width != (JDIMENSION)image_w)
        longjmp(err.jump, 1);  // not the image the metadata describes: the crop was drawn for that
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

#if defined(__x86_64__)
// Bilinear (half-pixel centres, as cv::INTER_LINEAR) -> `resized`, mirrored if flip; false
// when it does not apply (a horizontal shrink of 3x or more). Rows first: each output row
// blends two source rows, 16 bytes at a time. Then along the row, two output pixels per step:
// both pixels' left and right neighbours lie within 16 bytes of the blended row, so one
// byte shuffle lines them up and one multiply-add (pmaddubsw, 6-bit weights) blends them.
__attribute__((target("ssse3"))) bool bilinear_ssse3(const cv::Mat &region, int out_h, int out_w, bool flip)
{
    const int in_h = region.rows, in_w = region.cols, pairs = (out_w + 1) / 2;
    const float sx = (float)in_w / out_w, sy = (float)in_h / out_h;
    if (sx >= 3.0f)
        return false;
    // per output pixel, in destination order: left source pixel and right weight (of 64)
    int tap_x[2], tap_w[2];
    window.resize(pairs);
    shuffles.resize((size_t)pairs * 16);
    weights.resize((size_t)pairs * 16);
    const size_t n = (size_t)in_w * 3;
    blended.resize(n + 32);
    resized.resize((size_t)out_h * out_w * 3 + 16);  // the last pair's store runs 8 bytes on
    uint8_t *blend = blended.data(), *resized_data = resized.data();
    uint8_t *shuffle_at = shuffles.data(), *weight_at = weights.data();
    int *window_at = window.data();
    for (int p = 0; p < pairs; p++) {
        for (int k = 0; k < 2; k++) {
            int pos = std::min(2 * p + k, out_w - 1);
            int x = flip ? out_w - 1 - pos : pos;
            float fx = std::max((x + 0.5f) * sx - 0.5f, 0.0f);
            int x0 = (int)fx, w = (int)((fx - x0) * 64 + 0.5f);
            if (w == 64) { x0++; w = 0; }
            if (x0 >= in_w - 1) { x0 = in_w - 1; w = 0; }
            tap_x[k] = x0;
            tap_w[k] = w;
        }
        int base = std::min(tap_x[0], tap_x[1]);
        window_at[p] = base * 3;
        uint8_t *sh = shuffle_at + 16 * p, *wt = weight_at + 16 * p;
        std::memset(sh, 0x80, 16);  // 0x80: a zero byte
        std::memset(wt, 0, 16);
        for (int k = 0; k < 2; k++)
            for (int c = 0; c < 3; c++) {
                int at = (tap_x[k] - base) * 3 + c, lane = 6 * k + 2 * c;
                sh[lane] = (uint8_t)at;
                sh[lane + 1] = (uint8_t)(at + 3);
                wt[lane] = (uint8_t)(64 - tap_w[k]);
                wt[lane + 1] = (uint8_t)tap_w[k];
            }
    }
    const __m128i round6 = _mm_set1_epi16(32), round8 = _mm_set1_epi16(128), zero = _mm_setzero_si128();
    for (int y = 0; y < out_h; y++) {
        float fy = std::max((y + 0.5f) * sy - 0.5f, 0.0f);
        int y0 = (int)fy, wy = (int)((fy - y0) * 256 + 0.5f);
        if (wy == 256) { y0++; wy = 0; }
        if (y0 >= in_h - 1) { y0 = in_h - 1; wy = 0; }
        const uint8_t *r0 = region.ptr<uint8_t>(y0), *row = r0;
        if (wy) {
            const uint8_t *r1 = region.ptr<uint8_t>(y0 + 1);
            const __m128i w0 = _mm_set1_epi16((short)(256 - wy)), w1 = _mm_set1_epi16((short)wy);
            size_t i = 0;
            for (; i + 16 <= n; i += 16) {
                __m128i a = _mm_loadu_si128((const __m128i *)(r0 + i)), b = _mm_loadu_si128((const __m128i *)(r1 + i));
                __m128i lo = _mm_add_epi16(_mm_mullo_epi16(_mm_unpacklo_epi8(a, zero), w0),
                                           _mm_mullo_epi16(_mm_unpacklo_epi8(b, zero), w1));
                __m128i hi = _mm_add_epi16(_mm_mullo_epi16(_mm_unpackhi_epi8(a, zero), w0),
                                           _mm_mullo_epi16(_mm_unpackhi_epi8(b, zero), w1));
                lo = _mm_srli_epi16(_mm_add_epi16(lo, round8), 8);
                hi = _mm_srli_epi16(_mm_add_epi16(hi, round8), 8);
                _mm_storeu_si128((__m128i *)(blend + i), _mm_packus_epi16(lo, hi));
            }
            for (; i < n; i++)
                blend[i] = (uint8_t)((r0[i] * (256 - wy) + r1[i] * wy + 128) >> 8);
            row = blend;
        } else {
            std::memcpy(blend, r0, n);  // the pair loads read up to 16 bytes past the row
            row = blend;
        }
        uint8_t *out = resized_data + (size_t)y * out_w * 3;
        for (int p = 0; p < pairs; p++) {
            __m128i src = _mm_loadu_si128((const __m128i *)(row + window_at[p]));
            __m128i lined = _mm_shuffle_epi8(src, _mm_loadu_si128((const __m128i *)(shuffle_at + 16 * p)));
            __m128i sum = _mm_maddubs_epi16(lined, _mm_loadu_si128((const __m128i *)(weight_at + 16 * p)));
            sum = _mm_srli_epi16(_mm_add_epi16(sum, round6), 6);
            _mm_storel_epi64((__m128i *)(out + 6 * p), _mm_packus_epi16(sum, sum));
        }
    }
    return true;
}
#endif

// `region` -> out_h x out_w RGB in `resized`: 2x2 box averages while at least twice the
// output on both sides, then bilinear.
cv::Mat shrink(cv::Mat region, int out_h, int out_w, bool *flipped_already)
{
    for (int i = 0; region.rows >= 2 * out_h && region.cols >= 2 * out_w; i ^= 1) {
        int h = region.rows / 2, w = region.cols / 2;
        halved[i].resize((size_t)h * w * 3);  // ping-pong: region may live in the other one
        cv::Mat half(h, w, CV_8UC3, halved[i].data());
        cv::resize(region(cv::Rect(0, 0, 2 * w, 2 * h)), half, half.size(), 0, 0, cv::INTER_AREA);
        region = half;
    }
#if defined(__x86_64__)
    if (__builtin_cpu_supports("ssse3") && bilinear_ssse3(region, out_h, out_w, *flipped_already))
        return cv::Mat(out_h, out_w, CV_8UC3, resized.data());
#endif
    *flipped_already = false;
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

// A JPEG written with a restart marker every k MCUs, k dividing the MCUs of a row (the
// converter writes them so), is a grid of independently decodable segments: the DC
// predictions restart at each marker and every segment starts on a byte boundary. The
// segments covering a crop, copied behind the original header (its height and width
// changed) and renumbered, are a smaller JPEG of the same pixels: libjpeg then entropy-decodes
// only those, not every row above the crop and every column beside it.
// Writes that JPEG to `spliced`, its origin in the image to *y_off, *x_off and its size to
// *kept_h, *kept_w; false (nothing written) when the JPEG is not laid out so, its header is not
// of a height x width image, or nothing is gained. Reads only src's `size` bytes, whatever they hold.
bool splice(const uint8_t *src, uint64_t size, int height, int width, int top, int left, int h, int w,
            int *y_off, int *x_off, int *kept_h, int *kept_w)
{
    if (size < 4 || src[0] != 0xFF || src[1] != 0xD8)
        return false;
    size_t pos = 2, sof = 0, scan = 0;
    int interval = 0, components = 0, hmax = 1, vmax = 1;
    while (pos + 4 <= size) {
        if (src[pos] != 0xFF)
            return false;
        uint8_t marker = src[pos + 1];
        if (marker == 0xFF) {  // fill byte
            pos++;
            continue;
        }
        size_t length = ((size_t)src[pos + 2] << 8) | src[pos + 3];
        if (length < 2 || pos + 2 + length > size)
            return false;
        if (marker == 0xC0 || marker == 0xC1) {  // baseline or extended sequential, Huffman
            sof = pos;
            if (length < 8)
                return false;
            components = src[pos + 9];
            if (length != 8 + 3 * (size_t)components)
                return false;
            if (((src[pos + 5] << 8) | src[pos + 6]) != height || ((src[pos + 7] << 8) | src[pos + 8]) != width)
                return false;  // the MCU grid below is the metadata's: libjpeg will refuse it
            for (int c = 0; c < components; c++) {
                hmax = std::max(hmax, src[pos + 11 + 3 * c] >> 4);
                vmax = std::max(vmax, src[pos + 11 + 3 * c] & 15);
            }
        } else if ((marker & 0xF0) == 0xC0 && marker != 0xC4 && marker != 0xCC) {
            return false;  // progressive, lossless or arithmetic-coded
        } else if (marker == 0xDD && length == 4) {
            interval = (src[pos + 4] << 8) | src[pos + 5];
        } else if (marker == 0xDA) {
            if (!sof || length < 3 || src[pos + 4] != components)
                return false;  // not one interleaved scan of all components
            scan = pos + 2 + length;
            break;
        }
        pos += 2 + length;
    }
    const int mcu_w = 8 * hmax, mcu_h = 8 * vmax;
    const int per_row = (width + mcu_w - 1) / mcu_w, rows = (height + mcu_h - 1) / mcu_h;
    if (!scan || components != 3 || interval <= 0 || per_row % interval)
        return false;
    const int segments_per_row = per_row / interval, segment_w = interval * mcu_w;
    const int r0 = top / mcu_h, r1 = std::min((top + h + mcu_h - 1) / mcu_h, rows);
    const int s0 = left / segment_w, s1 = std::min((left + w + segment_w - 1) / segment_w, segments_per_row);
    if (r0 == 0 && s0 == 0 && s1 == segments_per_row)
        return false;  // the whole width from the first row: libjpeg stops below the crop anyway
    // Where each segment up to the crop's last one starts and ends (at its marker).
    std::vector<size_t> &starts = segment_start, &ends = segment_end;  // one thread_local lookup
    std::vector<uint8_t> &out = spliced;
    const int needed = (r1 - 1) * segments_per_row + s1;
    starts.assign(1, scan);
    ends.clear();
    const uint8_t *p = src + scan, *end = src + size;
    while ((int)ends.size() < needed) {
        p = static_cast<const uint8_t *>(std::memchr(p, 0xFF, end - p));
        if (!p || p + 1 >= end)
            return false;
        uint8_t next = p[1];
        if (next >= 0xD0 && next <= 0xD7) {
            if (next != 0xD0 + ends.size() % 8)
                return false;  // markers out of sequence: leave it to libjpeg
            ends.push_back(p - src);
            starts.push_back(p + 2 - src);
            p += 2;
        } else if (next == 0xD9) {  // end of image
            ends.push_back(p - src);
            break;
        } else {
            p += 1;  // 0xFF00 (a stuffed 0xFF byte) or fill
        }
    }
    if ((int)ends.size() < needed)
        return false;
    *y_off = r0 * mcu_h;
    *x_off = s0 * segment_w;
    *kept_h = std::min(r1 * mcu_h, height) - *y_off;
    *kept_w = std::min(s1 * segment_w, width) - *x_off;
    out.assign(src, src + scan);
    out[sof + 5] = (uint8_t)(*kept_h >> 8);
    out[sof + 6] = (uint8_t)(*kept_h & 0xFF);
    out[sof + 7] = (uint8_t)(*kept_w >> 8);
    out[sof + 8] = (uint8_t)(*kept_w & 0xFF);
    int written = 0;
    for (int r = r0; r < r1; r++)
        for (int s = s0; s < s1; s++) {
            int i = r * segments_per_row + s;
            if (written)
                out.insert(out.end(), {0xFF, (uint8_t)(0xD0 + (written - 1) % 8)});
            out.insert(out.end(), src + starts[i], src + ends[i]);
            written++;
        }
    out.insert(out.end(), {0xFF, 0xD9});
    return true;
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
// Returns 0, or -1 if the sample is not what the arguments say (see consistent()) or the JPEG did
// not decode (the caller zeroes dst).
int crop_resize_or_throw(const uint8_t *src, uint64_t size, int is_jpeg, int height, int width,
                         int top, int left, int h, int w, void *dst, int out_h, int out_w, int flip,
                         int partial, const float *scale, const float *shift)
{
    if (!consistent(src, size, is_jpeg, height, width, top, left, h, w))
        return -1;
    cv::Mat region;
    if (!is_jpeg) {
        cv::Mat image(height, width, CV_8UC3, const_cast<uint8_t *>(src));
        region = image(cv::Rect(left, top, w, h));
    } else {
        int d = partial ? dct_denominator(h, w, out_h, out_w) : 1;
        // With restart markers, only the crop's segments of the JPEG (an origin a multiple of
        // 8 or 16 pixels away: the same pixels after scaling by 1/d).
        const uint8_t *jpeg = src;
        uint64_t jpeg_size = size;
        int y_off = 0, x_off = 0, jpeg_h = height, jpeg_w = width;
        if (partial && splice(src, size, height, width, top, left, h, w, &y_off, &x_off, &jpeg_h, &jpeg_w)) {
            jpeg = spliced.data();
            jpeg_size = spliced.size();
        }
        int jtop = top - y_off, jleft = left - x_off;
        // the crop in the image scaled by 1/d, rounded to whole pixels
        int sh_img = (jpeg_h + d - 1) / d, sw_img = (jpeg_w + d - 1) / d;
        int y0 = partial ? jtop / d : 0, y1 = partial ? std::min((jtop + h + d / 2) / d, sh_img) : sh_img;
        int x0 = partial ? jleft / d : 0, x1 = partial ? std::min((jleft + w + d / 2) / d, sw_img) : sw_img;
        int got_x, got_w;
        if (!decode_region(jpeg, jpeg_size, jpeg_h, jpeg_w, d, y0, y1, x0, x1, &got_x, &got_w)) {
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
    bool flipped_already = flip;  // shrink() mirrors as it resizes where it can
    cv::Mat resized_crop = shrink(region, out_h, out_w, &flipped_already);
    store(resized_crop, dst, flip && !flipped_already, scale, shift);
    return 0;
}

}  // namespace

extern "C" {

// crop_resize_or_throw, with dst zeroed and -1 returned on any failure: no C++ exception may
// cross into the numba caller, where it would abort the process. Nothing outside src's `size`
// bytes and dst's out_h x out_w x 3 values is read or written, whatever the other arguments.
int crop_resize(const uint8_t *src, uint64_t size, int is_jpeg, int height, int width,
                int top, int left, int h, int w, void *dst, int out_h, int out_w, int flip,
                int partial, const float *scale, const float *shift)
{
    if (!plausible_side(out_h) || !plausible_side(out_w))
        return -1;  // no output to zero: its size is what is wrong
    int status;
    try {
        status = crop_resize_or_throw(src, size, is_jpeg, height, width, top, left, h, w, dst, out_h, out_w,
                                      flip, partial, scale, shift);
    } catch (...) {  // out of memory (std::bad_alloc), an OpenCV assertion (cv::Exception)
        status = -1;
    }
    if (status != 0)
        std::memset(dst, 0, (size_t)out_h * out_w * 3 * (scale ? sizeof(float) : 1));
    return status;
}

// For the tests: whether splice() cuts this JPEG for this crop, and the part it keeps
// (top, left, height, width) in `extent`.
int crop_segments(const uint8_t *src, uint64_t size, int height, int width, int top, int left, int h, int w,
                  int *extent)
{
    return consistent(src, size, 1, height, width, top, left, h, w) &&
           splice(src, size, height, width, top, left, h, w, &extent[0], &extent[1], &extent[2], &extent[3]);
}

}  // extern "C"

// setuptools compiles this file as a Python extension module (so `pip install` builds it);
// Python reaches crop_resize() through ctypes, callable from numba, not through the module.
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_crop_resize",
                                 "crop_resize(): see train/crop_resize.cpp and train/decoders.py", -1, nullptr};
PyMODINIT_FUNC PyInit__crop_resize(void) { return PyModule_Create(&module_def); }
