/* ms_dicom.cpp: DICOM decoding through GDCM behind the C function ms_dicom_load (built only
 * with MS_HAVE_DICOM; otherwise ms_image.c reports "FILE: DICOM support not built").
 *
 * The pixel data are decoded by GDCM in any transfer syntax it supports (uncompressed, RLE,
 * JPEG baseline/lossless, JPEG-LS, JPEG 2000); a multi-frame image gives its first frame.
 * Gray images (MONOCHROME1/MONOCHROME2) become 8 bits as follows:
 *   1. stored values masked to BitsStored (sign-extended when PixelRepresentation is 1);
 *   2. modality values v = stored * RescaleSlope + RescaleIntercept (1 and 0 when absent);
 *   3. with a WindowCenter c / WindowWidth w (first values, w >= 1):
 *      y = clamp((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1) (the DICOM linear VOI function);
 *      otherwise y = (v - min) / (max - min) over the image (0 for a constant image);
 *   4. MONOCHROME1 (white = low values) is inverted: y = 1 - y;
 *   5. u8 = round(255 y).
 * RGB images with 8-bit samples (interleaved or planar) become c = 3. Other photometric
 * interpretations (PALETTE COLOR, YBR_*) and other sample layouts are MS_ERR_DATA naming
 * the file and the interpretation.
 */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmTrace.h>

#include "embed/ms_embed_internal.h"

/* First value of a decimal-string element (e.g. "40\400"), or false when absent/unparsable. */
static bool first_ds(const gdcm::DataSet &ds, uint16_t group, uint16_t elem, double *out) {
    const gdcm::Tag tag(group, elem);
    if (!ds.FindDataElement(tag)) return false;
    const gdcm::DataElement &de = ds.GetDataElement(tag);
    const gdcm::ByteValue *bv = de.GetByteValue();
    if (!bv || bv->GetLength() == 0) return false;
    std::string s(bv->GetPointer(), bv->GetLength());
    char *end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || !std::isfinite(v)) return false;
    *out = v;
    return true;
}

template <typename T> static void to_double(const char *buf, size_t n, std::vector<double> &v) {
    for (size_t i = 0; i < n; i++) {
        T x;
        std::memcpy(&x, buf + i * sizeof(T), sizeof(T));
        v[i] = (double)x;
    }
}

/* ---- element lengths, checked before GDCM sees the file ------------------------------------
 * GDCM allocates each element's declared value length before reading it, so an 839-byte
 * file can ask for gigabytes. This walk reads the element headers (file meta group in
 * explicit VR little endian, then the data set in the transfer syntax it names: explicit or
 * implicit VR, little or big endian), stepping into sequences, items and encapsulated pixel
 * data, and refuses a value length larger than the bytes that remain. Encodings it cannot
 * follow (deflated data sets, malformed VRs) end the walk and are left to GDCM, which runs
 * in a child process with capped memory anyway. Returns NULL or the problem. */
static const char *dicom_lengths(const unsigned char *b, size_t n, char *why, size_t cap) {
    size_t pos = 132;
    bool explicit_vr = true, big = false, in_pixels = false, meta = true;
    auto u16 = [&](size_t at, bool be) { return be ? (unsigned)(b[at] << 8 | b[at + 1]) : (unsigned)(b[at] | b[at + 1] << 8); };
    auto u32 = [&](size_t at, bool be) {
        return be ? ((uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3])
                  : ((uint32_t)b[at + 3] << 24 | (uint32_t)b[at + 2] << 16 | (uint32_t)b[at + 1] << 8 | b[at]);
    };
    std::string ts;
    while (pos + 8 <= n) {
        bool be = meta ? false : big;
        unsigned group = u16(pos, be), elem = u16(pos + 2, be);
        if (meta && group != 0x0002) { /* the data set begins: its transfer syntax applies */
            meta = false;
            while (!ts.empty() && (ts.back() == '\0' || ts.back() == ' ')) ts.pop_back();
            if (ts == "1.2.840.10008.1.2.1.99") return nullptr; /* deflated: not walkable */
            explicit_vr = ts != "1.2.840.10008.1.2";
            big = ts == "1.2.840.10008.1.2.2";
            continue;
        }
        size_t head;
        uint32_t len;
        bool sq = false;
        if (group == 0xfffe) { /* item, item delimiter, sequence delimiter: no VR */
            len = u32(pos + 4, be);
            head = 8;
            if (elem == 0xe0dd) in_pixels = false;
            if (elem != 0xe000 || len == 0xffffffffu || !in_pixels) {
                pos += head; /* step into the item (or past a delimiter) */
                continue;
            }
        } else if (meta || explicit_vr) {
            char v0 = (char)b[pos + 4], v1 = (char)b[pos + 5];
            std::string vr{v0, v1};
            /* an explicit VR must be one of the standard's: GDCM reads other bytes there in
             * ways that can turn text into a length of hundreds of megabytes */
            static const char *const vrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                                              "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ",
                                              "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
            bool known = false;
            for (const char *k : vrs) known |= vr == k;
            if (!known) {
                snprintf(why, cap, "element (%04x,%04x) has the unknown value representation \"%c%c\"", group, elem,
                         v0 >= 0x20 && v0 < 0x7f ? v0 : '?', v1 >= 0x20 && v1 < 0x7f ? v1 : '?');
                return why;
            }
            static const char *const long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
            bool is_long = false;
            for (const char *l : long_vrs) is_long |= vr == l;
            if (is_long) {
                if (pos + 12 > n) break;
                len = u32(pos + 8, be);
                head = 12;
            } else {
                len = u16(pos + 6, be);
                head = 8;
            }
            sq = vr == "SQ";
        } else {
            len = u32(pos + 4, be);
            head = 8;
        }
        if (len == 0xffffffffu) { /* undefined length: a sequence or encapsulated pixel data */
            if (group == 0x7fe0 && elem == 0x0010) in_pixels = true;
            pos += head;
            continue;
        }
        if (len > n - pos - head) {
            snprintf(why, cap, "element (%04x,%04x) declares %lu bytes but only %lu remain in the file", group, elem,
                     (unsigned long)len, (unsigned long)(n - pos - head));
            return why;
        }
        if (meta && group == 0x0002 && elem == 0x0010) ts.assign((const char *)b + pos + head, len);
        pos += head + (sq ? 0 : len); /* a defined-length sequence is walked into too */
    }
    return nullptr;
}

/* The decoder proper; runs in the child process (see ms_dicom_load). */
static ms_status dicom_decode(ms_image *im, const char *path) {
    {
        std::FILE *f = std::fopen(path, "rb");
        if (!f) return ms_fail(MS_ERR_IO, "%s: cannot open", path);
        std::fseek(f, 0, SEEK_END);
        long size = std::ftell(f);
        std::rewind(f);
        ms_status st = size < 0 ? ms_fail(MS_ERR_IO, "%s: cannot read", path)
                                : ms_check_alloc((uint64_t)size, "reading the DICOM file", path);
        if (st) {
            std::fclose(f);
            return st;
        }
        std::vector<unsigned char> bytes((size_t)size);
        size_t got = size ? std::fread(bytes.data(), 1, (size_t)size, f) : 0;
        std::fclose(f);
        char why[160];
        const char *bad = dicom_lengths(bytes.data(), got, why, sizeof why);
        if (bad) return ms_fail(MS_ERR_DATA, "%s: corrupt DICOM file: %s", path, bad);
    }
    try {
        /* library code prints nothing: GDCM's diagnostics become our one-line errors */
        gdcm::Trace::SetWarning(false);
        gdcm::Trace::SetError(false);
        gdcm::Trace::SetDebug(false);
        gdcm::ImageReader reader;
        reader.SetFileName(path);
        if (!reader.Read()) return ms_fail(MS_ERR_DATA, "%s: not a readable DICOM image", path);
        const gdcm::Image &img = reader.GetImage();
        const unsigned int *dims = img.GetDimensions();
        const unsigned long w = dims[0], h = dims[1];
        if (w < 1 || h < 1 || (double)w * (double)h > (double)(1u << 28))
            return ms_fail(MS_ERR_DATA, "%s: DICOM image size %lux%lu not supported", path, w, h);
        const gdcm::PixelFormat pf = img.GetPixelFormat();
        const gdcm::PhotometricInterpretation pi = img.GetPhotometricInterpretation();
        const size_t len = img.GetBufferLength();
        /* what GDCM is about to decode into, and our double copy of it, within the budget */
        ms_status big = ms_check_alloc((uint64_t)len + (uint64_t)w * h * sizeof(double), "the DICOM pixel data", path);
        if (big) return big;
        std::vector<char> buf(len);
        if (!img.GetBuffer(buf.data()))
            return ms_fail(MS_ERR_DATA, "%s: cannot decode the DICOM pixel data (transfer syntax %s)", path,
                           gdcm::TransferSyntax::GetTSString(img.GetTransferSyntax()));
        const size_t npx = (size_t)w * h;
        if (pi == gdcm::PhotometricInterpretation::RGB) {
            if (pf.GetSamplesPerPixel() != 3 || pf.GetBitsAllocated() != 8 || len < 3 * npx)
                return ms_fail(MS_ERR_DATA, "%s: RGB DICOM needs 3 samples of 8 bits", path);
            ms_image_reserve(im, (int)w, (int)h, 3);
            const unsigned char *p = (const unsigned char *)buf.data();
            if (img.GetPlanarConfiguration() == 0)
                std::memcpy(im->px, p, 3 * npx);
            else
                for (size_t i = 0; i < npx; i++)
                    for (int c = 0; c < 3; c++) im->px[3 * i + c] = p[c * npx + i];
            return MS_OK;
        }
        const bool mono1 = pi == gdcm::PhotometricInterpretation::MONOCHROME1;
        if (!mono1 && pi != gdcm::PhotometricInterpretation::MONOCHROME2)
            return ms_fail(MS_ERR_DATA, "%s: DICOM photometric interpretation %s not supported", path,
                           gdcm::PhotometricInterpretation::GetPIString(pi));
        if (pf.GetSamplesPerPixel() != 1) return ms_fail(MS_ERR_DATA, "%s: gray DICOM with several samples", path);
        std::vector<double> v(npx);
        const unsigned bits = pf.GetBitsStored();
        switch (pf.GetScalarType()) {
        case gdcm::PixelFormat::UINT8: to_double<uint8_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT8: to_double<int8_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::UINT16: to_double<uint16_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT16: to_double<int16_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::UINT32: to_double<uint32_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT32: to_double<int32_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::FLOAT32: to_double<float>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::FLOAT64: to_double<double>(buf.data(), npx, v); break;
        default: return ms_fail(MS_ERR_DATA, "%s: DICOM pixel format not supported", path);
        }
        if (len < npx * pf.GetPixelSize()) return ms_fail(MS_ERR_DATA, "%s: DICOM pixel data too short", path);
        /* step 1: keep BitsStored bits of integer samples */
        const unsigned alloc = pf.GetBitsAllocated();
        if (bits > 0 && bits < alloc && alloc <= 32 && pf.GetScalarType() != gdcm::PixelFormat::FLOAT32 &&
            pf.GetScalarType() != gdcm::PixelFormat::FLOAT64) {
            const double range = std::ldexp(1.0, (int)bits);
            for (double &x : v) {
                double m = std::fmod(x, range);
                if (m < 0) m += range;
                if (pf.GetPixelRepresentation() == 1 && m >= range / 2) m -= range;
                x = m;
            }
        }
        /* step 2: modality LUT */
        const double slope = img.GetSlope(), intercept = img.GetIntercept();
        for (double &x : v) x = x * slope + intercept;
        /* steps 3-5 */
        const gdcm::DataSet &ds = reader.GetFile().GetDataSet();
        double c, ww;
        const bool window = first_ds(ds, 0x0028, 0x1050, &c) && first_ds(ds, 0x0028, 0x1051, &ww) && ww >= 1.0;
        double lo = 0, span = 1;
        if (!window) {
            auto mm = std::minmax_element(v.begin(), v.end());
            lo = *mm.first;
            span = *mm.second - *mm.first;
        }
        ms_image_reserve(im, (int)w, (int)h, 1);
        for (size_t i = 0; i < npx; i++) {
            double y;
            if (window)
                y = (v[i] - (c - 0.5)) / (ww - 1.0) + 0.5;
            else
                y = span > 0 ? (v[i] - lo) / span : 0.0;
            y = y < 0 ? 0 : y > 1 ? 1 : y;
            if (mono1) y = 1.0 - y;
            im->px[i] = (uint8_t)std::floor(255.0 * y + 0.5);
        }
        return MS_OK;
    } catch (const std::exception &e) {
        return ms_fail(MS_ERR_DATA, "%s: DICOM decoding failed: %s", path, e.what());
    } catch (...) {
        return ms_fail(MS_ERR_DATA, "%s: DICOM decoding failed", path);
    }
}

/* ---- GDCM behind a process boundary ------------------------------------------------------
 * Debian's GDCM keeps its internal assertions (a 132-byte file of preamble and "DICM" aborts
 * the process) and has read past its buffers on crafted files, so the file is decoded in a
 * child process (ms_run_contained, with its address space capped) that sends the 8-bit image
 * back; a child that dies becomes one error line naming the file. */
static ms_status dicom_contained(void *ctx, void **out, size_t *bytes, int32_t meta[4]) {
    const char *path = (const char *)ctx;
    ms_image im;
    ms_image_init(&im);
    ms_status st = dicom_decode(&im, path);
    if (st) {
        ms_image_free(&im);
        return st;
    }
    *out = im.px; /* handed over: the child exits after sending it */
    *bytes = (size_t)im.w * im.h * im.c;
    meta[0] = im.w;
    meta[1] = im.h;
    meta[2] = im.c;
    return MS_OK;
}

extern "C" ms_status ms_dicom_load(ms_image *im, const char *path) {
    void *px = nullptr;
    size_t bytes = 0;
    int32_t meta[4];
    ms_status st = ms_run_contained(path, "DICOM", dicom_contained, (void *)path, &px, &bytes, meta);
    if (st) return st;
    if (meta[0] < 1 || meta[1] < 1 || (meta[2] != 1 && meta[2] != 3) ||
        bytes != (size_t)meta[0] * (size_t)meta[1] * (size_t)meta[2]) {
        std::free(px);
        return ms_fail(MS_ERR_DATA, "%s: corrupt DICOM file (inconsistent result)", path);
    }
    ms_image_reserve(im, meta[0], meta[1], meta[2]);
    std::memcpy(im->px, px, bytes);
    std::free(px);
    return MS_OK;
}
